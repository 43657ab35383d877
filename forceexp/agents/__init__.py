"""Agent registry: one file per agent, registered by name."""

from __future__ import annotations

from forceexp.agents.agent import Agent
from forceexp.agents.dqn import DoubleDQNAgent, DQNAgent, DuelingDQNAgent
from forceexp.agents.ppo import PPOAgent
from forceexp.agents.random import ConstantAgent, RandomAgent
from forceexp.registry import Registry

AGENTS: Registry[type[Agent]] = Registry("agent")
for _cls in (PPOAgent, DQNAgent, DoubleDQNAgent, DuelingDQNAgent, RandomAgent, ConstantAgent):
    AGENTS.register(_cls.name)(_cls)

__all__ = [
    "AGENTS",
    "Agent",
    "ConstantAgent",
    "DQNAgent",
    "DoubleDQNAgent",
    "DuelingDQNAgent",
    "PPOAgent",
    "RandomAgent",
]

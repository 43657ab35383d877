"""Agent registry: one file per agent, registered by name."""

from __future__ import annotations

from forceexp.agents.agent import Agent
from forceexp.agents.ddpg import DDPGAgent
from forceexp.agents.dqn import DoubleDQNAgent, DQNAgent, DuelingDQNAgent
from forceexp.agents.ppo import PPOAgent
from forceexp.agents.random import ConstantAgent, RandomAgent
from forceexp.agents.sac import SACAgent
from forceexp.agents.td3 import TD3Agent
from forceexp.core.lazy_dynamo import defer_dynamo_import
from forceexp.registry import Registry

defer_dynamo_import()  # the first torch.optim.Adam(...) would import torch._dynamo (~1 s)

AGENTS: Registry[type[Agent]] = Registry("agent")
for _cls in (PPOAgent, DQNAgent, DoubleDQNAgent, DuelingDQNAgent, RandomAgent, ConstantAgent):
    AGENTS.register(_cls.name)(_cls)
AGENTS.register(DDPGAgent.name, "ddpg")(DDPGAgent)  # ddpg: Stable-Baselines3's name for dpg
AGENTS.register(TD3Agent.name)(TD3Agent)
AGENTS.register(SACAgent.name)(SACAgent)

__all__ = [
    "AGENTS",
    "Agent",
    "ConstantAgent",
    "DDPGAgent",
    "DQNAgent",
    "DoubleDQNAgent",
    "DuelingDQNAgent",
    "PPOAgent",
    "RandomAgent",
    "SACAgent",
    "TD3Agent",
]

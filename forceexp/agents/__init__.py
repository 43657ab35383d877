"""Agent registry: one file per agent, registered by name."""

from __future__ import annotations

from forceexp.agents.a2c import A2CAgent
from forceexp.agents.ac import ACAgent
from forceexp.agents.agent import Agent
from forceexp.agents.ddpg import DDPGAgent
from forceexp.agents.dqn import DoubleDQNAgent, DQNAgent, DuelingDQNAgent
from forceexp.agents.ppo import PPOAgent
from forceexp.agents.random import ConstantAgent, RandomAgent
from forceexp.agents.sac import SACAgent
from forceexp.agents.td3 import TD3Agent
from forceexp.agents.tensorforce import tensorforce_agent
from forceexp.agents.trpo import TRPOAgent
from forceexp.agents.vpg import VPGAgent
from forceexp.core.lazy_dynamo import defer_dynamo_import
from forceexp.registry import Registry

defer_dynamo_import()  # the first torch.optim.Adam(...) would import torch._dynamo (~1 s)

AGENTS: Registry[type[Agent]] = Registry("agent")
for _cls in (PPOAgent, DQNAgent, DoubleDQNAgent, DuelingDQNAgent, RandomAgent, ConstantAgent):
    AGENTS.register(_cls.name)(_cls)
AGENTS.register(DDPGAgent.name, "ddpg")(DDPGAgent)  # ddpg: Stable-Baselines3's name for dpg
AGENTS.register(TD3Agent.name)(TD3Agent)
AGENTS.register(SACAgent.name)(SACAgent)
for _cls in (A2CAgent, VPGAgent, ACAgent, TRPOAgent):  # on-policy, beside PPO
    AGENTS.register(_cls.name)(_cls)
# Tensorforce's generic agent: a function returning the agent its component specs describe
AGENTS.register("tensorforce")(tensorforce_agent)  # type: ignore[arg-type]

__all__ = [
    "AGENTS",
    "A2CAgent",
    "ACAgent",
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
    "TRPOAgent",
    "VPGAgent",
]

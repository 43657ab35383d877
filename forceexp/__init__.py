"""forceexp: a Hydra-configured PyTorch RL experiment framework with a Tensorforce-style API."""

from __future__ import annotations

from forceexp.agents import Agent
from forceexp.environments import Environment
from forceexp.execution import Runner

__version__ = "0.1.0"
__all__ = ["Agent", "Environment", "Runner", "__version__"]

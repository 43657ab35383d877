"""forceexp: a Hydra-configured PyTorch RL experiment framework with a Tensorforce-style API."""

from __future__ import annotations

from forceexp.agents import Agent
from forceexp.environments import Environment
from forceexp.errors import TensorforceError
from forceexp.execution import Runner
from forceexp.version import __version__

__all__ = ["Agent", "Environment", "Runner", "TensorforceError", "__version__"]

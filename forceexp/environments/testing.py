"""Tiny deterministic environments that let tests assert real learning in seconds."""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import TERMINATED, Environment
from forceexp.errors import ConfigError, message


class IdentityEnvironment(Environment):
    """Observe a one-hot target among ``num_values``; reward 1 for choosing it, else 0.

    Episodes last ``episode_length`` steps and end with terminal 1. The best return equals
    ``episode_length``; a uniformly random policy gets ``episode_length / num_values``.
    """

    def __init__(self, num_values: int = 4, episode_length: int = 8, seed: int = 0) -> None:
        self.num_values = num_values
        self.episode_length = episode_length
        self._rng = np.random.default_rng(seed)
        self._target = 0
        self._t = 0

    def __repr__(self) -> str:
        return f"IdentityEnvironment(num_values={self.num_values})"

    def states(self) -> dict[str, Any]:
        """One-hot float vector of the target."""
        return {"type": "float", "shape": (self.num_values,), "min_value": 0.0, "max_value": 1.0}

    def actions(self) -> dict[str, Any]:
        """One int choice among ``num_values``."""
        return {"type": "int", "shape": (), "num_values": self.num_values}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Draw a new target."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe()

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        """Reward 1 if the action equals the target."""
        reward = float(int(actions) == self._target)
        self._t += 1
        terminal = TERMINATED if self._t >= self.episode_length else 0
        return self._observe(), terminal, reward

    def _observe(self) -> np.ndarray:
        self._target = int(self._rng.integers(self.num_values))
        obs = np.zeros(self.num_values, dtype=np.float32)
        obs[self._target] = 1.0
        return obs


class TargetEnvironment(Environment):
    """Continuous control toy: observe a target in [-1, 1]; reward is ``-|action - target|``."""

    def __init__(self, episode_length: int = 8, seed: int = 0) -> None:
        self.episode_length = episode_length
        self._rng = np.random.default_rng(seed)
        self._target = np.zeros(1, dtype=np.float32)
        self._t = 0

    def __repr__(self) -> str:
        return "TargetEnvironment()"

    def states(self) -> dict[str, Any]:
        """The target value."""
        return {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0}

    def actions(self) -> dict[str, Any]:
        """A bounded float action."""
        return {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Draw a new target."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe()

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        """Reward is minus the distance to the target."""
        reward = -float(np.abs(np.asarray(actions, dtype=np.float32) - self._target).sum())
        self._t += 1
        terminal = TERMINATED if self._t >= self.episode_length else 0
        return self._observe(), terminal, reward

    def _observe(self) -> np.ndarray:
        self._target = self._rng.uniform(-1, 1, size=1).astype(np.float32)
        return self._target.copy()


class MaskedChoiceEnvironment(Environment):
    """Choose among the currently valid moves; masks make this much easier to learn.

    Each step ``num_valid`` of ``num_values`` moves are valid, each with a value in ``[0.2, 1]``.
    The state is the vector of move values (0 for invalid moves). A valid move earns its value;
    an invalid move earns -1 and ends the episode. With ``masks=True`` the states also carry
    ``action_mask`` (True = valid), so a masked agent never plays an invalid move and only has to
    learn to prefer high values; without masks it must first learn which moves are valid.

    Args:
        num_values: Number of moves.
        num_valid: Valid moves per step (at least 1).
        episode_length: Steps per episode when no invalid move ends it early.
        masks: Emit ``action_mask`` with the states.
        seed: Seed of the move draws.
    """

    def __init__(
        self,
        num_values: int = 10,
        num_valid: int = 3,
        episode_length: int = 10,
        masks: bool = True,
        seed: int = 0,
    ) -> None:
        if not 1 <= num_valid <= num_values:
            raise ConfigError(
                message("num_valid", num_valid, f"an int in [1, num_values={num_values}]")
            )
        self.num_values, self.num_valid = num_values, num_valid
        self.episode_length, self.masks = episode_length, masks
        self._rng = np.random.default_rng(seed)
        self._values = np.zeros(num_values, dtype=np.float32)
        self._t = 0

    def __repr__(self) -> str:
        return f"MaskedChoiceEnvironment(num_values={self.num_values}, masks={self.masks})"

    def states(self) -> dict[str, Any]:
        """Value of each move (0 when invalid)."""
        return {"type": "float", "shape": (self.num_values,), "min_value": 0.0, "max_value": 1.0}

    def actions(self) -> dict[str, Any]:
        """One int move among ``num_values``."""
        return {"type": "int", "shape": (), "num_values": self.num_values}

    def reset(self, seed: int | None = None) -> Any:
        """Draw the first valid moves."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe()

    def execute(self, actions: Any) -> tuple[Any, int, float]:
        """A valid move earns its value; an invalid one -1 and ends the episode."""
        value = float(self._values[int(actions)])
        self._t += 1
        if value == 0.0:
            return self._observe(), TERMINATED, -1.0
        terminal = TERMINATED if self._t >= self.episode_length else 0
        return self._observe(), terminal, value

    def _observe(self) -> Any:
        valid = self._rng.choice(self.num_values, size=self.num_valid, replace=False)
        self._values = np.zeros(self.num_values, dtype=np.float32)
        self._values[valid] = self._rng.uniform(0.2, 1.0, size=self.num_valid)
        if not self.masks:
            return self._values.copy()
        return {"state": self._values.copy(), "action_mask": self._values > 0}

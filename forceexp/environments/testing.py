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


class MultiInputEnvironment(Environment):
    """Dict states where the right action needs both an image and int attributes.

    Each step a bright 4x4 patch sits in one of three column bands of a dark ``observation``
    image (float, (16, 16, 3)); ``attributes`` (int, (4, 2), values in ``[0, 5)``) carries a
    shift in ``attributes[0, 0]`` (0, 1 or 2) and noise elsewhere. The target action is
    ``(band + shift) % 3``; reward 1 for it, else 0. Seeing one input only leaves a third of the
    targets right (the other input is uniform), so a random or one-input policy scores about
    ``episode_length / 3`` and a policy that combines both scores ``episode_length``.

    Args:
        episode_length: Steps per episode.
        noise: Standard deviation of Gaussian pixel noise.
        seed: Seed of the draws.
    """

    NUM_ACTIONS = 3

    def __init__(self, episode_length: int = 4, noise: float = 0.05, seed: int = 0) -> None:
        if episode_length < 1:
            raise ConfigError(message("episode_length", episode_length, "an int >= 1"))
        self.episode_length, self.noise = episode_length, noise
        self._rng = np.random.default_rng(seed)
        self._target = 0
        self._t = 0

    def __repr__(self) -> str:
        return f"MultiInputEnvironment(episode_length={self.episode_length})"

    def states(self) -> dict[str, Any]:
        """An image-like float observation and int attributes."""
        return {
            "observation": {"type": "float", "shape": (16, 16, 3)},
            "attributes": {"type": "int", "shape": (4, 2), "num_values": 5},
        }

    def actions(self) -> dict[str, Any]:
        """One int choice among three."""
        return {"type": "int", "shape": (), "num_values": self.NUM_ACTIONS}

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Draw the first patch and attributes."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        return self._observe()

    def execute(self, actions: Any) -> tuple[dict[str, np.ndarray], int, float]:
        """Reward 1 if the action equals ``(band + shift) % 3``."""
        reward = float(int(actions) == self._target)
        self._t += 1
        terminal = TERMINATED if self._t >= self.episode_length else 0
        return self._observe(), terminal, reward

    def _observe(self) -> dict[str, np.ndarray]:
        rng = self._rng
        band, shift = int(rng.integers(3)), int(rng.integers(3))
        self._target = (band + shift) % self.NUM_ACTIONS
        image = rng.normal(0.0, self.noise, size=(16, 16, 3)).astype(np.float32)
        row, col = int(rng.integers(13)), band * 6 + int(rng.integers(2))
        image[row : row + 4, col : col + 4, :] += 1.0
        attributes = rng.integers(5, size=(4, 2))
        attributes[0, 0] = shift
        return {"observation": image, "attributes": attributes}


class CueMemoryEnvironment(Environment):
    """Remember a cue: only the first state shows it; the last step asks for it.

    States are float ``(3,)``: step 0 shows a one-hot cue among 2 (``[1, 0, 0]`` or
    ``[0, 1, 0]``), the ``delay - 1`` steps after it show zeros and the last step shows the
    query ``[0, 0, 1]``. The action at the query earns reward 1 if it names the cue, then the
    episode terminates; earlier actions earn nothing. Without memory of step 0 the query is
    a coin flip (expected return 0.5); a recurrent policy can reach 1.

    Args:
        delay: Steps from the cue to the query, >= 1 (episodes last ``delay + 1`` steps).
        seed: Seed of the cue draws.
    """

    def __init__(self, delay: int = 1, seed: int = 0) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ConfigError(message("environment.delay", delay, "an int >= 1"))
        self.delay = delay
        self._rng = np.random.default_rng(seed)
        self._cue = self._t = 0

    def __repr__(self) -> str:
        return f"CueMemoryEnvironment(delay={self.delay})"

    def states(self) -> dict[str, Any]:
        """Cue one-hot (2) and query flag (1)."""
        return {"type": "float", "shape": (3,), "min_value": 0.0, "max_value": 1.0}

    def actions(self) -> dict[str, Any]:
        """Which cue was shown."""
        return {"type": "int", "shape": (), "num_values": 2}

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Draw a cue and show it."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._cue, self._t = int(self._rng.integers(2)), 0
        return self._observe()

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        """Reward 1 for naming the cue at the query step, which ends the episode."""
        if self._t == self.delay:
            return self._observe(), TERMINATED, float(int(actions) == self._cue)
        self._t += 1
        return self._observe(), 0, 0.0

    def _observe(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        if self._t == self.delay:
            obs[2] = 1.0
        return obs


class HangingEnvironment(IdentityEnvironment):
    """The identity task whose ``execute`` (or ``reset``) hangs at a given call: tests timeouts.

    Args:
        hang_at: Number of the ``execute`` call (1-based) that sleeps ``seconds``; 0 hangs in
            the first ``reset`` instead.
        seconds: How long the hanging call sleeps.
    """

    def __init__(self, hang_at: int = 3, seconds: float = 3600.0) -> None:
        super().__init__()
        self.hang_at, self.seconds, self.calls = hang_at, seconds, 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset, hanging first when ``hang_at`` is 0."""
        if self.hang_at == 0:
            import time

            time.sleep(self.seconds)
        return super().reset(seed)

    def execute(self, actions: Any) -> tuple[np.ndarray, int, float]:
        """Step, hanging at call ``hang_at``."""
        self.calls += 1
        if self.calls == self.hang_at:
            import time

            time.sleep(self.seconds)
        return super().execute(actions)

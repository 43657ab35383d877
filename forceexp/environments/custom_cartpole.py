"""``custom_cartpole``: a cart-pole with randomised physics per episode (Tensorforce's example).

Written to Tensorforce's vectorizable protocol, so it doubles as the reference for custom
environments: ``reset()`` returns one state; ``reset(num_parallel=n)`` returns
``(parallel, states)`` and ``execute`` then returns ``(parallel, states, terminal, reward)``
for the episodes still running. Each reset draws pole mass, pole length, cart mass and push
force uniformly from their ranges (one set shared by the parallel episodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forceexp.environments.environment import Environment
from forceexp.errors import ConfigError, message

Range = float | tuple[float, float]


def _as_range(name: str, value: Range) -> tuple[float, float]:
    low, high = (value, value) if isinstance(value, int | float) else tuple(value)
    if not 0.0 < low <= high:
        raise ConfigError(message(name, value, "a number > 0 or a (low, high) pair, 0 < low"))
    return float(low), float(high)


class CustomCartPole(Environment):
    """Cart-pole balancing with physics re-drawn every episode.

    State (float): pole angle, and with ``state_velocities`` the angular and cart velocities,
    and with ``state_location`` the cart position. Actions (int): push left (0), push right
    (1) and, with ``action_noop``, no push (2); or one float force with ``action_continuous``.
    The episode ends when a state leaves its bound (the angle: 45 degrees). Reward 1 per step.

    Args:
        pole_mass: Pole mass in kg, or a (low, high) range drawn per episode.
        pole_length: Half the pole length in m, or a range.
        cart_mass: Cart mass in kg, or a range.
        relative_force: Push force relative to gravity, or a range.
        gravity: Gravitational acceleration in m/s^2.
        state_velocities: Include the angular and cart velocities in the state.
        state_location: Include the cart position (and bound it).
        initial_bounds: Uniform start ranges (+-) of cart velocity, angle, angular velocity.
        timedelta: Integration step in s.
        action_continuous: One float action (the push, times the force) instead of ints.
        action_noop: Offer a no-push action (always true for continuous actions).
    """

    def __init__(
        self,
        pole_mass: Range = (0.05, 0.5),
        pole_length: Range = (0.1, 1.0),
        cart_mass: Range = (0.5, 1.5),
        relative_force: Range = (0.75, 1.5),
        gravity: float = 9.8,
        state_velocities: bool = True,
        state_location: bool = False,
        initial_bounds: tuple[float, float, float] = (0.05, 0.05, 0.05),
        timedelta: float = 0.02,
        action_continuous: bool = False,
        action_noop: bool = True,
    ) -> None:
        self.ranges = {
            "pole_mass": _as_range("pole_mass", pole_mass),
            "pole_length": _as_range("pole_length", pole_length),
            "cart_mass": _as_range("cart_mass", cart_mass),
            "relative_force": _as_range("relative_force", relative_force),
        }
        self.gravity, self.timedelta = float(gravity), float(timedelta)
        self.continuous, self.noop = bool(action_continuous), bool(action_noop or action_continuous)
        # physical state columns: position, velocity, angle, angular velocity
        self.columns = [2] + ([3, 1] if state_velocities else []) + ([0] if state_location else [])
        self.initial = np.array([0.0, *initial_bounds], dtype=np.float64)
        self.bounds = self._bounds(state_location)
        self.physics: dict[str, float] = {}
        self.state = np.zeros((1, 4))
        self.parallel: np.ndarray | None = None

    def _bounds(self, state_location: bool) -> np.ndarray:
        """State bounds: 45 degrees; velocities 10 steps of the largest acceleration at rest."""
        (m_low, m_high), (l_low, _) = self.ranges["pole_mass"], self.ranges["pole_length"]
        (c_low, _), (_, f_high) = self.ranges["cart_mass"], self.ranges["relative_force"]
        force = f_high * self.gravity
        angle_acc = force / (c_low + m_low) / l_low / (4.0 / 3.0 - m_high / (c_low + m_low))
        cart_acc = force / (c_low + m_low)
        velocity = cart_acc * self.timedelta * 10.0
        location = velocity if state_location else np.inf
        return np.array([location, velocity, np.pi / 4.0, angle_acc * self.timedelta * 10.0])

    def states(self) -> dict[str, Any]:
        """Bounded float state of 1 to 4 values."""
        bound = self.bounds[self.columns].astype(np.float32)
        return {"type": "float", "shape": (len(self.columns),), "min_value": -bound,
                "max_value": bound}  # fmt: skip

    def actions(self) -> dict[str, Any]:
        """Push left/right (/none) as an int, or a float force."""
        if self.continuous:
            return {"type": "float", "shape": ()}
        return {"type": "int", "shape": (), "num_values": 3 if self.noop else 2}

    def is_vectorizable(self) -> bool:
        """Supports ``reset(num_parallel=n)``."""
        return True

    def reset(self, num_parallel: int | None = None) -> Any:
        """Draw new physics and start one episode (or ``num_parallel`` of them)."""
        count = 1 if num_parallel is None else int(num_parallel)
        self.physics = {key: float(np.random.uniform(*r)) for key, r in self.ranges.items()}
        self.state = np.random.uniform(-self.initial, self.initial, size=(count, 4))
        if num_parallel is None:
            self.parallel = None
            return self.state[0, self.columns].astype(np.float32)
        self.parallel = np.arange(count)
        return self.parallel.copy(), self.state[:, self.columns].astype(np.float32)

    def execute(self, actions: Any) -> Any:
        """Integrate one step; finished parallel episodes drop out of the outputs."""
        push = np.atleast_1d(np.asarray(actions, dtype=np.float64))
        if not self.continuous:
            push = np.select([push == 0, push == 1], [-1.0, 1.0], 0.0)
        self.state = self.state + self.timedelta * self._derivative(push)
        terminal = (np.abs(self.state) > self.bounds).any(axis=1)
        reward = np.ones(len(terminal), dtype=np.float32)
        if self.parallel is None:
            return self.state[0, self.columns].astype(np.float32), bool(terminal[0]), 1.0
        self.parallel, self.state = self.parallel[~terminal], self.state[~terminal]
        states = self.state[:, self.columns].astype(np.float32)
        return self.parallel.copy(), states, terminal, reward

    def _derivative(self, push: np.ndarray) -> np.ndarray:
        """Time derivative of (position, velocity, angle, angular velocity), shape (N, 4)."""
        p = self.physics
        force = push * p["relative_force"] * self.gravity
        _, velocity, angle, angular = self.state.T
        total = p["cart_mass"] + p["pole_mass"]
        mass_length = p["pole_mass"] * p["pole_length"]
        cos, sin = np.cos(angle), np.sin(angle)
        temp = (force + mass_length * angular**2 * sin) / total
        angle_acc = (self.gravity * sin - cos * temp) / (
            p["pole_length"] * (4.0 / 3.0 - p["pole_mass"] * cos**2 / total)
        )
        cart_acc = temp - mass_length * angle_acc * cos / total
        return np.stack([velocity, cart_acc, angular, angle_acc], axis=1)

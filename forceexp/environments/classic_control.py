"""Vectorised NumPy copies of Gymnasium's CartPole-v1 and Acrobot-v1 (same dynamics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forceexp.environments.vectorized import VectorizedEnvironment


class CartPoleVectorized(VectorizedEnvironment):
    """Gymnasium CartPole-v1 for N carts at once (explicit Euler, float64 state).

    Reward 1 per step including the terminal one; terminated when ``|x| > 2.4`` or
    ``|theta| > 12 degrees``; initial states uniform in ``[-0.05, 0.05]``; 500-step limit;
    actions 0 (push left) and 1 (push right).

    Args:
        num_environments: Number of carts N.
        max_episode_timesteps: Episode limit (default 500, as CartPole-v1).
    """

    default_max_episode_timesteps = 500
    solved_return = 475.0  # CartPole-v1's reward_threshold
    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5  # half the pole's length
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def __init__(self, num_environments: int = 1, max_episode_timesteps: int | None = None) -> None:
        super().__init__(num_environments, max_episode_timesteps)
        self.state = np.zeros((4, self.num_environments))  # rows: x, x_dot, theta, theta_dot
        self._forces = np.array([-self.force_mag, self.force_mag])
        self._thresholds = np.array([[self.x_threshold], [self.theta_threshold_radians]])
        self._last = np.zeros((self.num_environments, 4), dtype=np.float32)
        self._rewards = np.ones(self.num_environments, dtype=np.float32)

    def states(self) -> dict[str, Any]:
        """Four floats: cart position and velocity, pole angle and angular velocity."""
        return {"type": "float", "shape": [4]}

    def actions(self) -> dict[str, Any]:
        """Discrete(2): push left (0) or right (1)."""
        return {"type": "int", "shape": [], "num_values": 2}

    def _reset(self, rows: np.ndarray) -> np.ndarray:
        count = len(rows)
        if count == self.num_environments:
            self.state = self.rng.uniform(-0.05, 0.05, size=(count, 4)).T.copy()
            return self._observation()
        observation = self._last.copy()  # a fresh array: callers may still hold the last one
        if count:
            drawn = self.rng.uniform(-0.05, 0.05, size=(count, 4))
            self.state[:, rows] = drawn.T
            observation[rows] = drawn
        self._last = observation
        return observation

    def _observation(self) -> np.ndarray:
        self._last = self.state.T.astype(np.float32, order="C")
        return self._last

    def _execute(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Gymnasium's arithmetic, operation for operation (so results match to the bit).
        _, x_dot, theta, theta_dot = self.state
        force = self._forces[actions]
        costheta = np.cos(theta)
        sintheta = np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        state = np.stack((x_dot, xacc, theta_dot, thetaacc))
        state *= self.tau
        state += self.state  # x + tau * x_dot, ... (Euler)
        self.state = state
        beyond = np.abs(state[::2]) > self._thresholds  # |x|, |theta|
        return self._observation(), beyond[0] | beyond[1], self._rewards.copy()


class AcrobotVectorized(VectorizedEnvironment):
    """Gymnasium Acrobot-v1 for N acrobots at once (the "book" dynamics, one RK4 step of 0.2 s).

    Reward -1 per step and 0 on the terminal step (free end above the bar:
    ``-cos(t1) - cos(t1 + t2) > 1``); initial angles and velocities uniform in ``[-0.1, 0.1]``;
    500-step limit; actions 0, 1, 2 apply torque -1, 0, +1.

    Args:
        num_environments: Number of acrobots N.
        max_episode_timesteps: Episode limit (default 500, as Acrobot-v1).
    """

    default_max_episode_timesteps = 500
    solved_return = -100.0  # Acrobot-v1's reward_threshold
    dt = 0.2
    link_length_1 = 1.0
    link_mass_1 = 1.0
    link_mass_2 = 1.0
    link_com_pos_1 = 0.5
    link_com_pos_2 = 0.5
    link_moi = 1.0
    max_vel_1 = 4 * math.pi
    max_vel_2 = 9 * math.pi
    torques = np.array([-1.0, 0.0, 1.0])

    def __init__(self, num_environments: int = 1, max_episode_timesteps: int | None = None) -> None:
        super().__init__(num_environments, max_episode_timesteps)
        self.state = np.zeros((4, self.num_environments))  # rows: theta1, theta2, dtheta1, dtheta2

    def states(self) -> dict[str, Any]:
        """cos/sin of both angles and both angular velocities (bounded as in Gymnasium)."""
        high = np.array(
            [1.0, 1.0, 1.0, 1.0, self.max_vel_1, self.max_vel_2], dtype=np.float32
        ).tolist()
        return {"type": "float", "shape": [6], "min_value": [-h for h in high], "max_value": high}

    def actions(self) -> dict[str, Any]:
        """Discrete(3): torque -1, 0 or +1 on the joint between the links."""
        return {"type": "int", "shape": [], "num_values": 3}

    def _reset(self, rows: np.ndarray) -> np.ndarray:
        if len(rows):
            drawn = self.rng.uniform(-0.1, 0.1, size=(len(rows), 4)).astype(np.float32)
            self.state[:, rows] = drawn.T
        return self._observation()

    def _observation(self) -> np.ndarray:
        t1, t2, d1, d2 = self.state
        return np.stack([np.cos(t1), np.sin(t1), np.cos(t2), np.sin(t2), d1, d2], axis=1).astype(
            np.float32
        )

    def _execute(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torque = self.torques[actions]
        s = self.state
        h, h2 = self.dt, self.dt / 2.0
        k1 = self._derivatives(s, torque)
        k2 = self._derivatives(s + h2 * k1, torque)
        k3 = self._derivatives(s + h2 * k2, torque)
        k4 = self._derivatives(s + h * k3, torque)
        ns = s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        ns[0] = _wrap(ns[0], -math.pi, math.pi)
        ns[1] = _wrap(ns[1], -math.pi, math.pi)
        ns[2] = np.clip(ns[2], -self.max_vel_1, self.max_vel_1)
        ns[3] = np.clip(ns[3], -self.max_vel_2, self.max_vel_2)
        self.state = ns
        terminated = -np.cos(ns[0]) - np.cos(ns[1] + ns[0]) > 1.0
        rewards = np.where(terminated, 0.0, -1.0).astype(np.float32)
        return self._observation(), terminated, rewards

    def _derivatives(self, s: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Time derivative of the state ``(4, N)`` under torques ``a`` (Gymnasium's ``_dsdt``)."""
        m1, m2 = self.link_mass_1, self.link_mass_2
        l1, lc1, lc2 = self.link_length_1, self.link_com_pos_1, self.link_com_pos_2
        i1 = i2 = self.link_moi
        g = 9.8
        theta1, theta2, dtheta1, dtheta2 = s
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * np.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * np.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * np.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * np.sin(theta2) - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return np.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def _wrap(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Wrap values into ``[low, high]`` by whole periods (Gymnasium's ``wrap``, vectorised)."""
    period = high - low
    x = x.copy()
    while (above := x > high).any():
        x[above] -= period
    while (below := x < low).any():
        x[below] += period
    return x

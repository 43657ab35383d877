"""Observer: the hooks an agent calls on its saver, recorder and summarizer (composed)."""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent


class Observer:
    """No-op hooks; observers override what they need.

    Hooks run in the agent's non-independent ``act``/``observe`` calls, after the agent's own
    bookkeeping, with batched NumPy/torch values and the slot indices ``(B,)`` they belong to.
    """

    def attach(self, agent: Agent) -> None:
        """Called once when the agent is constructed."""

    def on_act(
        self,
        agent: Agent,
        states: dict[str, Any],
        masks: dict[str, Any],
        actions: dict[str, np.ndarray],
        slots: np.ndarray,
    ) -> None:
        """After a stored act: states/masks ``(B, ...)`` tensors, actions ``(B, ...)`` arrays."""

    def on_observe(
        self, agent: Agent, rewards: np.ndarray, terminals: np.ndarray, slots: np.ndarray
    ) -> None:
        """After an observe: rewards and terminals ``(B,)``."""

    def on_episode(self, agent: Agent, slot: int, episode_return: float, length: int) -> None:
        """When an episode of ``slot`` ends."""

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """After an update, with its metrics (names from ``forceexp.tags``)."""

    def on_metrics(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Scalar metrics from outside an update, e.g. an evaluation's ``eval/mean_return``."""

    def close(self, agent: Agent) -> None:
        """When the agent closes: flush and release files."""


_RATES: weakref.WeakKeyDictionary[Any, tuple[int, float]] = weakref.WeakKeyDictionary()


def steps_per_second(agent: Agent) -> float | None:
    """CleanRL's SPS: timesteps per second since the agent's first stored act (None before).

    Computed once per timestep count, so the summarizer and the MLflow tracker log the same
    ``charts/SPS`` value.
    """
    if agent.started is None:
        return None
    cached = _RATES.get(agent)
    if cached is not None and cached[0] == agent.timesteps:
        return cached[1]
    seconds = time.perf_counter() - agent.started[0]
    if seconds <= 0:
        return None
    rate = (agent.timesteps - agent.started[1]) / seconds
    _RATES[agent] = (agent.timesteps, rate)
    return rate


def notify_metrics(agent: Agent, metrics: dict[str, float]) -> None:
    """Pass scalar ``metrics`` (tags of ``forceexp.tags``) to every observer of ``agent``."""
    for observer in agent.observers:
        observer.on_metrics(agent, metrics)

"""Observer: the hooks an agent calls on its saver, recorder and summarizer (composed)."""

from __future__ import annotations

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

    def close(self, agent: Agent) -> None:
        """When the agent closes: flush and release files."""

"""Tensorforce's ``tracking=``: the latest value of each tracked quantity, read back in code.

``Agent.create(..., tracking='all')`` (or a list of names) attaches a ``TrackedValues``
observer; ``agent.tracked_tensors()`` returns ``{name: latest value}``. Our metric tags that
have a Tensorforce counterpart are reported under Tensorforce's name (``TENSORFORCE_NAMES``,
e.g. ``losses/policy_loss`` as ``agent/policy-objective-loss``); the others under their own
tag. Values are those of the last update (losses, entropy, KL), of the last finished episode
(return, length) and of the last act (the agent's parameters: learning rate, exploration,
reward horizon, under Tensorforce's ``agent/<name>/<name>`` names).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from forceexp import tags
from forceexp.errors import ConfigError, message
from forceexp.observers.base import Observer

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

#: our tag -> Tensorforce's tracked-tensor name, where the quantity is the same
TENSORFORCE_NAMES = {
    tags.LOSS_POLICY: "agent/policy-objective-loss",
    tags.LOSS_VALUE: "agent/baseline-objective-loss",
    tags.LOSS_TOTAL: "agent/policy-loss",
    tags.ENTROPY: "agent/entropy",
    tags.KL_DIVERGENCE: "agent/kl-divergence",
    tags.LEARNING_RATE: "agent/policy_optimizer/policy_optimizer/learning_rate/learning_rate",
    tags.EXPLORATION: "agent/exploration/exploration",
    tags.EPISODE_RETURN: "agent/episode-return",
    tags.EPISODE_LENGTH: "agent/episode-length",
}

#: ``agent.parameter_schedules()`` name -> Tensorforce's tracked-tensor name (read at every act)
PARAMETER_NAMES = {
    "learning_rate": TENSORFORCE_NAMES[tags.LEARNING_RATE],
    "exploration": TENSORFORCE_NAMES[tags.EXPLORATION],
    "reward_horizon": "agent/reward_horizon/reward_horizon",
}


def tracked_names(tracking: Any) -> frozenset[str] | None:
    """``'all'`` -> None (everything); a list of names -> that set; anything else refused."""
    if tracking == "all":
        return None
    if isinstance(tracking, str) or not isinstance(tracking, Sequence) or not tracking:
        raise ConfigError(message("agent.tracking", tracking, "None, 'all' or a list of names"))
    names = frozenset(tracking)
    bad = sorted(n for n in names if not isinstance(n, str) or "/" not in n)
    if bad:
        raise ConfigError(
            message("agent.tracking", bad, "names like 'agent/entropy' or 'losses/entropy'")
        )
    return names


class TrackedValues(Observer):
    """Keeps the latest value of each tracked metric (all, or the names given).

    Args:
        tracking: ``'all'`` or a list of names, in either vocabulary (Tensorforce's
            ``agent/entropy`` or our ``losses/entropy``).
    """

    def __init__(self, tracking: Any) -> None:
        self.names = tracked_names(tracking)
        self.values: dict[str, float] = {}

    def _store(self, metrics: dict[str, float]) -> None:
        for tag, value in metrics.items():
            name = TENSORFORCE_NAMES.get(tag, tag)
            if self.names is None or name in self.names or tag in self.names:
                self.values[name] = float(value)

    def on_act(self, agent: Agent, *args: Any) -> None:
        """Keep the agent's parameter values (learning rate, exploration, horizon) of this act."""
        schedules = agent.parameter_schedules()
        for key, name in PARAMETER_NAMES.items():
            if key in schedules and (self.names is None or name in self.names):
                value = schedules[key].value(agent.timesteps, agent.episodes, agent.updates)
                self.values[name] = float(value)

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Keep the update's metrics."""
        self._store(metrics)

    def on_metrics(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Keep metrics from outside an update (evaluation)."""
        self._store(metrics)

    def on_episode(self, agent: Agent, slot: int, episode_return: float, length: int) -> None:
        """Keep the finished episode's return and length."""
        self._store({tags.EPISODE_RETURN: episode_return, tags.EPISODE_LENGTH: length})


def attach_tracking(agent: Agent, tracking: Any) -> None:
    """Give ``agent`` a ``TrackedValues`` observer unless ``tracking`` is off (None/False)."""
    if tracking not in (None, False, "none"):
        agent.observers.append(TrackedValues(tracking))

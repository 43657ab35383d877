"""Tensorforce's ``tracking=``: the latest value of each tracked quantity, read back in code.

``Agent.create(..., tracking='all')`` (or a list of names) attaches a ``TrackedValues``
observer; ``agent.tracked_tensors()`` returns ``{name: latest value}`` under Tensorforce's
names, every name present from the first act on (update-time values start at 0 / empty):

- at each act, from the acting batch's distributions (agents with an ``ActorCritic`` policy:
  ppo, a2c, ac, vpg, trpo): ``agent/policy/<action>_distribution/<parameter>`` (arrays of the
  batch), ``agent/entropies/<action>`` (batch mean) and ``agent/entropy`` (their sum), and the
  agent's parameters (learning rate, exploration, reward horizon: ``PARAMETER_NAMES``);
  the distributions are recomputed from the act's inputs, so without ``variable_noise``;
- at each observe: ``agent/preprocessed-reward`` (the rewards after reward processing) and,
  when an episode ends, ``agent/preprocessed-episode-return``;
- at each update (ppo, a2c, ac, vpg): ``agent/kl-divergences/<action>`` and
  ``agent/kl-divergence``, the KL from the last acting batch's distributions before the
  update (``kept_acting``) to the updated policy's on the same inputs; the agent's
  ``tracked_losses`` (policy and baseline objective and regularization losses and their
  sums); its ``kept_targets`` as ``agent/update-return``, ``-processed-return``,
  ``-advantage`` and ``-processed-advantage`` (arrays).

Other agents report the update metrics that have a Tensorforce name (``TENSORFORCE_NAMES``).
Our own metrics (``charts/...``, ``losses/...``) go to the summarizer and the MLflow tracker,
not here, unless a ``tracking`` list names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forceexp import tags
from forceexp.core.distributions import StateDependentGaussian
from forceexp.core.natural_gradient import kl_divergence
from forceexp.errors import ConfigError, message
from forceexp.observers.base import Observer

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

#: our update tag -> Tensorforce's name, for agents without ``tracked_losses``
TENSORFORCE_NAMES = {
    tags.LOSS_POLICY: "agent/policy-objective-loss",
    tags.LOSS_VALUE: "agent/baseline-objective-loss",
    tags.LOSS_TOTAL: "agent/policy-loss",
    tags.KL_DIVERGENCE: "agent/kl-divergence",
}

#: ``agent.parameter_schedules()`` name -> Tensorforce's tracked-tensor name (read at every act)
PARAMETER_NAMES = {
    "learning_rate": "agent/policy_optimizer/policy_optimizer/learning_rate/learning_rate",
    "exploration": "agent/exploration/exploration",
    "reward_horizon": "agent/reward_horizon/reward_horizon",
}

#: Tensorforce's loss names (``tracked_losses`` of the policy-gradient agents)
LOSS_NAMES = tuple(
    f"agent/{part}-{kind}loss"
    for part in ("policy", "baseline")
    for kind in ("", "objective-", "regularization-")
)
#: ``kept_targets`` key -> Tensorforce's name
TARGET_NAMES = {
    key: f"agent/update-{key}"
    for key in ("return", "processed-return", "advantage", "processed-advantage")
}
_EMPTY = np.zeros(0, dtype=np.float32)


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


def _array(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class TrackedValues(Observer):
    """Keeps the latest value of each tracked quantity (all, or the names given).

    Args:
        tracking: ``'all'`` or a list of names: Tensorforce's (``agent/entropy``) or, to read
            one of our update metrics back, our tag (``losses/clipfrac``).
    """

    def __init__(self, tracking: Any) -> None:
        self.names = tracked_names(tracking)
        self.values: dict[str, Any] = {}
        self._episode = _EMPTY

    def _keep(self, name: str, value: Any) -> None:
        if self.names is None or name in self.names:
            self.values[name] = value

    def attach(self, agent: Agent) -> None:
        """Ask the agent to keep its acting distributions and update targets."""
        keep = getattr(agent, "keep_acting_distributions", None)
        if keep is not None:
            keep()
        if hasattr(agent, "keep_targets"):
            agent.keep_targets = True
        self._episode = np.zeros(agent.parallel_interactions)

    def _start(self, agent: Agent, actions: Sequence[str]) -> None:
        """Every update-time name at its initial value (Tensorforce's variables exist at once)."""
        if hasattr(agent, "tracked_losses"):
            for name in LOSS_NAMES:
                self._keep(name, 0.0)
        if hasattr(agent, "keep_targets"):
            for name in TARGET_NAMES.values():
                self._keep(name, _EMPTY)
        if hasattr(agent, "keep_targets") and actions:
            self._keep("agent/kl-divergence", 0.0)
            for action in actions:
                self._keep(f"agent/kl-divergences/{action}", 0.0)
        self._keep("agent/preprocessed-reward", _EMPTY)
        self._keep("agent/preprocessed-episode-return", 0.0)

    def on_act(self, agent: Agent, *args: Any) -> None:
        """Keep the acting batch's distributions and entropies and the agent's parameters."""
        policy = getattr(agent, "policy", None)
        kept = getattr(policy, "kept", None)
        if not self.values:
            self._start(agent, list(policy.heads) if kept is not None else [])
        schedules = agent.parameter_schedules()
        for key, name in PARAMETER_NAMES.items():
            if key in schedules:
                value = schedules[key].value(agent.timesteps, agent.episodes, agent.updates)
                self._keep(name, float(value))
        if kept is not None:
            self._distributions(policy, kept)

    @torch.inference_mode()
    def _distributions(self, policy: Any, kept: tuple[Any, ...]) -> None:
        """The distributions of the act's inputs ``kept``: parameters and entropies."""
        dists = policy.step_distributions(*kept)
        total = 0.0
        for action, dist in dists.items():
            for kind, x in dist.parameters().items():
                self._keep(f"agent/policy/{action}_distribution/{kind}", _array(x))
            entropy = float(dist.entropy().mean())
            self._keep(f"agent/entropies/{action}", entropy)
            total += entropy
        self._keep("agent/entropy", total)

    def on_observe(
        self, agent: Agent, rewards: np.ndarray, terminals: np.ndarray, slots: np.ndarray
    ) -> None:
        """Keep the processed rewards; the processed return of each episode that ended."""
        processed = np.asarray(agent.processed_rewards, dtype=np.float32)
        self._keep("agent/preprocessed-reward", processed)
        np.add.at(self._episode, slots, processed)
        for slot in slots[np.asarray(terminals) > 0]:
            self._keep("agent/preprocessed-episode-return", float(self._episode[slot]))
            self._episode[slot] = 0.0

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Keep the update's losses, targets and KL divergences."""
        losses = getattr(agent, "tracked_losses", None)
        if losses is not None:
            for name, value in losses(metrics).items():
                self._keep(name, float(value))
        else:
            for tag, name in TENSORFORCE_NAMES.items():
                if tag in metrics:
                    self._keep(name, float(metrics[tag]))
        self.on_metrics(agent, metrics)
        for key, value in getattr(agent, "kept_targets", {}).items():
            self._keep(TARGET_NAMES[key], value)
        acting = getattr(agent, "kept_acting", None)
        if acting is not None:
            self._kl(agent, *acting)

    @torch.inference_mode()
    def _kl(self, agent: Agent, old: dict[str, Any], kept: tuple[Any, ...]) -> None:
        """Per action and summed: KL(last acting batch before the update || updated policy)."""
        if any(isinstance(d, StateDependentGaussian) for d in old.values()):
            return  # gSDE: no closed-form KL here
        new = agent.policy.step_distributions(*kept)
        kls = {action: float(kl_divergence(old[action], new[action]).mean()) for action in old}
        for action, kl in kls.items():
            self._keep(f"agent/kl-divergences/{action}", kl)
        self._keep("agent/kl-divergence", sum(kls.values()))

    def on_metrics(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Keep our metrics that a ``tracking`` list names (never with ``'all'``)."""
        if self.names is not None:
            for tag in self.names.intersection(metrics):
                self.values[tag] = float(metrics[tag])


def attach_tracking(agent: Agent, tracking: Any) -> None:
    """Give ``agent`` a ``TrackedValues`` observer unless ``tracking`` is off (None/False)."""
    if tracking not in (None, False, "none"):
        observer = TrackedValues(tracking)
        observer.attach(agent)
        agent.observers.append(observer)

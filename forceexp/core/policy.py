"""ActorCritic: state normalization, policy network, one head per action, and a value head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from forceexp.core.distributions import Bounding, Distribution, StateDependentHead, make_head
from forceexp.core.exploration import epsilon_greedy, uniform_actions
from forceexp.core.init import orthogonal_
from forceexp.core.normalization import RunningNormalizer
from forceexp.core.regularizers import weight_matrices
from forceexp.errors import ConfigError
from forceexp.specs import Specs

Tensors = dict[str, torch.Tensor]
_HEAD_OPTIONS = ("bounded_actions", "temperature", "skip_linear")


def action_options(
    distributions: dict[str, dict[str, Any]] | None, actions: Specs, bounded_actions: Bounding
) -> dict[str, dict[str, Any]]:
    """``make_head`` keyword arguments per action: the defaults, then ``distributions``."""
    given = distributions or {}
    unknown = sorted(set(given) - set(actions.names()))
    if unknown:
        raise ConfigError(
            f"distributions: unknown actions {unknown}; valid: {', '.join(actions.names())}"
        )
    out = {}
    for name in actions.names():
        options = dict(given.get(name) or {})
        bad = sorted(set(options) - set(_HEAD_OPTIONS))
        if bad:
            raise ConfigError(
                f"distributions.{name}: unknown options {bad}; valid: {', '.join(_HEAD_OPTIONS)}"
            )
        out[name] = {"bounded_actions": bounded_actions, **options}
    return out


def _slice(network: nn.Module | None, key: str) -> slice | None:
    """Where output ``key`` lies in a multi-output network's features (None: all of them)."""
    slices = getattr(network, "output_slices", None)
    return None if slices is None else slices.get(key, slices["embedding"])


def _width(network: nn.Module, part: slice | None) -> int:
    return network.output_size if part is None else part.stop - part.start


class ActorCritic(nn.Module):
    """Policy and state-value function over named states and actions.

    With ``keep_distributions`` set (Tensorforce's ``tracking``), every act keeps its inputs
    ``kept = (normalized states, masks, internals or None)`` for ``step_distributions``.

    A layered network built with ``single_output=False`` feeds each action head its
    ``<action>-embedding`` (``action-embedding`` for a single action) and the value head the
    baseline's (else the policy network's) ``state-embedding``, each falling back to the last
    layer's output when not registered (Tensorforce's parametrized policies).

    Args:
        states: State specs.
        actions: Action specs.
        network: Built policy network (the agent builds it with ``config.build_network``): an
            ``nn.Module`` mapping ``{name: (B, *shape)}`` states to ``(B, output_size)`` features.
        baseline: Built value network; ``None`` shares the policy network's features.
        normalize_states: Keep running mean/std of float states and normalize with them.
        bounded_actions: ``'clip'``, ``'squash'`` or ``'beta'`` for bounded float actions.
        sde: gSDE options for float actions (``StateDependentHead``); None: plain Gaussian.
        slots: Parallel slots (gSDE keeps one exploration matrix per slot).
        distributions: Per-action head options overriding the defaults,
            ``{action: {'bounded_actions': ..., 'temperature': 'global' | 'predicted'}}``.
    """

    def __init__(
        self,
        states: Specs,
        actions: Specs,
        network: nn.Module,
        baseline: nn.Module | None = None,
        normalize_states: bool = False,
        bounded_actions: Bounding = "clip",
        sde: dict[str, Any] | None = None,
        slots: int = 1,
        distributions: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.state_specs, self.action_specs = states, actions
        self.normalizers = nn.ModuleDict(
            {
                name: RunningNormalizer(spec.shape)
                for name, spec in states.items
                if normalize_states and spec.type == "float"
            }
        )
        self.network = network
        options = action_options(distributions, actions, bounded_actions)
        self._head_slices = {
            name: _slice(network, "action-embedding" if actions.single else f"{name}-embedding")
            for name in actions.names()
        }
        self.heads = nn.ModuleDict(
            {
                name: make_head(
                    name,
                    _width(network, self._head_slices[name]),
                    spec,
                    sde=sde,
                    slots=slots,
                    **options[name],
                )
                for name, spec in actions.items
            }
        )
        self.baseline = baseline
        self._value_slice = _slice(baseline or network, "state-embedding")
        policy_shapes = getattr(self.network, "internal_shapes", {})
        baseline_shapes = getattr(self.baseline, "internal_shapes", {})
        #: internals of the policy network and of the baseline network, by layer path
        self.internal_shapes: dict[str, tuple[int, ...]] = {**policy_shapes, **baseline_shapes}
        if len(self.internal_shapes) < len(policy_shapes) + len(baseline_shapes):
            raise ConfigError(
                f"baseline: layer paths {sorted(set(policy_shapes) & set(baseline_shapes))} "
                "are used by the policy network too"
            )
        self.recurrent = bool(self.internal_shapes)
        self._policy_paths, self._baseline_paths = list(policy_shapes), list(baseline_shapes)
        if policy_shapes and self.baseline is None:
            raise ConfigError(
                "baseline: a recurrent policy network needs its own baseline network "
                "(e.g. baseline='auto'), not a shared one"
            )
        value_in = _width(self.baseline or self.network, self._value_slice)
        self.value_head = orthogonal_(nn.Linear(value_in, 1), 1.0)

    def head_input(self, name: str, features: torch.Tensor) -> torch.Tensor:
        """The part of policy ``features`` (..., F) that action ``name``'s head reads."""
        part = self._head_slices[name]
        return features if part is None else features[..., part]

    def _values(self, features: torch.Tensor) -> torch.Tensor:
        """The value head on (its part of) value ``features`` (..., F): values (...)."""
        part = self._value_slice
        return self.value_head(features if part is None else features[..., part]).squeeze(-1)

    #: keep each act's inputs in ``kept`` (off: acting pays nothing)
    keep_distributions = False

    def step_distributions(
        self, states: Tensors, masks: Tensors, internals: Tensors | None = None
    ) -> dict[str, Distribution]:
        """The distributions of one act on normalized ``states`` (and internals), no sampling."""
        features, _ = self._step(self.network, self._policy_paths, states, internals or {})
        return self.distributions(features, masks)

    def weights(self) -> list[nn.Parameter]:
        """The weight matrices (no biases, no log-std): what L2 regularization penalizes."""
        return weight_matrices([self])

    def acting_parameters(self) -> list[nn.Parameter]:
        """Parameters of the policy network and action heads (what variable noise perturbs)."""
        return [*self.network.parameters(), *self.heads.parameters()]

    def explore(self, actions: Tensors, masks: Tensors, epsilon: float) -> Tensors:
        """Per row, a uniformly random action (masks respected) with probability ``epsilon``.

        Random float actions are uniform within bounds (standard normal when unbounded),
        mapped back into each head's raw (stored) space.
        """
        if epsilon <= 0.0:
            return actions
        first = next(iter(actions.values()))
        random = uniform_actions(self.action_specs, masks, first.shape[0], None, first.device)
        random = {name: self.heads[name].from_env(a) for name, a in random.items()}
        return epsilon_greedy(actions, random, epsilon, None)

    def sde_heads(self) -> list[StateDependentHead]:
        """The gSDE heads (empty without ``sde``)."""
        return [head for head in self.heads.values() if isinstance(head, StateDependentHead)]

    def normalize(self, states: Tensors, update: bool) -> Tensors:
        """Apply (and optionally first update) the running state normalizers."""
        if not self.normalizers:
            return states
        out = dict(states)
        for name, normalizer in self.normalizers.items():
            if update:
                normalizer.update(states[name])
            out[name] = normalizer(states[name])
        return out

    def distributions(self, features: torch.Tensor, masks: Tensors) -> dict[str, Distribution]:
        """Per-action distributions from policy features ``(B, F)`` and masks."""
        return {
            name: head(self.head_input(name, features), masks.get(name))
            for name, head in self.heads.items()
        }

    def value_from(self, features: torch.Tensor, states: Tensors) -> torch.Tensor:
        """State values ``(B,)`` (from shared features, or the separate baseline network)."""
        if self.baseline is not None:
            features = self.baseline(states)
        return self._values(features)

    def act(
        self,
        states: Tensors,
        masks: Tensors,
        deterministic: bool,
        with_value: bool = True,
        exploration: float = 0.0,
    ) -> tuple[Tensors, torch.Tensor | None, torch.Tensor | None]:
        """Sample actions for normalized ``states`` (``explore``-mixed unless deterministic).

        Returns:
            ``(raw_actions, log_prob (B,), value (B,))``; raw float actions are unclipped.
            Without ``with_value`` (independent acts) log-prob and value are skipped (None).
        """
        features = self.network(states)
        dists = self.distributions(features, masks)
        if self.keep_distributions:
            self.kept = (states, masks, None)
        actions = {name: dist.sample(deterministic) for name, dist in dists.items()}
        if not deterministic:
            actions = self.explore(actions, masks, exploration)
        if not with_value:
            return actions, None, None
        log_prob = sum(dist.log_prob(actions[name]) for name, dist in dists.items())
        return actions, log_prob, self.value_from(features, states)  # type: ignore[return-value]

    def act_recurrent(
        self,
        states: Tensors,
        masks: Tensors,
        deterministic: bool,
        internals: Tensors,
        with_value: bool,
        exploration: float = 0.0,
    ) -> tuple[Tensors, torch.Tensor | None, torch.Tensor | None, Tensors]:
        """As ``act`` for a recurrent policy and/or baseline; also returns the next internals."""
        features, following = self._step(self.network, self._policy_paths, states, internals)
        dists = self.distributions(features, masks)
        if self.keep_distributions:
            self.kept = (states, masks, internals)
        actions = {name: dist.sample(deterministic) for name, dist in dists.items()}
        if not deterministic:
            actions = self.explore(actions, masks, exploration)
        value = None
        if self._baseline_paths:  # advance the baseline's internals even without a value
            value_features, more = self._step(
                self.baseline, self._baseline_paths, states, internals
            )
            following.update(more)
            value = self._values(value_features)
        if not with_value:
            return actions, None, None, following
        log_prob = sum(dist.log_prob(actions[name]) for name, dist in dists.items())
        if value is None:
            value = self.value_from(features, states)
        return actions, log_prob, value, following  # type: ignore[return-value]

    @staticmethod
    def _step(
        network: nn.Module,
        paths: list[str],
        states: Tensors,
        internals: Tensors,
        t: int | None = None,
    ) -> tuple[torch.Tensor, Tensors]:
        """One step of ``network`` with its internals (``paths``), or a plain forward pass."""
        if not paths:
            return network(states), {}
        return network.step(states, {path: internals[path] for path in paths}, t)

    def _rerun(
        self,
        network: nn.Module,
        paths: list[str],
        states: Tensors,
        internals: Tensors,
        starts: torch.Tensor,
    ) -> torch.Tensor:
        """Features ``(T, K, F)`` of ``network`` re-run over ``(T, K, ...)`` states."""
        internals = {path: internals[path] for path in paths}
        features = []
        for t in range(starts.shape[0]):
            keep = (~starts[t]).float()
            internals = {
                path: x * keep.view(-1, *([1] * (x.dim() - 1))) for path, x in internals.items()
            }
            step, internals = network.step({name: x[t] for name, x in states.items()}, internals, t)
            features.append(step)
        return torch.stack(features)

    def sequence_features(
        self, states: Tensors, internals: Tensors, starts: torch.Tensor
    ) -> torch.Tensor:
        """Re-run the recurrent network over ``(T, K, ...)`` states; features ``(T, K, F)``.

        A feed-forward policy network (with a recurrent baseline) runs on all rows at once.

        Args:
            states: Normalized states ``{name: (T, K, *shape)}``.
            internals: Internals before step 0, ``{path: (K, *internal_shape)}``.
            starts: ``(T, K)`` bool, True where an episode starts (internals reset to zero).
        """
        if not self._policy_paths:
            steps, slots = starts.shape
            flat = {name: x.flatten(0, 1) for name, x in states.items()}
            return self.network(flat).view(steps, slots, -1)
        return self._rerun(self.network, self._policy_paths, states, internals, starts)

    def sequence_values(
        self, states: Tensors, internals: Tensors, starts: torch.Tensor
    ) -> torch.Tensor | None:
        """Values ``(T, K)`` of a recurrent baseline re-run as ``sequence_features`` does."""
        if not self._baseline_paths:
            return None
        features = self._rerun(self.baseline, self._baseline_paths, states, internals, starts)
        return self._values(features)

    def evaluate_features(
        self,
        features: torch.Tensor,
        states: Tensors,
        actions: Tensors,
        masks: Tensors,
        value: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``evaluate`` from precomputed policy features ``(B, F)`` (and values, if given)."""
        dists = self.distributions(features, masks)
        log_prob = sum(dist.log_prob(actions[name]) for name, dist in dists.items())
        entropy = sum(dist.entropy() for dist in dists.values())
        if value is None:
            value = self.value_from(features, states)
        return log_prob, entropy, value  # type: ignore[return-value]

    def evaluate(
        self, states: Tensors, actions: Tensors, masks: Tensors
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-prob, entropy and value ``(B,)`` each, for stored normalized states and actions."""
        features = self.network(states)
        dists = self.distributions(features, masks)
        log_prob = sum(dist.log_prob(actions[name]) for name, dist in dists.items())
        entropy = sum(dist.entropy() for dist in dists.values())
        return log_prob, entropy, self.value_from(features, states)  # type: ignore[return-value]

    def value(self, states: Tensors, internals: Tensors | None = None) -> torch.Tensor:
        """State values ``(B,)`` for normalized states.

        A recurrent baseline steps from ``internals`` (``{path: (B, ...)}``; None: zeros).
        """
        if self._baseline_paths:
            if internals is None:
                size = next(iter(states.values())).shape[0]
                device = self.value_head.weight.device
                internals = {
                    path: torch.zeros((size, *self.internal_shapes[path]), device=device)
                    for path in self._baseline_paths
                }
            features, _ = self._step(self.baseline, self._baseline_paths, states, internals)
            return self._values(features)
        return self._values((self.baseline or self.network)(states))

    def to_env(self, actions: Tensors) -> Tensors:
        """Map raw sampled actions to what the environment receives (bounded ones rescaled)."""
        return {name: self.heads[name].to_env(a) for name, a in actions.items()}

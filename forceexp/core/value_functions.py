"""Action-value functions and actors of the replay-based agents, around built network bodies.

Bodies (``nn.Module`` with ``output_size``, taking a dict of state tensors) are built by the
agent from the same network specs PPO uses; these classes add the heads:

- ``QFunction``: one Q value per value of every int action (optionally dueling), for DQN.
- ``Critic``: Q(s, a) for float actions; the (unit-scaled) action is one more named input of
  its network, so layer lists can ``retrieve`` it like any state.
- ``DeterministicActor`` (DDPG, TD3) and ``GaussianActor`` (SAC, tanh-squashed).
- ``ActionScaling``: named bounded float actions <-> one flat vector in ``[-1, 1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from forceexp.errors import ConfigError
from forceexp.specs import Specs, TensorSpec

Tensors = dict[str, torch.Tensor]
#: Name of the action input of critic networks (unless a state already uses it).
CRITIC_ACTION = "action"
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC's usual clamp of the state-dependent log-std


def body_features(
    network: nn.Module, states: Tensors, internals: Tensors | None
) -> tuple[torch.Tensor, Tensors]:
    """Features ``(B, F)`` of a body and its next internals (empty for feed-forward bodies).

    A recurrent body steps from ``internals`` (``{path: (B, *shape)}``; None or empty: from
    zeros, an episode's first step, and no next internals).
    """
    if internals:
        return network.step(states, internals)
    return network(states), {}


def internal_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """``{layer path: shape}`` of the recurrent internals of ``module.network`` (empty: none)."""
    return getattr(module.network, "internal_shapes", {})


def masked_values(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Q values ``(B, *shape, n)`` with masked-out values (``mask`` False) set to -inf."""
    return q if mask is None else q.masked_fill(~mask, -math.inf)


def num_values(spec: TensorSpec) -> int:
    """Q values per component of an int action (``num_values``) or a bool one (2: False, True)."""
    return 2 if spec.type == "bool" else int(spec.num_values)


class QFunction(nn.Module):
    """Q values of int and bool actions: a shared body, a linear head per action, optional dueling.

    Dueling (Wang et al. 2016): ``Q = V(s) + A(s, a) - mean_a A(s, a)`` per action component.

    Args:
        network: Body over the states (``output_size`` features).
        actions: Action specs; every action must be ``int`` with ``num_values`` or ``bool``
            (its Q values are those of False and True, index 0 and 1).
        dueling: Use separate value and advantage streams.
    """

    def __init__(self, network: nn.Module, actions: Specs, dueling: bool = False) -> None:
        super().__init__()
        for name, spec in actions.items:
            if spec.type not in ("int", "bool"):
                raise ConfigError(
                    f"actions.{name}: Q-learning needs int (num_values) or bool actions; "
                    f"{name!r} is {spec.type} (use sac, td3 or dpg for float actions)"
                )
        self.network, self.dueling = network, dueling
        self.shapes = {name: (*spec.shape, num_values(spec)) for name, spec in actions.items}
        width = network.output_size
        self.heads = nn.ModuleDict(
            {name: nn.Linear(width, math.prod(shape)) for name, shape in self.shapes.items()}
        )
        self.values = nn.ModuleDict(
            {
                name: nn.Linear(width, math.prod(shape[:-1]))
                for name, shape in self.shapes.items()
                if dueling
            }
        )

    @property
    def internal_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{layer path: shape}`` of the body's recurrent internals (empty: feed-forward)."""
        return internal_shapes(self)

    def step(self, states: Tensors, internals: Tensors) -> tuple[Tensors, Tensors]:
        """Q values from a recurrent body's ``{path: (B, *shape)}`` internals; next internals."""
        features, following = body_features(self.network, states, internals)
        return self._values(features), following

    def forward(self, states: Tensors, internals: Tensors | None = None) -> Tensors:
        """Q values ``{action: (B, *shape, num_values)}`` for states ``{name: (B, *shape)}``.

        A recurrent body steps from ``internals`` (None: from zeros, an episode's first step).
        """
        return self.step(states, internals)[0]

    def _values(self, features: torch.Tensor) -> Tensors:
        """The heads (and dueling streams) on body features ``(B, F)``."""
        out = {}
        for name, head in self.heads.items():
            q = head(features).view(-1, *self.shapes[name])
            if self.dueling:
                value = self.values[name](features).view(*q.shape[:-1], 1)
                q = value + q - q.mean(-1, keepdim=True)
            out[name] = q
        return out


class ActionScaling:
    """Named bounded float actions as one flat vector in ``[-1, 1]`` and back.

    Args:
        actions: Action specs; each must be ``float`` with ``min_value`` and ``max_value``.
        agent: Agent name for error messages.
    """

    def __init__(self, actions: Specs, agent: str) -> None:
        for name, spec in actions.items:
            if spec.type != "float" or not spec.is_bounded:
                raise ConfigError(
                    f"actions.{name}: {agent} needs bounded float actions (min_value and "
                    f"max_value); got {spec.to_dict()}"
                )
        self.names = actions.names()
        self.shapes = [spec.shape for spec in actions.values()]
        self.sizes = [spec.size for spec in actions.values()]
        self.low = np.concatenate([_flat_bound(s.min_value, s) for s in actions.values()])
        self.high = np.concatenate([_flat_bound(s.max_value, s) for s in actions.values()])
        self.size = int(sum(self.sizes))
        self._range = self.high - self.low
        ends = np.cumsum(self.sizes).tolist()
        self._columns = [slice(end - size, end) for end, size in zip(ends, self.sizes, strict=True)]

    def to_env(self, unit: np.ndarray) -> dict[str, np.ndarray]:
        """Unit-interval actions ``(B, A)`` to named env actions ``{name: (B, *shape)}``.

        Called on every act: ufuncs directly (``np.clip``/``np.split`` made it 16 instead of 6 us).
        """
        clipped = np.minimum(np.maximum(unit, -1.0), 1.0)
        scaled = (self.low + (clipped + 1.0) * 0.5 * self._range).astype(np.float32, copy=False)
        return {
            name: scaled[:, columns].reshape(-1, *shape)
            for name, columns, shape in zip(self.names, self._columns, self.shapes, strict=True)
        }

    def to_unit(self, actions: Tensors) -> torch.Tensor:
        """Named env actions ``{name: (B, *shape)}`` (tensors) to unit actions ``(B, A)``."""
        flat = torch.cat(
            [actions[name].reshape(actions[name].shape[0], -1) for name in self.names], 1
        )
        low = torch.as_tensor(self.low, device=flat.device)
        high = torch.as_tensor(self.high, device=flat.device)
        return (2.0 * (flat - low) / (high - low) - 1.0).clamp(-1.0, 1.0)


def _flat_bound(bound: object, spec: TensorSpec) -> np.ndarray:
    return np.broadcast_to(np.asarray(bound, dtype=np.float32), spec.shape).reshape(-1)


def critic_specs(states: Specs, action_size: int) -> Specs:
    """The states plus the unit-scaled action vector: what a critic network is built over."""
    if CRITIC_ACTION in states:
        raise ConfigError(
            f"states.{CRITIC_ACTION}: this name is reserved for the critic's action input; "
            "rename the state"
        )
    action = TensorSpec("float", (action_size,), min_value=-1.0, max_value=1.0)
    return Specs((*states.items, (CRITIC_ACTION, action)))


class Critic(nn.Module):
    """Q(s, a) for float actions: a body over ``critic_specs`` and a linear output.

    Args:
        network: Body built over ``critic_specs(states, action_size)``.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.output = nn.Linear(network.output_size, 1)

    def forward(self, states: Tensors, unit_actions: torch.Tensor) -> torch.Tensor:
        """Q values ``(B,)`` for states and unit-scaled actions ``(B, A)``."""
        return self.output(self.network({**states, CRITIC_ACTION: unit_actions})).squeeze(-1)


class DeterministicActor(nn.Module):
    """A deterministic policy: body, linear layer, tanh -> unit actions ``(B, A)`` (DDPG, TD3)."""

    def __init__(self, network: nn.Module, action_size: int) -> None:
        super().__init__()
        self.network = network
        self.output = nn.Linear(network.output_size, action_size)

    def act(
        self,
        states: Tensors,
        internals: Tensors | None,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Tensors]:
        """Unit actions ``(B, A)`` and the body's next internals.

        The policy is deterministic (``deterministic`` and ``generator`` are unused): the agent
        adds exploration noise.
        """
        features, following = body_features(self.network, states, internals)
        return torch.tanh(self.output(features)), following

    def forward(self, states: Tensors, internals: Tensors | None = None) -> torch.Tensor:
        """Unit actions ``(B, A)`` in ``(-1, 1)`` (a recurrent body steps from ``internals``)."""
        return self.act(states, internals)[0]


class GaussianActor(nn.Module):
    """SAC's policy: a Gaussian with state-dependent log-std, squashed by tanh into ``(-1, 1)``."""

    def __init__(self, network: nn.Module, action_size: int) -> None:
        super().__init__()
        self.network = network
        self.mean = nn.Linear(network.output_size, action_size)
        self.log_std = nn.Linear(network.output_size, action_size)

    def forward(
        self,
        states: Tensors,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        internals: Tensors | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit actions ``(B, A)`` (reparameterised samples, or tanh of the mean) and log-probs.

        The log-prob ``(B,)`` includes the tanh change of variables,
        ``log N(u) - sum log(1 - tanh(u)^2)``, computed stably as
        ``2 (log 2 - u - softplus(-2u))``. ``generator`` draws the noise (on the states' device).
        A recurrent body steps from ``internals`` (see ``act``).
        """
        features, _ = body_features(self.network, states, internals)
        return self._sample(features, deterministic, generator)

    def act(
        self,
        states: Tensors,
        internals: Tensors | None,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Tensors]:
        """Unit actions ``(B, A)`` (a sample, or tanh of the mean) and the next internals."""
        features, following = body_features(self.network, states, internals)
        return self._sample(features, deterministic, generator)[0], following

    def _sample(
        self, features: torch.Tensor, deterministic: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit actions and log-probs ``(B,)`` from body features ``(B, F)``."""
        mean = self.mean(features)
        log_std = self.log_std(features).clamp(LOG_STD_MIN, LOG_STD_MAX)
        if deterministic:
            return torch.tanh(mean), torch.zeros(mean.shape[0], device=mean.device)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        raw = mean + noise * log_std.exp()
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        correction = 2.0 * (math.log(2.0) - raw - nn.functional.softplus(-2.0 * raw))
        return torch.tanh(raw), log_prob - correction.sum(-1)

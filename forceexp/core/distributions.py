"""Action heads and distributions: masked categorical, Gaussian (clip/squash), Beta, Bernoulli.

A head maps network features ``(B, F)`` to a distribution over one action component of shape
``(B, *shape)``; ``log_prob`` and ``entropy`` are summed over the component's shape to ``(B,)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from forceexp.core.init import orthogonal_
from forceexp.errors import ConfigError, message
from forceexp.specs import TensorSpec

MASKED_LOGIT = torch.finfo(torch.float32).min
Bounding = Literal["clip", "squash", "beta"]
BOUNDINGS = ("clip", "squash", "beta")
_BETA_EPS = 1e-6
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _sum_shape(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x.flatten(1).sum(1) if ndim else x


class Categorical:
    """Categorical over the last axis of ``logits`` ``(B, *shape, n)``.

    Masked entries get probability exactly zero.
    """

    def __init__(
        self, logits: torch.Tensor, ndim: int, temperature: torch.Tensor | None = None
    ) -> None:
        self.logits = torch.log_softmax(logits, dim=-1)
        self.ndim = ndim
        self.temperature = temperature  # what the logits were divided by (None: 1)

    def sample(self, deterministic: bool) -> torch.Tensor:
        """Argmax when deterministic, else a Gumbel-max sample; ``(B, *shape)`` int64."""
        if deterministic:
            return self.logits.argmax(-1)
        noise = torch.rand_like(self.logits).clamp_(min=1e-20)
        return (self.logits - torch.log(-torch.log(noise))).argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of ``actions`` ``(B, *shape)``, summed to ``(B,)``."""
        picked = self.logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return _sum_shape(picked, self.ndim)

    def entropy(self) -> torch.Tensor:
        """Entropy summed to ``(B,)`` (masked entries contribute 0)."""
        probs = self.logits.exp()
        return _sum_shape(-(probs * self.logits).sum(-1), self.ndim)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Summary-ready parameters: action probabilities (and the temperature, if any)."""
        if self.temperature is None:
            return {"probabilities": self.logits.exp()}
        return {"probabilities": self.logits.exp(), "temperature": self.temperature}


class Gaussian:
    """Diagonal Gaussian with mean ``(B, *shape)`` and log-std broadcast to it."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, ndim: int) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)
        self.ndim = ndim

    def sample(self, deterministic: bool) -> torch.Tensor:
        """The mean when deterministic, else a reparameterised sample."""
        if deterministic:
            return self.mean
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density summed to ``(B,)``."""
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return _sum_shape(-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI, self.ndim)

    def entropy(self) -> torch.Tensor:
        """Entropy summed to ``(B,)``."""
        return _sum_shape(self.log_std + 0.5 + _LOG_SQRT_2PI, self.ndim)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Summary-ready parameters: means and standard deviations."""
        return {"mean": self.mean, "stddev": self.log_std.exp()}


class StateDependentGaussian:
    """gSDE's Gaussian: noise ``latent @ M`` from a held exploration matrix ``M`` per row.

    Generalized state-dependent exploration (Raffin et al., 2021; SB3 ``use_sde``): an action
    is ``mean + latent @ M`` with ``M ~ N(0, std^2)`` of shape ``(F, A)`` drawn every few
    steps, so the noise is a deterministic function of the state between draws. Log-prob and
    entropy are those of ``N(mean, sqrt(latent^2 @ std^2 + eps))``, the distribution of the
    action over draws of ``M``.

    Args:
        mean: ``(B, A)`` means.
        std: ``(B, A)`` standard deviations ``sqrt(latent^2 @ std^2 + eps)``.
        latent: ``(B, F)`` policy features (detached: the noise does not train them).
        matrices: ``(B, F, A)`` each row's exploration matrix.
        shape: The action component's shape (``A`` values in all).
    """

    def __init__(
        self,
        mean: torch.Tensor,
        std: torch.Tensor,
        latent: torch.Tensor,
        matrices: torch.Tensor,
        shape: tuple[int, ...],
    ) -> None:
        self.mean, self.std, self.latent, self.matrices = mean, std, latent, matrices
        self.shape, self.ndim = shape, len(shape)

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, *self.shape)

    def sample(self, deterministic: bool) -> torch.Tensor:
        """The mean when deterministic, else ``mean + latent @ M`` (no fresh noise)."""
        if deterministic:
            return self._view(self.mean)
        noise = torch.bmm(self.latent.unsqueeze(1), self.matrices).squeeze(1)
        return self._view(self.mean + noise)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``N(mean, std)`` summed to ``(B,)``."""
        z = (actions.reshape(self.mean.shape) - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.std.log() - _LOG_SQRT_2PI).sum(1)

    def entropy(self) -> torch.Tensor:
        """Entropy of ``N(mean, std)`` summed to ``(B,)``."""
        return (self.std.log() + 0.5 + _LOG_SQRT_2PI).sum(1)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Summary-ready parameters: means and standard deviations."""
        return {"mean": self._view(self.mean), "stddev": self._view(self.std)}


class Bernoulli:
    """Independent Bernoulli variables with ``logits`` ``(B, *shape)``."""

    def __init__(self, logits: torch.Tensor, ndim: int) -> None:
        self.logits = logits
        self.ndim = ndim

    def sample(self, deterministic: bool) -> torch.Tensor:
        """``logits > 0`` when deterministic, else a sample; bool."""
        if deterministic:
            return self.logits > 0
        return torch.rand_like(self.logits) < torch.sigmoid(self.logits)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability summed to ``(B,)``."""
        target = actions.to(self.logits.dtype)
        logp = -nn.functional.binary_cross_entropy_with_logits(
            self.logits, target, reduction="none"
        )
        return _sum_shape(logp, self.ndim)

    def entropy(self) -> torch.Tensor:
        """Entropy summed to ``(B,)``."""
        p = torch.sigmoid(self.logits)
        ent = nn.functional.binary_cross_entropy_with_logits(self.logits, p, reduction="none")
        return _sum_shape(ent, self.ndim)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Summary-ready parameters: probability of True."""
        return {"probability": torch.sigmoid(self.logits)}


class Beta:
    """Independent Beta variables on ``(0, 1)``; concentrations ``alpha``, ``beta`` ``(B, *shape)``.

    Samples live on the unit interval; the head rescales them to ``[min, max]`` for the
    environment. ``log_prob``/``entropy`` are those of the unit-interval variable (the constant
    ``log(max - min)`` of the rescaling cancels in PPO's ratio and gradient).
    """

    def __init__(self, alpha: torch.Tensor, beta: torch.Tensor, ndim: int) -> None:
        self.alpha, self.beta = alpha, beta
        self.ndim = ndim

    def sample(self, deterministic: bool) -> torch.Tensor:
        """The mean when deterministic, else a sample; clamped inside ``(0, 1)``."""
        if deterministic:
            x = self.alpha / (self.alpha + self.beta)
        else:
            x = torch.distributions.Beta(self.alpha, self.beta, validate_args=False).sample()
        return x.clamp(_BETA_EPS, 1.0 - _BETA_EPS)

    def _log_norm(self) -> torch.Tensor:
        a, b = self.alpha, self.beta
        return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of unit-interval ``actions``, summed to ``(B,)``."""
        x = actions.clamp(_BETA_EPS, 1.0 - _BETA_EPS)
        logp = (self.alpha - 1) * torch.log(x) + (self.beta - 1) * torch.log1p(-x)
        return _sum_shape(logp - self._log_norm(), self.ndim)

    def entropy(self) -> torch.Tensor:
        """Entropy summed to ``(B,)``."""
        a, b = self.alpha, self.beta
        ent = (
            self._log_norm()
            - (a - 1) * torch.digamma(a)
            - (b - 1) * torch.digamma(b)
            + (a + b - 2) * torch.digamma(a + b)
        )
        return _sum_shape(ent, self.ndim)

    def parameters(self) -> dict[str, torch.Tensor]:
        """Summary-ready parameters: the two concentrations."""
        return {"alpha": self.alpha, "beta": self.beta}


Distribution = Categorical | Gaussian | StateDependentGaussian | Beta | Bernoulli


#: categorical temperature modes: a learned global temperature, or one predicted per state
TEMPERATURES = ("global", "predicted")
_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus of this is 1: temperatures start at ~1


class CategoricalHead(nn.Module):
    """Logits for an int action with ``num_values``; masks (``True`` = allowed) zero out values.

    With ``temperature`` the logits are divided by a positive temperature (``softplus + 0.01``,
    starting near 1) per action component: a learned parameter (``'global'``) or a linear
    function of the features (``'predicted'``), Tensorforce's ``temperature_mode``. With
    ``skip_linear`` the features are the logits themselves (Tensorforce's ``skip_linear``; the
    caller checked there are ``size * num_values`` of them).
    """

    def __init__(
        self,
        input_size: int,
        spec: TensorSpec,
        temperature: str | None = None,
        skip_linear: bool = False,
    ) -> None:
        super().__init__()
        self.shape, self.num_values = spec.shape, int(spec.num_values)  # type: ignore[arg-type]
        size = spec.size * self.num_values
        self.linear = (
            nn.Identity() if skip_linear else orthogonal_(nn.Linear(input_size, size), 0.01)
        )
        self.temperature_mode = temperature
        if temperature == "global":
            self.temperature = nn.Parameter(torch.full((*spec.shape, 1), _SOFTPLUS_ONE))
        elif temperature == "predicted":
            self.temperature = orthogonal_(nn.Linear(input_size, spec.size), 0.01)
            nn.init.constant_(self.temperature.bias, _SOFTPLUS_ONE)
        elif temperature is not None:
            raise ConfigError(
                message("temperature", temperature, f"None or one of {', '.join(TEMPERATURES)}")
            )

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Categorical:
        """Distribution for ``features`` ``(B, F)`` under ``mask`` ``(B, *shape, n)``."""
        logits = self.linear(features).view(-1, *self.shape, self.num_values)
        temperature = None
        if self.temperature_mode == "global":
            temperature = nn.functional.softplus(self.temperature) + 0.01
        elif self.temperature_mode == "predicted":
            raw = self.temperature(features).view(-1, *self.shape, 1)
            temperature = nn.functional.softplus(raw) + 0.01
        if temperature is not None:
            logits = logits / temperature
        if mask is not None:
            logits = logits.masked_fill(~mask, MASKED_LOGIT)
        return Categorical(logits, len(self.shape), temperature)

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the environment receives them (unchanged)."""
        return actions

    def from_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions as raw (stored) actions (unchanged)."""
        return actions


class GaussianHead(nn.Module):
    """Mean and state-independent log-std for a float action.

    Bounded actions are either clipped to ``[min, max]`` when sent to the environment
    (``'clip'``, the log-prob is of the unclipped sample) or squashed through ``tanh`` and
    rescaled (``'squash'``; the Jacobian cancels in PPO's ratio).
    """

    def __init__(
        self,
        input_size: int,
        spec: TensorSpec,
        bounding: Bounding = "clip",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        if bounding not in ("clip", "squash"):
            raise ConfigError(f"bounded_actions: {bounding!r} is invalid; expected clip, squash")
        self.shape = spec.shape
        self.bounding = bounding if spec.is_bounded else None
        self.linear = orthogonal_(nn.Linear(input_size, spec.size), 0.01)
        self.log_std = nn.Parameter(torch.full(spec.shape, float(log_std_init)))
        low = torch.as_tensor(spec.min_value if spec.is_bounded else 0.0, dtype=torch.float32)
        high = torch.as_tensor(spec.max_value if spec.is_bounded else 0.0, dtype=torch.float32)
        self.register_buffer("low", low.expand(spec.shape).clone(), persistent=False)
        self.register_buffer("high", high.expand(spec.shape).clone(), persistent=False)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Gaussian:
        """Distribution for ``features`` ``(B, F)`` (masks do not apply to float actions)."""
        mean = self.linear(features).view(-1, *self.shape)
        return Gaussian(mean, self.log_std, len(self.shape))

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Clip or squash a raw sample into the action bounds."""
        if self.bounding == "clip":
            return torch.maximum(torch.minimum(actions, self.high), self.low)
        if self.bounding == "squash":
            return self.low + (torch.tanh(actions) + 1.0) * 0.5 * (self.high - self.low)
        return actions

    def from_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions as raw samples (the inverse of the squash; clip: unchanged)."""
        if self.bounding == "squash":
            unit = (actions - self.low) / (self.high - self.low) * 2.0 - 1.0
            return torch.atanh(unit.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        return actions


class StateDependentHead(GaussianHead):
    """A Gaussian head with gSDE exploration (``StateDependentGaussian``), SB3's ``use_sde``.

    Each parallel slot holds an exploration matrix ``(F, A)``; ``resample(slots)`` draws new
    ones (the agent does so at every rollout start and every ``sample_freq`` steps), and
    ``rows`` says which slot each row of the next forward pass belongs to (None: slot 0).

    Args:
        input_size: Policy features ``F``.
        spec: The float action's spec.
        bounding: ``'clip'`` or ``'squash'`` for bounded actions (as ``GaussianHead``).
        slots: Parallel slots (one exploration matrix each).
        log_std_init: Initial log of the noise weights' std (SB3 ``log_std_init``; 0, as
            SB3's PPO default).
        full_std: One std per (feature, action) pair; else one per feature.
        epsilon: Added to the action variance.
    """

    def __init__(
        self,
        input_size: int,
        spec: TensorSpec,
        bounding: Bounding = "clip",
        slots: int = 1,
        log_std_init: float = 0.0,
        full_std: bool = True,
        epsilon: float = 1e-6,
    ) -> None:
        super().__init__(input_size, spec, bounding)
        self.epsilon = epsilon
        columns = spec.size if full_std else 1
        self.log_std = nn.Parameter(torch.full((input_size, columns), float(log_std_init)))
        self.register_buffer("matrices", torch.zeros(slots, input_size, spec.size))
        self.rows: torch.Tensor | None = None
        self.resample()

    def weights_std(self) -> torch.Tensor:
        """Std of the exploration matrices' entries ``(F, A)``."""
        return self.log_std.exp().expand(self.matrices.shape[1:])

    @torch.no_grad()
    def resample(self, slots: torch.Tensor | None = None) -> None:
        """Draw new exploration matrices for ``slots`` (None: every slot)."""
        index = slice(None) if slots is None else slots
        count = self.matrices.shape[0] if slots is None else len(slots)
        std = self.weights_std()
        self.matrices[index] = torch.randn(count, *std.shape, device=std.device) * std

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> StateDependentGaussian:
        """Distribution for ``features`` ``(B, F)`` with the matrices of ``rows``' slots."""
        mean = self.linear(features)
        latent = features.detach()
        std = torch.sqrt(latent.pow(2) @ self.weights_std().pow(2) + self.epsilon)
        rows = self.rows
        if rows is None or len(rows) != features.shape[0]:
            rows = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
        return StateDependentGaussian(mean, std, latent, self.matrices[rows], self.shape)


class BetaHead(nn.Module):
    """Beta distribution for a bounded float action: samples in ``(0, 1)`` rescaled to bounds.

    Concentrations are ``1 + softplus(linear(features))`` so the density is unimodal; the raw
    (stored) action is the unit-interval sample.
    """

    def __init__(self, input_size: int, spec: TensorSpec) -> None:
        super().__init__()
        if not spec.is_bounded:
            raise ConfigError("bounded_actions='beta' needs a float action with min/max values")
        self.shape = spec.shape
        self.linear = orthogonal_(nn.Linear(input_size, 2 * spec.size), 0.01)
        low = torch.as_tensor(spec.min_value, dtype=torch.float32)
        high = torch.as_tensor(spec.max_value, dtype=torch.float32)
        self.register_buffer("low", low.expand(spec.shape).clone(), persistent=False)
        self.register_buffer("high", high.expand(spec.shape).clone(), persistent=False)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Beta:
        """Distribution for ``features`` ``(B, F)`` (masks do not apply to float actions)."""
        params = nn.functional.softplus(self.linear(features)) + 1.0
        alpha, beta = params.view(-1, 2, *self.shape).unbind(1)
        return Beta(alpha, beta, len(self.shape))

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Rescale unit-interval samples to ``[min, max]``."""
        return self.low + actions * (self.high - self.low)

    def from_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions as unit-interval samples (kept inside the open interval)."""
        return ((actions - self.low) / (self.high - self.low)).clamp(1e-6, 1.0 - 1e-6)


class BernoulliHead(nn.Module):
    """Logits for a bool action."""

    def __init__(self, input_size: int, spec: TensorSpec) -> None:
        super().__init__()
        self.shape = spec.shape
        self.linear = orthogonal_(nn.Linear(input_size, spec.size), 0.01)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Bernoulli:
        """Distribution for ``features`` ``(B, F)``."""
        return Bernoulli(self.linear(features).view(-1, *self.shape), len(self.shape))

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the environment receives them (unchanged)."""
        return actions

    def from_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Environment actions as raw (stored) actions (unchanged)."""
        return actions


ActionHead = CategoricalHead | GaussianHead | StateDependentHead | BetaHead | BernoulliHead
SDE_BETA_HINT = "gSDE perturbs a Gaussian's mean; use bounded_actions='clip' or 'squash'"


def make_head(
    name: str,
    input_size: int,
    spec: TensorSpec,
    bounded_actions: Bounding = "clip",
    sde: dict[str, Any] | None = None,
    slots: int = 1,
    temperature: str | None = None,
    skip_linear: bool = False,
) -> ActionHead:
    """Choose the head for an action spec: int -> categorical, float -> Gaussian, bool -> Bernoulli.

    Bounded float actions use a Beta head when ``bounded_actions='beta'``; unbounded float actions
    always use a Gaussian. ``sde`` (``StateDependentHead`` options: ``log_std_init``,
    ``full_std``) gives float actions gSDE exploration, with one matrix per slot.
    ``temperature`` (``'global'``/``'predicted'``) and ``skip_linear`` (the features are the
    logits: ``input_size`` must be the action's ``size * num_values``) are for int actions.

    Raises:
        ConfigError: an int action without ``num_values``, an unknown ``bounded_actions``,
            ``sde`` with the Beta head, a temperature or ``skip_linear`` for a non-int action,
            or ``skip_linear`` with a temperature or the wrong number of features.
    """
    if bounded_actions not in BOUNDINGS:
        raise ConfigError(
            f"bounded_actions: {bounded_actions!r} is invalid; expected {', '.join(BOUNDINGS)}"
        )
    _check_int_options(name, spec, temperature=temperature, skip_linear=skip_linear or None)
    if spec.type == "int":
        if spec.num_values is None:
            raise ConfigError(f"actions.{name}: int actions need num_values (or num_actions)")
        if skip_linear:
            _check_logit_features(name, input_size, spec, temperature)
        return CategoricalHead(input_size, spec, temperature, skip_linear)
    if spec.type == "float":
        if bounded_actions == "beta" and spec.is_bounded:
            if sde is not None:
                raise ConfigError(
                    message("agent.sde", sde, "null with bounded_actions='beta'", SDE_BETA_HINT)
                )
            return BetaHead(input_size, spec)
        if sde is not None:
            bounding = "clip" if bounded_actions == "beta" else bounded_actions
            return StateDependentHead(input_size, spec, bounding, slots, **sde)
        return GaussianHead(
            input_size, spec, "clip" if bounded_actions == "beta" else bounded_actions
        )
    return BernoulliHead(input_size, spec)


def _check_int_options(name: str, spec: TensorSpec, **options: Any) -> None:
    """Raise ``ConfigError`` if an int-only head option (not None) is given for ``spec``."""
    for option, value in options.items():
        if value is not None and spec.type != "int":
            raise ConfigError(
                f"distributions.{name}.{option}: {value!r} applies to int actions only; "
                f"{name} is a {spec.type} action"
            )


def _check_logit_features(
    name: str, input_size: int, spec: TensorSpec, temperature: str | None
) -> None:
    """Raise ``ConfigError`` unless ``input_size`` features can be the logits of ``spec``."""
    if temperature is not None:
        raise ConfigError(
            message(f"distributions.{name}.temperature", temperature, "None with skip_linear")
        )
    logits = spec.size * int(spec.num_values)  # type: ignore[arg-type]
    if input_size != logits:
        raise ConfigError(
            message(
                f"distributions.{name}.skip_linear",
                True,
                f"a network output of {logits} features (shape {spec.shape} x {spec.num_values} "
                f"values) to use as logits, not {input_size}",
            )
        )

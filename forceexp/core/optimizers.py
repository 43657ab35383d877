"""Tensorforce's optimizers as update steps on a loss closure (torch, evolutionary, plus, wrappers).

An update step changes parameters given ``loss(rows)``, the loss over rows ``rows`` of the
update's data (None: all of them), and returns the change it made (one delta per parameter):
modifiers clip, repeat, subsample, line-search or revert the change of the step they wrap,
as Tensorforce's do. ``core/optimizer_specs.py`` builds them from Tensorforce's specs; the
on-policy agents run them on their autograd path (their default Adam keeps its fast path).
``Synchronization`` is Tensorforce's baseline "optimizer" that copies the policy instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from forceexp.core.targets import Polyak
from forceexp.errors import ConfigError, check_int, message

#: ``loss(rows)``: the scalar loss over rows ``rows`` (a 1-D index tensor) of the data, or all
Loss = Callable[[torch.Tensor | None], torch.Tensor]

#: Tensorforce's optimizer names (TensorFlow / Addons) and their torch counterparts
TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "adamw": torch.optim.AdamW,
    "gradient_descent": torch.optim.SGD,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


class UpdateStep:
    """One optimizer or modifier: ``step(loss, size)`` changes ``params`` and returns the change."""

    params: list[nn.Parameter]

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Change the parameters to lower ``loss`` over ``size`` rows; return the deltas."""
        raise NotImplementedError

    def children(self) -> tuple[UpdateStep, ...]:
        """The steps this one wraps."""
        return ()


class TorchStep(UpdateStep):
    """One step of a torch optimizer on the gradient of the loss over all given rows.

    Args:
        params: The parameters.
        name: A ``TORCH_OPTIMIZERS`` name.
        learning_rate: Step size; None follows the agent's ``learning_rate`` (schedule).
        gradient_norm_clipping: Clip the gradient to this global norm first (None: off).
        path: Where the spec came from, for errors.
        **options: Further keyword arguments of the torch optimizer (``betas``, ``eps``, ...).
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        name: str,
        learning_rate: float | None = None,
        gradient_norm_clipping: float | None = None,
        path: str = "agent.optimizer",
        **options: Any,
    ) -> None:
        self.params, self.scheduled = params, learning_rate is None
        self.max_norm = gradient_norm_clipping
        try:
            self.optimizer = TORCH_OPTIMIZERS[name](params, lr=learning_rate or 1e-3, **options)
        except TypeError as error:
            raise ConfigError(f"{path}: {name} options {sorted(options)}: {error}") from None

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Backpropagate ``loss(None)``, clip the gradient if asked, take the optimizer step."""
        before = [p.detach().clone() for p in self.params]
        self.optimizer.zero_grad(set_to_none=True)
        loss(None).backward()
        if self.max_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        return [p.detach() - b for p, b in zip(self.params, before, strict=True)]


class Evolutionary(UpdateStep):
    """Random search: ``num_samples`` Gaussian perturbations, each kept or negated.

    Each perturbation ``learning_rate * N(0, 1)`` of the current parameters counts with sign
    +1 if it lowers the loss, else -1; the parameters move by the mean of the signed
    perturbations (Tensorforce's ``evolutionary``). No gradients are computed.
    """

    def __init__(self, params: list[nn.Parameter], learning_rate: float, num_samples: int = 1):
        self.params, self.learning_rate, self.num_samples = params, learning_rate, num_samples

    @torch.no_grad()
    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Try the perturbations one at a time, then apply their signed mean."""
        base = [p.clone() for p in self.params]
        unperturbed = float(loss(None))
        deltas = [torch.zeros_like(p) for p in self.params]
        for _ in range(self.num_samples):
            perturbation = [self.learning_rate * torch.randn_like(p) for p in self.params]
            for p, b, d in zip(self.params, base, perturbation, strict=True):
                p.copy_(b + d)
            sign = 1.0 if float(loss(None)) < unperturbed else -1.0
            torch._foreach_add_(deltas, perturbation, alpha=sign / self.num_samples)
        for p, b, d in zip(self.params, base, deltas, strict=True):
            p.copy_(b + d)
        return deltas


class Plus(UpdateStep):
    """Two optimizers one after the other; the update is the sum of both (``plus``)."""

    def __init__(self, first: UpdateStep, second: UpdateStep) -> None:
        self.first, self.second, self.params = first, second, first.params

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """The first optimizer's step, then the second's from there."""
        return torch._foreach_add(self.first.step(loss, size), self.second.step(loss, size))

    def children(self) -> tuple[UpdateStep, ...]:
        """Both optimizers."""
        return (self.first, self.second)


class Modifier(UpdateStep):
    """A modifier of the update of ``inner``."""

    def __init__(self, inner: UpdateStep) -> None:
        self.inner, self.params = inner, inner.params

    def children(self) -> tuple[UpdateStep, ...]:
        """The wrapped step."""
        return (self.inner,)

    @torch.no_grad()
    def _shift(self, deltas: list[torch.Tensor], scale: float = 1.0) -> None:
        """Add ``scale * deltas`` to the parameters."""
        torch._foreach_add_([p.data for p in self.params], deltas, alpha=scale)


class ClippingStep(Modifier):
    """Clip the inner update: by global norm (Tensorforce's default), per-tensor norm or value."""

    def __init__(self, inner: UpdateStep, threshold: float, mode: str = "global_norm") -> None:
        super().__init__(inner)
        self.threshold, self.mode = threshold, mode

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """The inner step, then its update replaced by the clipped update."""
        deltas = self.inner.step(loss, size)
        if self.mode == "value":
            clipped = [d.clamp(-self.threshold, self.threshold) for d in deltas]
        else:
            groups = [deltas] if self.mode == "global_norm" else [[d] for d in deltas]
            clipped = []
            for group in groups:
                norm = float(torch.linalg.vector_norm(torch.stack([d.norm() for d in group])))
                scale = min(1.0, self.threshold / norm) if norm > 0 else 1.0
                clipped += [d * scale for d in group]
        self._shift(torch._foreach_sub(clipped, deltas))
        return clipped


class MultiStep(Modifier):
    """The inner step ``num_steps`` times; the update is their sum."""

    def __init__(self, inner: UpdateStep, num_steps: int) -> None:
        super().__init__(inner)
        self.num_steps = num_steps

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Repeat the inner step, summing its updates."""
        total = self.inner.step(loss, size)
        for _ in range(self.num_steps - 1):
            torch._foreach_add_(total, self.inner.step(loss, size))
        return total


class SubsamplingStep(Modifier):
    """The inner step on rows drawn uniformly with replacement.

    ``fraction``: an int is a number of rows, a float in (0, 1] a fraction of them (at least
    one); with as many rows as there are, the inner step sees all rows.
    """

    def __init__(self, inner: UpdateStep, fraction: int | float) -> None:
        super().__init__(inner)
        self.fraction = fraction

    def rows(self, size: int) -> int:
        """How many rows a step on ``size`` rows draws."""
        if isinstance(self.fraction, int):
            return self.fraction
        return max(1, int(self.fraction * size))

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Draw the rows, then the inner step on the loss over them."""
        count = self.rows(size)
        if count >= size:
            return self.inner.step(loss, size)
        device = self.params[0].device
        chosen = torch.randint(size, (count,), device=device)
        return self.inner.step(lambda rows: loss(chosen if rows is None else chosen[rows]), count)


class LinesearchStep(Modifier):
    """Backtracking line search along the inner update.

    From the full update, the step shrinks by ``backtracking_factor`` while that lowers the
    loss, ``max_iterations`` times at most; the last improving size is kept.
    """

    def __init__(
        self, inner: UpdateStep, max_iterations: int, backtracking_factor: float = 0.75
    ) -> None:
        super().__init__(inner)
        self.max_iterations, self.factor = max_iterations, backtracking_factor

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """The inner step, then shrink it while the loss keeps falling."""
        deltas = self.inner.step(loss, size)
        if all(not d.any() for d in deltas):
            return deltas
        with torch.no_grad():
            best, scale = float(loss(None)), 1.0
            for _ in range(self.max_iterations):
                self._shift(deltas, scale * (self.factor - 1.0))
                value = float(loss(None))
                if not value < best:
                    self._shift(deltas, scale * (1.0 - self.factor))
                    break
                best, scale = value, scale * self.factor
        return [d * scale for d in deltas]


class DoublecheckStep(Modifier):
    """Revert the inner update unless it lowered the loss."""

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """Loss before, the inner step, loss after; undo the step if not lower."""
        with torch.no_grad():
            before = float(loss(None))
        deltas = self.inner.step(loss, size)
        with torch.no_grad():
            if float(loss(None)) < before:
                return deltas
        self._shift(deltas, -1.0)
        return [torch.zeros_like(d) for d in deltas]


class UpdateOptimizer:
    """A built Tensorforce optimizer: the root step over fixed parameters, with saved state.

    ``param_groups`` are those of the torch optimizers without a learning rate of their own:
    the agent sets their rate from its ``learning_rate`` schedule.
    """

    def __init__(self, root: UpdateStep, description: str) -> None:
        self.root, self.description = root, description
        self.torch_steps = [s for s in _walk(root) if isinstance(s, TorchStep)]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """Param groups whose learning rate follows the agent's schedule."""
        return [g for s in self.torch_steps if s.scheduled for g in s.optimizer.param_groups]

    def step(self, loss: Loss, size: int) -> list[torch.Tensor]:
        """One update on ``size`` rows; returns the change of each parameter."""
        return self.root.step(loss, size)

    def state_dict(self) -> dict[str, Any]:
        """The torch optimizers' states, in build order."""
        return {"optimizers": [s.optimizer.state_dict() for s in self.torch_steps]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load what ``state_dict`` returned."""
        for step, item in zip(self.torch_steps, state["optimizers"], strict=True):
            step.optimizer.load_state_dict(item)


def _walk(step: UpdateStep) -> Iterator[UpdateStep]:
    yield step
    for child in step.children():
        yield from _walk(child)


def update_norm(deltas: list[torch.Tensor]) -> torch.Tensor:
    """Global norm of an update (Tensorforce's ``update-norm``)."""
    if not deltas:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([d.norm() for d in deltas]))


class Synchronization:
    """Tensorforce's ``synchronization`` baseline optimizer: the baseline follows the policy.

    Once every ``sync_frequency`` updates (the first included) the target parameters move
    ``update_weight`` of the way to the source's (1: a copy); they get no gradient steps.

    Args:
        source: The module copied (the policy network).
        target: The module moved (the baseline network), of the same parameter shapes.
        update_weight: Fraction in (0, 1] of the way to move.
        sync_frequency: Updates between synchronizations (None: every update).
        path: Where the spec came from, for errors.

    Raises:
        ConfigError: A weight or frequency out of range, or parameters that do not match.
    """

    def __init__(
        self,
        source: nn.Module,
        target: nn.Module,
        update_weight: float,
        sync_frequency: int | None = None,
        path: str = "agent.baseline_optimizer",
    ) -> None:
        number = isinstance(update_weight, int | float) and not isinstance(update_weight, bool)
        if not number or not 0.0 < update_weight <= 1.0:
            raise ConfigError(message(f"{path}.update_weight", update_weight, "a float in (0, 1]"))
        sync_frequency = 1 if sync_frequency is None else sync_frequency
        check_int(f"{path}.sync_frequency", sync_frequency, 1)
        shapes = [tuple(p.shape) for p in source.parameters()]
        target_shapes = [tuple(p.shape) for p in target.parameters()]
        if shapes != target_shapes:
            raise ConfigError(
                f"{path}: synchronization needs a baseline network of the policy network's "
                f"parameter shapes; policy {shapes}, baseline {target_shapes}"
            )
        self.polyak = Polyak([(source, target)])
        self.update_weight, self.sync_frequency = float(update_weight), sync_frequency
        self.countdown = 0  # updates until the next synchronization

    def __call__(self) -> bool:
        """Count one update; synchronize when due. Returns whether it synchronized."""
        self.countdown -= 1
        if self.countdown > 0:
            return False
        self.countdown = self.sync_frequency
        self.polyak(self.update_weight)
        return True

"""Natural-gradient pieces for TRPO: conjugate gradient, Fisher-vector products, KL of policies."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from forceexp.core.distributions import Bernoulli, Beta, Categorical, Distribution, Gaussian


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    max_steps: int,
    residual_tol: float = 1e-10,
) -> torch.Tensor:
    """Approximately solve ``A x = b`` for a symmetric positive-definite ``A`` given as ``matvec``.

    Args:
        matvec: ``v -> A v`` for flat vectors ``(P,)``.
        b: Right-hand side ``(P,)``.
        max_steps: Iterations at most (exact after ``P`` in exact arithmetic).
        residual_tol: Stop once the squared residual norm falls below this.

    Returns:
        ``x`` ``(P,)``.
    """
    x = torch.zeros_like(b)
    residual = b.clone()
    direction = b.clone()
    squared = residual.dot(residual)
    for _ in range(max_steps):
        if squared < residual_tol:
            break
        product = matvec(direction)
        alpha = squared / direction.dot(product)
        x += alpha * direction
        residual -= alpha * product
        following = residual.dot(residual)
        direction = residual + (following / squared) * direction
        squared = following
    return x


def flat_grad(
    output: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False
) -> torch.Tensor:
    """The gradient d output / d params as one flat vector ``(P,)`` (unused ones: zeros)."""
    grads = torch.autograd.grad(
        output, params, create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    pairs = zip(grads, params, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in pairs])


def fisher_vector_product(
    mean_kl: torch.Tensor, params: Sequence[torch.Tensor], damping: float
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> (H + damping I) v`` with ``H`` the Hessian of ``mean_kl`` at the current parameters.

    At the old policy the KL's Hessian is the Fisher information matrix; each product is one
    extra backward pass (Pearlmutter's trick), the matrix is never formed.
    """
    grad_kl = flat_grad(mean_kl, params, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(grad_kl.dot(v), params).detach() + damping * v

    return product


def kl_divergence(old: Distribution, new: Distribution) -> torch.Tensor:
    """``KL(old || new)`` per row ``(B,)``, summed over the action's dimensions.

    Raises:
        TypeError: For distributions other than categorical, Gaussian, Bernoulli and Beta.
    """
    if isinstance(old, Categorical) and isinstance(new, Categorical):
        p = old.logits.exp()  # masked entries: probability 0, no contribution
        terms = torch.where(p > 0, p * (old.logits - new.logits), 0.0).sum(-1)
    elif isinstance(old, Gaussian) and isinstance(new, Gaussian):
        variance_old, variance_new = (2 * old.log_std).exp(), (2 * new.log_std).exp()
        terms = (
            new.log_std
            - old.log_std
            + (variance_old + (old.mean - new.mean).pow(2)) / (2 * variance_new)
            - 0.5
        )
    elif isinstance(old, Bernoulli) and isinstance(new, Bernoulli):
        p = torch.sigmoid(old.logits)
        log_p, log_q = nn.functional.logsigmoid(old.logits), nn.functional.logsigmoid(new.logits)
        log_not_p = nn.functional.logsigmoid(-old.logits)
        log_not_q = nn.functional.logsigmoid(-new.logits)
        terms = p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)
    elif isinstance(old, Beta) and isinstance(new, Beta):
        terms = torch.distributions.kl_divergence(
            torch.distributions.Beta(old.alpha, old.beta, validate_args=False),
            torch.distributions.Beta(new.alpha, new.beta, validate_args=False),
        )
    else:
        raise TypeError(f"no KL for {type(old).__name__} and {type(new).__name__}")
    return terms.flatten(1).sum(1) if old.ndim else terms

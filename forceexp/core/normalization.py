"""Running mean/std of float states, kept as module buffers so checkpoints carry it."""

from __future__ import annotations

import torch
from torch import nn


class RunningNormalizer(nn.Module):
    """Normalizes inputs with running statistics (Welford/Chan parallel update).

    Args:
        shape: Feature shape (without batch axis).
        clip: Normalized values are clipped to ``[-clip, clip]``.
        epsilon: Added to the variance for numerical safety.
    """

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold a ``(B, *shape)`` batch into the statistics."""
        batch = batch.to(self.mean.dtype)
        n = batch.shape[0]
        batch_mean = batch.mean(0)
        batch_var = batch.var(0, unbiased=False)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Return ``clip((x - mean) / sqrt(var + eps))``."""
        out = (batch - self.mean) / torch.sqrt(self.var + self.epsilon)
        return out.clamp(-self.clip, self.clip)

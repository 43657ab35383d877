"""Running statistics of states and rewards, kept as module buffers so checkpoints carry them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from forceexp.errors import ConfigError, message

Reward = TypeVar("Reward", np.ndarray, torch.Tensor)


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


class RewardNormalizer(nn.Module):
    """Scales rewards for learning: by the running std of the discounted return, then clips.

    The learning reward is ``clip(scale * r / sqrt(var(R) + eps), low, high)``, where ``R``
    is each slot's running discounted return ``R <- discount * R + r`` (reset to 0 when an
    episode ends) and ``var(R)`` its running variance over all slots and steps, as
    Stable-Baselines3's ``VecNormalize(norm_reward=True)`` does. Without ``normalize`` it is
    ``clip(scale * r)``. The statistics see raw rewards; episode returns and evaluations stay
    on the raw scale. Buffers (``returns``, ``return_stats``) are saved with the agent.

    Args:
        slots: Parallel slots (one running return each), >= 1.
        discount: Discount of the running return (the agent's gamma), in [0, 1].
        normalize: Divide by the running return std.
        scale: Factor applied to every reward (after normalization), > 0.
        clip: Learning rewards are clipped to ``[-clip, clip]`` (a number) or to
            ``[lower, upper]`` (a pair, Tensorforce's clipping processing); None: no clipping.
        epsilon: Added to the variance for numerical safety.
    """

    def __init__(
        self,
        slots: int,
        discount: float,
        normalize: bool = True,
        scale: float = 1.0,
        clip: float | tuple[float, float] | None = None,
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__()
        self.discount, self.normalize, self.scale = discount, normalize, scale
        self.clip, self.epsilon = clip, epsilon
        bounds = (-clip, clip) if isinstance(clip, int | float) else clip
        self.low, self.high = (None, None) if bounds is None else map(float, bounds)
        self.register_buffer("returns", torch.zeros(slots, dtype=torch.float64))
        self.return_stats = RunningNormalizer(()).double()

    @torch.no_grad()
    def observe(self, slots: np.ndarray, rewards: np.ndarray, terminals: np.ndarray) -> None:
        """Fold one step of raw ``rewards`` ``(B,)`` of ``slots`` into the return statistics.

        ``terminals`` (0 running, 1 terminated, 2 truncated) end the slots' running returns.
        """
        if not self.normalize:
            return
        index = torch.as_tensor(slots)
        rewards = torch.as_tensor(rewards, dtype=torch.float64)
        returns = self.returns[index] * self.discount + rewards
        self.return_stats.update(returns)
        self.returns[index] = returns.masked_fill(torch.as_tensor(terminals > 0), 0.0)

    def std(self) -> float:
        """The divisor ``sqrt(var(R) + eps)`` (1.0 without ``normalize``)."""
        if not self.normalize:
            return 1.0
        return math.sqrt(float(self.return_stats.var) + self.epsilon)

    def forward(self, rewards: Reward) -> Reward:
        """Learning rewards from raw ``rewards`` (an array or tensor, any shape; same type)."""
        out = rewards * (self.scale / self.std())
        if self.clip is None:
            return out
        if isinstance(out, torch.Tensor):
            return out.clamp(self.low, self.high)
        return np.clip(out, self.low, self.high).astype(rewards.dtype, copy=False)


def reward_normalizer(
    normalize: bool,
    scale: float,
    clip: float | Sequence[float] | None,
    discount: float,
    slots: int,
) -> RewardNormalizer | None:
    """The agent's ``RewardNormalizer`` from its arguments; None when it would change nothing.

    Raises:
        ConfigError: ``normalize_rewards`` is not a bool, ``reward_scale`` not a number > 0 or
            ``reward_clip`` not None, a number > 0 or a pair ``lower <= upper``.
    """
    if not isinstance(normalize, bool):
        raise ConfigError(message("agent.normalize_rewards", normalize, "true or false"))
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ConfigError(message("agent.reward_scale", scale, "a number > 0"))
    number = isinstance(clip, int | float) and not isinstance(clip, bool)
    pair = isinstance(clip, Sequence) and len(clip) == 2
    if pair:
        clip = tuple(clip)
        pair = all(isinstance(x, int | float) and not isinstance(x, bool) for x in clip)
    if clip is not None and not ((number and clip > 0) or (pair and clip[0] <= clip[1])):
        raise ConfigError(
            message("agent.reward_clip", clip, "None, a number > 0 or [lower, upper]")
        )
    if not normalize and scale == 1 and clip is None:
        return None
    return RewardNormalizer(slots, discount, normalize, float(scale), clip)

"""Pure return and advantage estimators (GAE), shapes ``(T, N)``."""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminals: torch.Tensor,
    discount: float,
    gae_lambda: float,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized advantage estimation over per-slot trajectories.

    Args:
        rewards: ``(T, N)`` rewards.
        values: ``(T, N)`` value estimates of the acted states.
        next_values: ``(T, N)`` value of the state that followed each step: the next row's value
            inside a segment, the bootstrap value after the last stored row, and the final
            state's value where the step was truncated (terminal 2).
        terminals: ``(T, N)`` 0 running, 1 terminated (no bootstrap), 2 truncated (bootstrap).
        discount: Discount factor gamma in [0, 1].
        gae_lambda: GAE lambda in [0, 1].
        lengths: ``(N,)`` number of valid rows per slot (default: all ``T``); rows beyond
            a slot's length are ignored and get advantage 0.

    Returns:
        ``(T, N)`` advantages; returns are ``advantages + values``.
    """
    steps, slots = rewards.shape
    deltas, carry = _td_errors(rewards, values, next_values, terminals, discount, lengths)
    carry = carry * (discount * gae_lambda)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(slots, dtype=rewards.dtype, device=rewards.device)
    for t in range(steps - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages


def _td_errors(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminals: torch.Tensor,
    discount: float,
    lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-step TD errors ``(T, N)`` (0 beyond ``lengths``) and where the sum may continue.

    The second tensor is 1 where the next row belongs to the same episode and is stored.
    """
    steps, slots = rewards.shape
    if lengths is None:
        lengths = torch.full((slots,), steps, dtype=torch.long, device=rewards.device)
    rows = torch.arange(steps, device=rewards.device).unsqueeze(1)
    valid = rows < lengths.unsqueeze(0)
    bootstrap = (terminals != 1).to(rewards.dtype)
    deltas = (rewards + discount * next_values * bootstrap - values) * valid
    carry = ((terminals == 0) & (rows + 1 < lengths.unsqueeze(0))).to(rewards.dtype)
    return deltas, carry


def nstep_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminals: torch.Tensor,
    discount: float,
    horizon: int,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``horizon``-step advantages: ``sum_{k<n} gamma^k r_{t+k} + gamma^n V(s_{t+n}) - V(s_t)``.

    The sum stops early at an episode end (terminated: no bootstrap; truncated: the final
    state's value) or at the last stored row (``next_values`` there). Equal to the telescoped
    sum of ``horizon`` TD errors, i.e. GAE with lambda 1 cut after ``horizon`` steps. Arguments
    as ``gae``; returns are ``advantages + values``.
    """
    deltas, carry = _td_errors(rewards, values, next_values, terminals, discount, lengths)
    carry = carry * discount
    steps = rewards.shape[0]
    advantages = deltas.clone()
    weight = carry.clone()  # gamma^k while rows t .. t+k stay in one stored episode
    for k in range(1, min(horizon, steps)):
        advantages[: steps - k] += weight[: steps - k] * deltas[k:]
        weight[: steps - k - 1] *= carry[k : steps - 1]
        weight[steps - k - 1 :] = 0.0
    return advantages


def discounted_returns(
    rewards: torch.Tensor, terminals: torch.Tensor, discount: float
) -> torch.Tensor:
    """Monte-Carlo discounted returns of a single ``(T,)`` sequence split at non-zero terminals."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + discount * running * (terminals[t] == 0)
        returns[t] = running
    return returns

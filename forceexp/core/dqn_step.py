"""DQN's TD gradient step on the shared fast path (``forceexp.core.dense``), and its reference.

``FastDQNStep`` is the whole algorithm-specific part of a fast DQN update: the Huber TD loss
and its gradient w.r.t. the gathered Q-values, in NumPy; the Q-network's forward/backward, the
target network's inference, clipping and Adam are the shared ``DenseStack``/``FastOptimizer``.
``autograd_dqn_step`` is the same step in autograd, the reference ``tests/test_dense.py``
checks it against (and the path for networks the fast path does not take).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from forceexp.core.dense import DenseStack, FastOptimizer

_MASKED = np.float32(np.finfo(np.float32).min)  # the value of a masked-out next action


class TDRows(NamedTuple):
    """One minibatch of transitions as NumPy arrays."""

    states: np.ndarray  # (B, D) float32
    actions: np.ndarray  # (B,) int64
    rewards: np.ndarray  # (B,) float32
    terminals: np.ndarray  # (B,) float32, 1.0 where the episode ended (no bootstrap)
    next_states: np.ndarray  # (B, D) float32
    next_masks: np.ndarray | None  # (B, n) bool, allowed actions in the next state


class FastDQNStep:
    """One DQN step: Huber(Q(s, a), r + discount (1 - done) max_a' Q_target(s', a')), mean.

    Args:
        q_network: The online Q-network, a plain MLP ``parse_dense`` accepts (no output
            activation), ``(B, D) -> (B, n)``.
        target_network: The target Q-network, same shape (only run for inference).
        optimizer: The ``torch.optim.Adam`` over ``q_network``'s parameters.
        discount: The discount factor.
        max_grad_norm: Global gradient-norm clip (None: off).
        huber_delta: Huber loss threshold.
    """

    def __init__(
        self,
        q_network: nn.Module,
        target_network: nn.Module,
        optimizer: torch.optim.Adam,
        discount: float,
        max_grad_norm: float | None = 10.0,
        huber_delta: float = 1.0,
    ) -> None:
        self.fast = FastOptimizer(optimizer)
        self.online = DenseStack(q_network, self.fast)
        self.target = DenseStack(target_network)
        self.discount, self.max_grad_norm, self.delta = discount, max_grad_norm, huber_delta
        self._rows: dict[int, np.ndarray] = {}

    def step(self, rows: TDRows, lr: float | None = None) -> tuple[float, float, float]:
        """One gradient step on ``rows``; returns the loss and the gradient norm (raw, clipped)."""
        size = rows.states.shape[0]
        index = self._rows.get(size)
        if index is None:
            index = self._rows[size] = np.arange(size)
        q = self.online.forward(torch.from_numpy(rows.states)).numpy()
        q_next = self.target.forward(torch.from_numpy(rows.next_states), keep=False).numpy()
        if rows.next_masks is not None:
            q_next = np.where(rows.next_masks, q_next, _MASKED)
        target = rows.rewards + self.discount * (1.0 - rows.terminals) * q_next.max(1)
        td = q[index, rows.actions] - target
        small = np.abs(td) <= self.delta
        loss = np.where(small, 0.5 * td * td, self.delta * (np.abs(td) - 0.5 * self.delta))
        grad = self.online.grad_out().numpy()
        grad.fill(0.0)
        grad[index, rows.actions] = np.clip(td, -self.delta, self.delta) / size
        self.online.backward()
        norm, clipped = self.fast.clip_grad_norm(self.max_grad_norm)
        self.fast.step(lr)
        return float(loss.sum()) / size, norm, clipped


def autograd_dqn_step(
    q_network: nn.Module,
    target_network: nn.Module,
    optimizer: torch.optim.Optimizer,
    rows: TDRows,
    discount: float,
    max_grad_norm: float | None = 10.0,
    huber_delta: float = 1.0,
) -> tuple[float, float]:
    """``FastDQNStep.step`` in autograd; returns the loss and the raw gradient norm."""
    states, next_states = torch.from_numpy(rows.states), torch.from_numpy(rows.next_states)
    actions = torch.from_numpy(rows.actions)
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        q_next = target_network(next_states)
        if rows.next_masks is not None:
            q_next = q_next.masked_fill(~torch.from_numpy(rows.next_masks), float(_MASKED))
        not_done = 1.0 - torch.from_numpy(rows.terminals)
        target = torch.from_numpy(rows.rewards) + discount * not_done * q_next.max(1).values
    loss = nn.functional.huber_loss(q, target, delta=huber_delta)
    optimizer.zero_grad()
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
    optimizer.step()
    return float(loss.detach()), float(norm)

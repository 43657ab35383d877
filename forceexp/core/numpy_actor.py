"""NumpyActor: acting for plain-MLP actor-critics on the CPU through NumPy views of the weights.

For a small MLP, one torch op costs a few microseconds of dispatch while the arithmetic costs far
less; NumPy's per-op cost is several times lower, so a single-observation act runs in ~10 µs of
NumPy instead of ~35 µs of torch. The arrays are views of the torch parameters (shared memory),
so updates, ``load_state_dict`` and checkpoints need no synchronisation. Used only on CPU and only
for networks ``forceexp.core.fused.unsupported_reason`` accepts. The layers' products are
``core/dense.py``'s ``affine`` (shared with ``DenseStack.infer``): batches of more than
``TORCH_MATMUL_MIN_ROWS`` rows multiply through torch on one thread (NumPy's multi-threaded BLAS
loses there) while everything else stays in NumPy: at 1024 rows that made act + observe ~25%
faster than the all-torch path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from forceexp.core.dense import NumpyLinear, affine, numpy_linear
from forceexp.core.distributions import CategoricalHead
from forceexp.core.fused import uses_relu

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _stack(network: nn.Module) -> tuple[list[NumpyLinear], bool]:
    """Dense layers of an auto MLP and whether it uses relu (else tanh)."""
    return [numpy_linear(m) for m in network.mlp if isinstance(m, nn.Linear)], uses_relu(network)


def _forward(layers: list[NumpyLinear], x: np.ndarray, relu: bool) -> np.ndarray:
    for layer in layers:
        x = affine(x, layer)
        if relu:
            np.maximum(x, 0.0, out=x)
        else:
            np.tanh(x, out=x)
    return x


class NumpyActor:
    """Samples actions, log-probs and values of an ``ActorCritic`` with NumPy.

    Args:
        policy: A CPU ``ActorCritic`` accepted by ``forceexp.core.fused.unsupported_reason``.

    Sampling noise comes from torch's global generator, drawn exactly as the torch path draws
    it (``torch.rand``/``torch.randn`` of the same shape), so a seed means one run whether
    or not the fast path is on; the agent seeds it and checkpoints save it.
    """

    def __init__(self, policy: nn.Module) -> None:
        self.policy_layers, self.relu = _stack(policy.network)
        if policy.baseline is not None:
            self.value_layers, self.value_relu = _stack(policy.baseline)
        else:
            self.value_layers, self.value_relu = [], False
        self.name, head = next(iter(policy.heads.items()))
        self.head = numpy_linear(head.linear)
        self.value_head = numpy_linear(policy.value_head)
        self.shape = head.shape
        self.categorical = isinstance(head, CategoricalHead)
        if self.categorical:
            self.num_values = head.num_values
        else:
            self.log_std = head.log_std.detach().numpy()
            self.bounded = head.bounding is not None
        self.torch_head = head
        self._aranges: dict[int, np.ndarray] = {}

    def _arange(self, size: int) -> np.ndarray:
        """``np.arange(size)``, cached (read-only use)."""
        rows = self._aranges.get(size)
        if rows is None:
            rows = self._aranges[size] = np.arange(size)
        return rows

    def act(
        self, x: np.ndarray, mask: np.ndarray | None, deterministic: bool, with_value: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Raw actions ``(B, *shape)``, and log-prob and value ``(B,)`` when ``with_value``.

        Args:
            x: Normalized, concatenated float states ``(B, D)``.
            mask: Allowed values ``(B, *shape, num_values)`` of a categorical action, or None.
            deterministic: Most likely action instead of a sample.
            with_value: Also compute log-prob and value (stored acts).
        """
        features = _forward(self.policy_layers, x, self.relu)
        out = affine(features, self.head)
        size = x.shape[0]
        if self.categorical:
            logits = out.reshape(size, -1, self.num_values)
            if mask is not None:
                logits = np.where(mask.reshape(logits.shape), logits, -np.inf)
            if deterministic:
                actions = logits.argmax(-1)
            else:
                noise = torch.rand(logits.shape).clamp_(min=1e-20).numpy()
                actions = (logits - np.log(-np.log(noise))).argmax(-1)
            log_prob = None
            if with_value:  # ufunc reductions called directly: the methods add a Python layer
                z = logits - np.maximum.reduce(logits, axis=-1, keepdims=True)
                rows = z.reshape(-1, self.num_values)
                picked = rows[self._arange(len(rows)), actions.reshape(-1)].reshape(actions.shape)
                log_prob = np.add.reduce(picked - np.log(np.add.reduce(np.exp(z), axis=-1)), 1)
            actions = actions.reshape(size, *self.shape)
        else:
            mean = out
            std = np.exp(self.log_std.reshape(1, -1))
            if deterministic:
                actions = mean
            else:
                noise = torch.randn(mean.shape).numpy()
                actions = mean + std * noise
            log_prob = None
            if with_value:
                z = (actions - mean) / std
                log_prob = (-0.5 * z * z - self.log_std.reshape(1, -1)).sum(1)
                log_prob -= mean.shape[1] * _LOG_SQRT_2PI
            actions = actions.reshape(size, *self.shape)
        if not with_value:
            return actions, None, None
        if self.value_layers:
            features = _forward(self.value_layers, x, self.value_relu)
        value = affine(features, self.value_head)
        return actions, log_prob.astype(np.float32, copy=False), value[:, 0]

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions as the environment receives them (the head's own clip/squash, if bounded)."""
        if self.categorical or not self.bounded:
            return actions
        return self.torch_head.to_env(torch.from_numpy(actions)).numpy()

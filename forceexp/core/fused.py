"""Hand-derived PPO gradient steps for plain-MLP actor-critics on the CPU (the small-network path).

For the networks most PPO runs use (flat float states, a dense tanh/relu MLP policy, an MLP or
shared value function, one categorical or Gaussian action), autograd's per-op bookkeeping costs
several times the arithmetic on a CPU. ``FusedPPOStep`` computes the same loss, gradients, gradient
clipping and Adam step with a fixed, short sequence of operations: the dense layers run on the
shared ``forceexp.core.dense`` stacks and optimizer (matrix products into preallocated buffers,
one flat gradient buffer, the optimizer's fused Adam on its own state); only PPO's elementwise
loss and its gradient w.r.t. the network outputs live here, in NumPy on views of the same memory
(a NumPy op on a few hundred values costs ~1 µs, a torch op ~4 µs). ``tests/test_fused.py``
checks it against autograd; anything it does not cover falls back to the autograd path
(``unsupported_reason`` says why).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from forceexp import tags
from forceexp.core.dense import DenseStack, FastOptimizer
from forceexp.core.distributions import MASKED_LOGIT, CategoricalHead, GaussianHead
from forceexp.core.networks.auto import AutoNetwork

#: Per-step metrics, in the order both PPO gradient-step paths (here and autograd's) return.
STEP_METRICS = (
    tags.LOSS_POLICY,
    tags.LOSS_VALUE,
    tags.ENTROPY,
    tags.KL_DIVERGENCE,
    tags.CLIP_FRACTION,
    tags.UPDATE_NORM,
    tags.UPDATE_NORM_CLIPPED,
)
_ACTIVATIONS = (nn.Tanh, nn.ReLU)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_GAUSSIAN_ENTROPY = 0.5 + _LOG_SQRT_2PI  # per dimension, on top of log_std


class Rows(NamedTuple):
    """One minibatch as NumPy arrays: flat states and the stored rollout values of its rows."""

    states: np.ndarray  # (B, D) float32, concatenated
    actions: np.ndarray  # (B, K) int64 indices (categorical) or (B, A) float32 (Gaussian)
    masks: np.ndarray | None  # (B, K, n) bool (categorical only)
    log_prob: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    value: np.ndarray


def _mlp_reason(network: nn.Module | None, path: str) -> str | None:
    if network is None:
        return None
    if type(network) is not AutoNetwork:
        return f"{path} is {type(network).__name__}, not the auto MLP"
    if len(network.encoders):
        return f"{path} encodes image, sequence or int states"
    if network.lstm is not None:
        return f"{path} ends in an LSTM (rnn=)"
    modules = list(network.mlp)
    activations = modules[1::2]
    if not all(isinstance(m, _ACTIVATIONS) for m in activations):
        return f"{path} uses an activation other than tanh/relu"
    if len({type(m) for m in activations}) > 1:
        return f"{path} mixes activations"
    return None


def uses_relu(network: AutoNetwork) -> bool:
    """Whether an accepted auto MLP uses relu (else tanh; a depth-0 MLP counts as tanh)."""
    return len(network.mlp) > 1 and isinstance(network.mlp[1], nn.ReLU)


def unsupported_reason(policy: nn.Module) -> str | None:
    """Why ``policy`` (an ``ActorCritic``) cannot use the fast path, or None when it can."""
    device = next(policy.parameters()).device
    if device.type != "cpu":
        return f"the policy is on {device} (the fast path is for small networks on the CPU)"
    if policy.recurrent:
        return "the policy is recurrent"
    for reason in (
        _mlp_reason(policy.network, "network"),
        _mlp_reason(policy.baseline, "baseline"),
    ):
        if reason:
            return reason
    if len(policy.heads) != 1:
        return "more than one action"
    head = next(iter(policy.heads.values()))
    if type(head) not in (CategoricalHead, GaussianHead):  # gSDE heads: autograd only
        return f"the action head is {type(head).__name__}"
    if getattr(head, "temperature_mode", None) is not None:
        return "the categorical head has a temperature"
    if not isinstance(head.linear, nn.Linear):
        return "the categorical head skips its linear layer"
    if any(spec.type != "float" for _, spec in policy.state_specs.items):
        return "a state is not float"
    return None


def normalized(advantages: np.ndarray) -> np.ndarray:
    """Advantages shifted to mean 0 and scaled to (sample) std 1, as the autograd path does."""
    centered = advantages - advantages.sum() / advantages.shape[0]
    std = math.sqrt(float(np.vdot(centered, centered)) / (advantages.shape[0] - 1))
    return centered / np.float32(std + 1e-8)


class FusedPPOStep:
    """PPO's clipped-surrogate gradient step with explicit backward passes and a fused Adam.

    Args:
        policy: A CPU ``ActorCritic`` accepted by ``unsupported_reason``.
        optimizer: The agent's ``torch.optim.Adam`` (or A2C's ``RMSprop``) over
            ``policy.parameters()``; its state is used (and kept in its format), so checkpoints
            do not depend on the path.
        value_coef: Value loss weight.
        entropy_coef: Entropy bonus weight; an attribute the agent sets to the current value
            before each update when the weight is scheduled.
        value_clip: Clip value updates around the old value (None: off).
        max_grad_norm: Global gradient-norm clip (None: off).
        normalize_advantages: Normalize advantages per minibatch.
        l2_regularization: Weight of the L2 penalty ``l2 / 2 * sum(w ** 2)`` on the policy's
            weight matrices (``ActorCritic.weights()``), added before gradient clipping.
    """

    def __init__(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Adam | torch.optim.RMSprop,
        value_coef: float,
        entropy_coef: float,
        value_clip: float | None,
        max_grad_norm: float | None,
        normalize_advantages: bool,
        l2_regularization: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.l2_regularization, self.l2_weights = l2_regularization, policy.weights()
        self.value_coef, self.entropy_coef, self.value_clip = value_coef, entropy_coef, value_clip
        self.max_grad_norm, self.normalize_advantages = max_grad_norm, normalize_advantages
        self.fast = FastOptimizer(optimizer)
        self.head = next(iter(policy.heads.values()))
        self.categorical = isinstance(self.head, CategoricalHead)
        self.shared = policy.baseline is None
        mlp = policy.network.mlp
        if self.shared:  # trunk -> action head and value head (each a one-layer stack)
            self.trunk = DenseStack(mlp, self.fast) if len(mlp) else None
            self.policy = DenseStack(self.head.linear, self.fast)
            self.value = DenseStack(policy.value_head, self.fast)
        else:
            self.trunk = None
            self.policy = DenseStack([mlp, self.head.linear], self.fast)
            self.value = DenseStack([policy.baseline.mlp, policy.value_head], self.fast)
        if not self.categorical:
            self.log_std = self.head.log_std.detach().numpy().reshape(-1)
            self.log_std_grad = self.fast.grad(self.head.log_std).numpy().reshape(-1)
        self._first_logit: dict[int, np.ndarray] = {}  # per size: each component's first logit

    def _policy_terms(self, out: np.ndarray, rows: Rows) -> tuple[np.ndarray, float, tuple]:
        """Log-prob ``(B,)`` of the stored actions, mean entropy, and state for the gradient."""
        size = out.shape[0]
        if self.categorical:
            logits = out.reshape(size, -1, self.head.num_values)
            if rows.masks is not None:
                logits = np.where(rows.masks, logits, MASKED_LOGIT)
            shifted = logits - logits.max(-1, keepdims=True)
            probs = np.exp(shifted)
            total = probs.sum(-1, keepdims=True)
            probs /= total
            logp = shifted
            logp -= np.log(total)
            first_logit = self._first_logit.get(size)
            if first_logit is None:  # flat index of each (row, component)'s first logit
                first_logit = self._first_logit[size] = np.arange(0, out.size, self.head.num_values)
            picked = first_logit + rows.actions.reshape(-1)  # flat index per component
            log_prob = logp.reshape(-1)[picked]
            if logits.shape[1] > 1:
                log_prob = log_prob.reshape(size, -1).sum(1)
            if not self.entropy_coef:  # the entropy is only reported: its mean is enough
                return log_prob, -float(np.vdot(probs, logp)) / size, (probs, picked, None)
            component_entropy = (probs * logp).sum(-1, keepdims=True)  # negated, (B, K, 1)
            entropy_mean = -float(component_entropy.sum()) / size
            return log_prob, entropy_mean, (probs, picked, logp - component_entropy)
        log_std = self.log_std
        inv_std = np.exp(-log_std)
        z = (rows.actions - out) * inv_std
        log_prob = (-0.5 * z * z - log_std).sum(1) - z.shape[1] * _LOG_SQRT_2PI
        entropy_mean = float(log_std.sum()) + z.shape[1] * _GAUSSIAN_ENTROPY
        return log_prob, entropy_mean, (z, inv_std)

    def _head_grad(
        self, state: tuple, g_log_prob: np.ndarray, g_entropy: float, out: np.ndarray
    ) -> None:
        """Write d loss / d head output into ``out`` from those w.r.t. log-prob and entropy."""
        if self.categorical:
            probs, picked, logp_plus_entropy = state
            grad = out.reshape(probs.shape)
            np.multiply(probs, -g_log_prob[:, None, None], out=grad)
            components = probs.shape[1]
            out.reshape(-1)[picked] += (
                g_log_prob if components == 1 else g_log_prob.repeat(components)
            )
            if g_entropy:  # dH/dz_j = -p_j (log p_j + H)
                grad -= g_entropy * probs * logp_plus_entropy
            return
        z, inv_std = state
        g = g_log_prob[:, None]
        # d log_prob / d log_std = z^2 - 1; entropy gradient g_entropy per row
        np.sum(g * (z * z - 1.0), 0, out=self.log_std_grad)
        self.log_std_grad += g_entropy * z.shape[0]
        np.multiply(g * z, inv_std, out=out)

    def step(
        self,
        rows: Rows,
        clip: float,
        learning_rate: float,
        normalize: bool = True,
        max_kl: float | None = None,
    ) -> np.ndarray:
        """One gradient step on ``rows``; returns the metric vector in ``STEP_METRICS`` order.

        ``normalize=False`` skips advantage normalization for rows already normalized (the
        caller does it once when every step sees the same rows). With ``max_kl``, rows whose
        approximate KL exceeds it take no step (gradient norms reported as 0).
        """
        size = rows.states.shape[0]
        states = torch.from_numpy(rows.states)
        features = states if self.trunk is None else self.trunk.forward(states)
        head_out = self.policy.forward(features).numpy()
        value = self.value.forward(features if self.shared else states).numpy().reshape(size)
        log_prob, entropy_mean, state = self._policy_terms(head_out, rows)

        advantages = rows.advantages
        if normalize and self.normalize_advantages and size > 1:
            advantages = normalized(advantages)
        log_ratio = log_prob - rows.log_prob
        ratio = np.exp(log_ratio)
        excess = ratio - 1.0
        kl = float((excess - log_ratio).sum()) / size
        clip_fraction = float(np.count_nonzero(np.abs(excess) > clip)) / size
        unclipped = advantages * ratio
        clipped = advantages * np.clip(ratio, 1.0 - clip, 1.0 + clip)
        policy_loss = -float(np.minimum(unclipped, clipped).sum()) / size
        g_log_prob = np.where(unclipped > clipped, 0.0, unclipped)
        g_log_prob *= -1.0 / size
        value_loss = self._value_loss(value, rows)
        if max_kl is not None and kl > max_kl:  # too far from the rollout's policy: no step
            return np.array((policy_loss, value_loss, entropy_mean, kl, clip_fraction, 0.0, 0.0))
        self._head_grad(
            state, g_log_prob, -self.entropy_coef / size, self.policy.grad_out().numpy()
        )
        self._backward()
        if self.l2_regularization:
            self.fast.add_l2(self.l2_regularization, self.l2_weights)
        norm, norm_clipped = self.fast.clip_grad_norm(self.max_grad_norm)
        self.fast.step(learning_rate)
        return np.array(
            (policy_loss, value_loss, entropy_mean, kl, clip_fraction, norm, norm_clipped)
        )

    def _value_loss(self, value: np.ndarray, rows: Rows) -> float:
        """The (optionally clipped) value loss; writes its gradient w.r.t. the value output."""
        size = value.shape[0]
        diff = value - rows.returns
        g_value = self.value.grad_out().numpy().reshape(size)
        if self.value_clip is None:
            np.multiply(diff, 2.0 * self.value_coef / size, out=g_value)
            return float(np.vdot(diff, diff)) / size
        delta = value - rows.value
        inside = np.abs(delta) <= self.value_clip
        clipped_diff = rows.value + np.clip(delta, -self.value_clip, self.value_clip)
        clipped_diff -= rows.returns
        squared, clipped_squared = diff * diff, clipped_diff * clipped_diff
        chosen = np.where(squared >= clipped_squared, diff, clipped_diff * inside)
        np.multiply(chosen, 2.0 * self.value_coef / size, out=g_value)
        return float(np.maximum(squared, clipped_squared).sum()) / size

    def _backward(self) -> None:
        """Parameter gradients of both stacks from the gradients written into their outputs."""
        if not self.shared:
            self.value.backward()
            self.policy.backward()
            return
        trunk = self.trunk is not None
        g_features = self.policy.backward(input_grad=trunk)
        g_value_features = self.value.backward(input_grad=trunk)
        if trunk:
            g_features += g_value_features
            self.trunk.backward(g_features)

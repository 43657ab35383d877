"""Hand-derived PPO gradient steps for plain-MLP actor-critics on the CPU (the small-network path).

For the networks most PPO runs use (flat float states, a dense tanh/relu MLP policy, an MLP or
shared value function, one categorical or Gaussian action), autograd's per-op bookkeeping costs
several times the arithmetic on a CPU. ``FusedPPOStep`` computes the same loss, gradients, gradient
clipping and Adam step with a fixed, short sequence of operations: the dense layers are torch
matrix products into preallocated buffers, the elementwise loss and its gradient run in NumPy on
views of the same memory (a NumPy op on a few hundred values costs ~1 µs, a torch op ~4 µs), and
the gradients land in one flat buffer. ``tests/test_fused.py`` checks it against autograd;
anything it does not cover falls back to the autograd path (``unsupported_reason`` says why).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from forceexp import tags
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
_TANH_BACKWARD = torch.ops.aten.tanh_backward.grad_input
_RELU_BACKWARD = torch.ops.aten.threshold_backward.grad_input
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
    if not isinstance(head, CategoricalHead | GaussianHead):
        return f"the action head is {type(head).__name__}"
    if any(spec.type != "float" for _, spec in policy.state_specs.items):
        return "a state is not float"
    return None


def normalized(advantages: np.ndarray) -> np.ndarray:
    """Advantages shifted to mean 0 and scaled to (sample) std 1, as the autograd path does."""
    centered = advantages - advantages.sum() / advantages.shape[0]
    std = math.sqrt(float(np.vdot(centered, centered)) / (advantages.shape[0] - 1))
    return centered / np.float32(std + 1e-8)


class _Layer(NamedTuple):
    weight: torch.Tensor
    weight_t: torch.Tensor  # transposed view, made once (parameters are updated in place)
    bias: torch.Tensor
    grad_weight: torch.Tensor
    grad_bias: np.ndarray


class _Stack(NamedTuple):
    """A dense stack's layers and whether it uses relu (else tanh)."""

    layers: list[_Layer]
    relu: bool


class _Buffer(NamedTuple):
    """A preallocated tensor with its NumPy view and transposed view (made once)."""

    tensor: torch.Tensor
    array: np.ndarray
    transposed: torch.Tensor


def _buffer(*shape: int) -> _Buffer:
    tensor = torch.empty(shape)
    return _Buffer(tensor, tensor.numpy(), tensor.t())


class _StackBuffers(NamedTuple):
    """Per-layer buffers of one dense stack for one minibatch size."""

    outputs: list[_Buffer]  # activations
    pre_grads: list[_Buffer]  # d loss / d pre-activation
    input_grads: list[torch.Tensor | None]  # d loss / d layer input (None for the first layer)


def _stack_buffers(stack: _Stack, size: int) -> _StackBuffers:
    widths = [layer.weight.shape for layer in stack.layers]
    return _StackBuffers(
        [_buffer(size, out) for out, _ in widths],
        [_buffer(size, out) for out, _ in widths],
        [torch.empty(size, width) if i else None for i, (_, width) in enumerate(widths)],
    )


class _Buffers:
    """Every buffer one gradient step of a given minibatch size writes (allocated once)."""

    def __init__(self, size: int, step: FusedPPOStep) -> None:
        self.policy = _stack_buffers(step.policy, size)
        self.value = _stack_buffers(step.value, size)
        outputs, features = step.head_layer.weight.shape
        self.head_out = _buffer(size, outputs)
        self.head_grad = _buffer(size, outputs)
        self.value_out = _buffer(size, 1)
        self.value_grad = _buffer(size, 1)
        self.ones = np.ones(size, dtype=np.float32)  # bias gradients as ones @ grad (BLAS gemv)
        self.features_grad = torch.empty(size, features)
        self.value_features_grad = torch.empty(size, step.value_head.weight.shape[1])
        if step.categorical:  # flat index of each (row, component)'s first logit
            self.first_logit = np.arange(0, size * outputs, step.head.num_values)


class FusedPPOStep:
    """PPO's clipped-surrogate gradient step with explicit backward passes and a fused Adam.

    Args:
        policy: A CPU ``ActorCritic`` accepted by ``unsupported_reason``.
        optimizer: The agent's ``torch.optim.Adam`` over ``policy.parameters()``; its state is
            used (and kept in its format), so checkpoints do not depend on the path.
        value_coef: Value loss weight.
        entropy_coef: Entropy bonus weight; an attribute the agent sets to the current value
            before each update when the weight is scheduled.
        value_clip: Clip value updates around the old value (None: off).
        max_grad_norm: Global gradient-norm clip (None: off).
        normalize_advantages: Normalize advantages per minibatch.
    """

    def __init__(
        self,
        policy: nn.Module,
        optimizer: torch.optim.Adam,
        value_coef: float,
        entropy_coef: float,
        value_clip: float | None,
        max_grad_norm: float | None,
        normalize_advantages: bool,
    ) -> None:
        self.optimizer = optimizer
        self.value_coef, self.entropy_coef, self.value_clip = value_coef, entropy_coef, value_clip
        self.max_grad_norm, self.normalize_advantages = max_grad_norm, normalize_advantages
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.flat_grad = torch.zeros(sum(p.numel() for p in self.params))
        self.grads: dict[nn.Parameter, torch.Tensor] = {}
        offset = 0
        for p in self.params:
            self.grads[p] = self.flat_grad[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.head = next(iter(policy.heads.values()))
        self.categorical = isinstance(self.head, CategoricalHead)
        self.policy = self._stack(policy.network)
        self.shared = policy.baseline is None
        self.value = _Stack([], False) if self.shared else self._stack(policy.baseline)
        self.head_layer = self._linear(self.head.linear)
        self.value_head = self._linear(policy.value_head)
        if not self.categorical:
            self.log_std = self.head.log_std.detach().numpy().reshape(-1)
            self.log_std_grad = self.grads[self.head.log_std].numpy().reshape(-1)
        self._buffers: dict[int, _Buffers] = {}
        self._adam_args: tuple[object, torch.Tensor, list[list[torch.Tensor]]] | None = None

    def _linear(self, linear: nn.Linear) -> _Layer:
        weight, bias = linear.weight, linear.bias
        grad_bias = self.grads[bias].numpy()
        return _Layer(weight, weight.detach().t(), bias, self.grads[weight], grad_bias)

    def _stack(self, network: AutoNetwork) -> _Stack:
        layers = [self._linear(m) for m in network.mlp if isinstance(m, nn.Linear)]
        return _Stack(layers, uses_relu(network))

    @staticmethod
    def _forward(stack: _Stack, x: torch.Tensor, buffers: _StackBuffers) -> list[torch.Tensor]:
        """Activations of every layer, input first."""
        outputs = [x]
        for layer, (out, out_np, _) in zip(stack.layers, buffers.outputs, strict=True):
            torch.addmm(layer.bias, x, layer.weight_t, out=out)
            if stack.relu:
                np.maximum(out_np, 0.0, out=out_np)
            else:
                np.tanh(out_np, out=out_np)
            outputs.append(out)
            x = out
        return outputs

    @staticmethod
    def _backward(
        stack: _Stack,
        outputs: list[torch.Tensor],
        grad: torch.Tensor,
        buffers: _StackBuffers,
        ones: np.ndarray,
    ) -> None:
        """Write weight/bias gradients of the dense stack given d loss / d (last activation)."""
        for i in range(len(stack.layers) - 1, -1, -1):
            pre, pre_np, pre_t = buffers.pre_grads[i]
            if stack.relu:  # grad * [h > 0]
                _RELU_BACKWARD(grad, outputs[i + 1], 0.0, grad_input=pre)
            else:  # grad * (1 - h^2)
                _TANH_BACKWARD(grad, outputs[i + 1], grad_input=pre)
            layer = stack.layers[i]
            torch.mm(pre_t, outputs[i], out=layer.grad_weight)
            np.dot(ones, pre_np, out=layer.grad_bias)  # column sums, ~5x faster than np.sum
            if i:
                grad = torch.mm(pre, layer.weight, out=buffers.input_grads[i])

    @staticmethod
    def _head_backward(
        layer: _Layer,
        features: torch.Tensor,
        grad: _Buffer,
        out: torch.Tensor,
        ones: np.ndarray,
    ) -> torch.Tensor:
        """Gradients of a linear head; returns d loss / d features (written into ``out``)."""
        torch.mm(grad.transposed, features, out=layer.grad_weight)
        np.dot(ones, grad.array, out=layer.grad_bias)
        return torch.mm(grad.tensor, layer.weight, out=out)

    def _policy_terms(
        self, out: np.ndarray, rows: Rows, buffers: _Buffers
    ) -> tuple[np.ndarray, float, tuple]:
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
            picked = buffers.first_logit + rows.actions.reshape(-1)  # flat index per component
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
        self, rows: Rows, clip: float, learning_rate: float, normalize: bool = True
    ) -> np.ndarray:
        """One gradient step on ``rows``; returns the metric vector in ``STEP_METRICS`` order.

        ``normalize=False`` skips advantage normalization for rows already normalized (the
        caller does it once when every step sees the same rows).
        """
        size = rows.states.shape[0]
        buffers = self._buffers.get(size)
        if buffers is None:
            buffers = self._buffers[size] = _Buffers(size, self)
        with torch.no_grad():
            states = torch.from_numpy(rows.states)
            policy_out = self._forward(self.policy, states, buffers.policy)
            head_out, head_np, _ = buffers.head_out
            torch.addmm(
                self.head_layer.bias, policy_out[-1], self.head_layer.weight_t, out=head_out
            )
            value_out = (
                self._forward(self.value, states, buffers.value) if not self.shared else policy_out
            )
            torch.addmm(
                self.value_head.bias,
                value_out[-1],
                self.value_head.weight_t,
                out=buffers.value_out.tensor,
            )
        value = buffers.value_out.array.reshape(size)
        log_prob, entropy_mean, state = self._policy_terms(head_np, rows, buffers)

        advantages = rows.advantages
        if normalize and self.normalize_advantages and size > 1:
            advantages = normalized(advantages)
        log_ratio = log_prob - rows.log_prob
        ratio = np.exp(log_ratio)
        unclipped = advantages * ratio
        clipped = advantages * np.clip(ratio, 1.0 - clip, 1.0 + clip)
        policy_loss = -float(np.minimum(unclipped, clipped).sum()) / size
        g_log_prob = np.where(unclipped > clipped, 0.0, unclipped)
        g_log_prob *= -1.0 / size

        diff = value - rows.returns
        g_value = buffers.value_grad.array.reshape(size)
        if self.value_clip is None:
            value_loss = float(np.vdot(diff, diff)) / size
            np.multiply(diff, 2.0 * self.value_coef / size, out=g_value)
        else:
            delta = value - rows.value
            inside = np.abs(delta) <= self.value_clip
            clipped_diff = rows.value + np.clip(delta, -self.value_clip, self.value_clip)
            clipped_diff -= rows.returns
            squared, clipped_squared = diff * diff, clipped_diff * clipped_diff
            value_loss = float(np.maximum(squared, clipped_squared).sum()) / size
            chosen = np.where(squared >= clipped_squared, diff, clipped_diff * inside)
            np.multiply(chosen, 2.0 * self.value_coef / size, out=g_value)

        self._head_grad(state, g_log_prob, -self.entropy_coef / size, buffers.head_grad.array)
        with torch.no_grad():
            ones = buffers.ones
            g_features = self._head_backward(
                self.head_layer, policy_out[-1], buffers.head_grad, buffers.features_grad, ones
            )
            g_value_features = self._head_backward(
                self.value_head,
                value_out[-1],
                buffers.value_grad,
                buffers.value_features_grad,
                ones,
            )
            if self.shared:
                g_features += g_value_features
            else:
                self._backward(self.value, value_out, g_value_features, buffers.value, ones)
            self._backward(self.policy, policy_out, g_features, buffers.policy, ones)
        flat = self.flat_grad.numpy()
        norm = math.sqrt(float(np.vdot(flat, flat)))
        norm_clipped = norm
        if self.max_grad_norm is not None:
            scale = min(self.max_grad_norm / (norm + 1e-6), 1.0)
            if scale < 1.0:
                flat *= scale
            norm_clipped = norm * scale
        self._adam(learning_rate)
        excess = ratio - 1.0
        kl = float((excess - log_ratio).sum()) / size
        clip_fraction = float(np.count_nonzero(np.abs(excess) > clip)) / size
        return np.array(
            (policy_loss, value_loss, entropy_mean, kl, clip_fraction, norm, norm_clipped)
        )

    def _adam(self, learning_rate: float) -> None:
        """The optimizer's own fused Adam kernel on its own state (one call for all tensors).

        The state stays in ``torch.optim.Adam``'s format (so ``optimizer.step()`` elsewhere,
        e.g. in imitation pretraining, and checkpoints work on it). The per-parameter step
        counters become views of one tensor so that counting is one op; the argument lists are
        rebuilt only when the state was replaced (a load).
        """
        state = self.optimizer.state
        if (
            self._adam_args is None
            or self._adam_args[0] is not state
            or self.params[0] not in state
        ):
            counts = torch.tensor([float(state[p].get("step", 0.0)) for p in self.params])
            for i, p in enumerate(self.params):
                entry = state[p]
                entry["step"] = counts[i]
                entry.setdefault("exp_avg", torch.zeros_like(p))
                entry.setdefault("exp_avg_sq", torch.zeros_like(p))
            keys = ("exp_avg", "exp_avg_sq", "step")
            lists = [[state[p][key] for p in self.params] for key in keys]
            grads = [self.grads[p] for p in self.params]
            self._adam_args = (state, counts, [self.params, grads, *lists])
        _, counts, (params, grads, exp_avg, exp_avg_sq, steps) = self._adam_args
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        counts.add_(1.0)
        torch._fused_adam_(
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            [],
            steps,
            amsgrad=False,
            lr=learning_rate,
            beta1=beta1,
            beta2=beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

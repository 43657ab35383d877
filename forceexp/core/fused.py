"""Hand-derived PPO gradient steps for plain-MLP actor-critics (the small-network fast path).

For the networks most PPO runs use (flat float states, a dense tanh/relu MLP policy, an MLP or
shared value function, one categorical or Gaussian action), autograd's per-op bookkeeping costs
several times the arithmetic on a CPU. ``FusedPPOStep`` computes the same loss, gradients, gradient
clipping and Adam step with a fixed, short sequence of tensor ops, writing gradients into one flat
buffer. ``tests/test_fused.py`` checks it against autograd; anything it does not cover falls back to
the autograd path (``unsupported_reason`` says why).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from forceexp.core.distributions import MASKED_LOGIT, CategoricalHead, GaussianHead
from forceexp.core.networks.auto import AutoNetwork
from forceexp.observers import tags

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
_TANH_BACKWARD = torch.ops.aten.tanh_backward
_RELU_BACKWARD = torch.ops.aten.threshold_backward


class Rows(NamedTuple):
    """One minibatch: flat states and the stored rollout values of its rows."""

    states: torch.Tensor  # (B, D) float, normalized and concatenated
    actions: torch.Tensor  # (B, K, 1) int64 indices (categorical) or (B, A) float (Gaussian)
    masks: torch.Tensor | None  # (B, K, n) bool (categorical only)
    log_prob: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    value: torch.Tensor


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


class _Layer(NamedTuple):
    weight: torch.Tensor
    weight_t: torch.Tensor  # transposed view, made once (parameters are updated in place)
    bias: torch.Tensor
    grad_weight: torch.Tensor
    grad_bias: torch.Tensor


class FusedPPOStep:
    """PPO's clipped-surrogate gradient step with explicit backward passes and a fused Adam.

    Args:
        policy: An ``ActorCritic`` accepted by ``unsupported_reason``.
        optimizer: The agent's ``torch.optim.Adam`` over ``policy.parameters()``; its state is
            used (and kept in its format), so checkpoints do not depend on the path.
        value_coef: Value loss weight.
        entropy_coef: Entropy bonus weight.
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
        self.flat_grad = torch.zeros(
            sum(p.numel() for p in self.params), device=self.params[0].device
        )
        self.grads: dict[nn.Parameter, torch.Tensor] = {}
        offset = 0
        for p in self.params:
            self.grads[p] = self.flat_grad[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.head = next(iter(policy.heads.values()))
        self.categorical = isinstance(self.head, CategoricalHead)
        self.policy_layers = self._layers(policy.network)
        self.value_layers = self._layers(policy.baseline) if policy.baseline is not None else []
        self.head_layer = self._linear(self.head.linear)
        self.value_head = self._linear(policy.value_head)
        self.relu = uses_relu(policy.network)
        self.value_relu = uses_relu(policy.baseline) if policy.baseline is not None else self.relu

    def _linear(self, linear: nn.Linear) -> _Layer:
        weight, bias = linear.weight, linear.bias
        return _Layer(weight, weight.detach().t(), bias, self.grads[weight], self.grads[bias])

    def _layers(self, network: AutoNetwork) -> list[_Layer]:
        return [self._linear(m) for m in network.mlp if isinstance(m, nn.Linear)]

    @staticmethod
    def _forward(layers: list[_Layer], x: torch.Tensor, relu: bool) -> list[torch.Tensor]:
        """Activations of every layer, input first."""
        outputs = [x]
        for layer in layers:
            z = torch.addmm(layer.bias, x, layer.weight_t)
            x = z.relu_() if relu else z.tanh_()
            outputs.append(x)
        return outputs

    @staticmethod
    def _backward(
        layers: list[_Layer], outputs: list[torch.Tensor], grad: torch.Tensor, relu: bool
    ) -> None:
        """Write weight/bias gradients of the dense stack given d loss / d (last activation)."""
        for i in range(len(layers) - 1, -1, -1):
            h = outputs[i + 1]
            # relu: grad * [h > 0]; tanh: grad * (1 - h^2), each one kernel
            grad = _RELU_BACKWARD(grad, h, 0.0) if relu else _TANH_BACKWARD(grad, h)
            layer = layers[i]
            torch.mm(grad.t(), outputs[i], out=layer.grad_weight)
            torch.sum(grad, 0, out=layer.grad_bias)
            if i:
                grad = grad.mm(layer.weight)

    def _policy_terms(
        self, out: torch.Tensor, rows: Rows
    ) -> tuple[torch.Tensor, torch.Tensor, object]:
        """Log-prob ``(B,)`` of the stored actions, mean entropy, and state for the gradient."""
        size = out.shape[0]
        if self.categorical:
            logits = out.view(size, -1, self.head.num_values)
            if rows.masks is not None:
                logits = logits.masked_fill(~rows.masks, MASKED_LOGIT)
            logp = torch.log_softmax(logits, -1)
            picked = logp.gather(-1, rows.actions)  # (B, K, 1)
            log_prob = picked.view(size) if picked.shape[1] == 1 else picked.sum((1, 2))
            probs = logp.exp()
            p_logp = probs * logp
            if not self.entropy_coef:  # the entropy is only reported: its mean is enough
                return log_prob, p_logp.sum() * (-1.0 / size), (probs, rows.actions, None)
            component_entropy = p_logp.sum(-1, keepdim=True).neg_()  # (B, K, 1)
            entropy_mean = component_entropy.sum() * (1.0 / size)
            return log_prob, entropy_mean, (probs, rows.actions, logp + component_entropy)
        mean = out
        log_std = self.head.log_std.reshape(1, -1)
        inv_std = torch.exp(-log_std)
        z = (rows.actions - mean) * inv_std
        log_prob = (-0.5 * z * z - log_std).sum(1) - mean.shape[1] * 0.9189385332046727
        entropy_mean = log_std.sum() + mean.shape[1] * 1.4189385332046727
        return log_prob, entropy_mean, (z, inv_std)

    def _head_grad(self, state: object, g_log_prob: torch.Tensor, g_entropy: float) -> torch.Tensor:
        """Loss gradient w.r.t. the head output from those w.r.t. log-prob and entropy."""
        if self.categorical:
            probs, index, logp_plus_entropy = state  # type: ignore[misc]
            g = g_log_prob.view(-1, 1, 1)
            grad = probs * (-g)
            grad.scatter_add_(-1, index, g.expand_as(index))
            if g_entropy:  # dH/dz_j = -p_j (log p_j + H)
                grad.addcmul_(probs, logp_plus_entropy, value=-g_entropy)
            return grad.view(grad.shape[0], -1)
        z, inv_std = state  # type: ignore[misc]
        g = g_log_prob.view(-1, 1)
        grad_std = self.grads[self.head.log_std].view(1, -1)
        # d log_prob / d log_std = z^2 - 1; entropy gradient g_entropy per row
        torch.sum(g * (z * z - 1.0) + g_entropy, 0, keepdim=True, out=grad_std)
        return g * z * inv_std

    @torch.no_grad()
    def step(
        self, rows: Rows, clip: float, learning_rate: float, normalize: bool = True
    ) -> torch.Tensor:
        """One gradient step on ``rows``; returns the metric vector in ``STEP_METRICS`` order.

        ``normalize=False`` skips advantage normalization for rows already normalized (the
        caller does it once when every step sees the same rows).
        """
        size = rows.states.shape[0]
        policy_out = self._forward(self.policy_layers, rows.states, self.relu)
        head_out = torch.addmm(self.head_layer.bias, policy_out[-1], self.head_layer.weight_t)
        if self.value_layers:
            value_out = self._forward(self.value_layers, rows.states, self.value_relu)
        else:
            value_out = policy_out
        value = torch.addmm(self.value_head.bias, value_out[-1], self.value_head.weight_t)
        value = value.squeeze(1)
        log_prob, entropy_mean, state = self._policy_terms(head_out, rows)

        advantages = rows.advantages
        if normalize and self.normalize_advantages and size > 1:
            centered = advantages - advantages.mean()
            advantages = centered / (centered.std() + 1e-8)
        log_ratio = log_prob - rows.log_prob
        ratio = log_ratio.exp()
        unclipped = advantages * ratio
        clipped = advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
        policy_loss = -torch.minimum(unclipped, clipped).mean()
        g_log_prob = unclipped.masked_fill(unclipped > clipped, 0.0).mul_(-1.0 / size)

        diff = value - rows.returns
        if self.value_clip is None:
            value_loss = (diff * diff).mean()
            g_value = diff * (2.0 * self.value_coef / size)
        else:
            delta = value - rows.value
            inside = delta.abs() <= self.value_clip
            clipped_diff = (
                rows.value + delta.clamp(-self.value_clip, self.value_clip) - rows.returns
            )
            larger = diff * diff >= clipped_diff * clipped_diff
            value_loss = torch.maximum(diff * diff, clipped_diff * clipped_diff).mean()
            g_value = torch.where(larger, diff, clipped_diff * inside) * (
                2.0 * self.value_coef / size
            )

        head_grad = self._head_grad(state, g_log_prob, -self.entropy_coef / size)
        g_features = self._head_backward(self.head_layer, policy_out[-1], head_grad)
        g_value_features = self._head_backward(self.value_head, value_out[-1], g_value[:, None])
        if self.value_layers:
            self._backward(self.value_layers, value_out, g_value_features, self.value_relu)
        else:
            g_features += g_value_features
        self._backward(self.policy_layers, policy_out, g_features, self.relu)

        norm = self.flat_grad.norm()
        if self.max_grad_norm is not None:
            scale = (self.max_grad_norm / (norm + 1e-6)).clamp_(max=1.0)
            self.flat_grad.mul_(scale)
            norm_clipped = norm * scale
        else:
            norm_clipped = norm
        self._adam(learning_rate)
        excess = ratio - 1.0
        kl = (excess - log_ratio).mean()
        clip_fraction = excess.abs_().gt_(clip).mean()  # in place: 1.0 where clipped
        return torch.stack(
            (policy_loss, value_loss, entropy_mean, kl, clip_fraction, norm, norm_clipped)
        )

    @staticmethod
    def _head_backward(layer: _Layer, features: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        torch.mm(grad.t(), features, out=layer.grad_weight)
        torch.sum(grad, 0, out=layer.grad_bias)
        return grad.mm(layer.weight)

    def _adam(self, learning_rate: float) -> None:
        """The optimizer's own fused Adam kernel on its own state (one call for all tensors).

        Every parameter's ``step`` entry is one shared tensor (they always count the same
        steps), so counting is one op; the state stays in ``torch.optim.Adam``'s format.
        """
        state = self.optimizer.state
        first = state.get(self.params[0])
        if first is None or any(state[p]["step"] is not first["step"] for p in self.params):
            step = first["step"].clone() if first else torch.zeros((), device=self.flat_grad.device)
            for p in self.params:
                entry = state.setdefault(p, {})
                entry["step"] = step
                entry.setdefault("exp_avg", torch.zeros_like(p))
                entry.setdefault("exp_avg_sq", torch.zeros_like(p))
        group = self.optimizer.param_groups[0]
        beta1, beta2 = group["betas"]
        steps = [state[p]["step"] for p in self.params]
        steps[0].add_(1)
        torch._fused_adam_(
            self.params,
            [self.grads[p] for p in self.params],
            [state[p]["exp_avg"] for p in self.params],
            [state[p]["exp_avg_sq"] for p in self.params],
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

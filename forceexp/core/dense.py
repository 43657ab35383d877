"""Fast gradient steps for small dense networks on the CPU, shared by every algorithm.

On the MLPs most RL runs use, eager autograd spends more time dispatching and bookkeeping than
computing. Two pieces replace it, and only the loss's gradient w.r.t. the network outputs stays
algorithm-specific (written in NumPy by the caller):

- ``DenseStack``: forward/backward of ``Linear (act Linear)* [act]`` (tanh or relu) as a fixed
  sequence of matrix products into preallocated buffers (per batch size), working on the module's
  own parameters; backward writes (or accumulates) parameter gradients and can return d loss /
  d input (e.g. d Q / d action through a critic's ``concat(states, actions)`` input).
- ``FastOptimizer``: one flat gradient buffer over a ``torch.optim.Adam``'s parameters (the
  stacks write into views of it), zeroing, global-norm clipping like ``clip_grad_norm_``, and
  the Adam step on that optimizer's own state (so checkpoints and ``optimizer.step()`` elsewhere
  see the same state).

A DQN step (``forceexp.core.dqn_step`` is the complete, tested version)::

    optim = FastOptimizer(torch.optim.Adam(q_net.parameters(), lr=1e-4))
    online = DenseStack(q_net, optim)             # e.g. nn.Sequential(mlp, head)
    target = DenseStack(target_net)               # no optimizer: inference (or private grads)

    q = online.forward(states).numpy()            # (B, n), kept for backward
    q_next = target.forward(next_states, keep=False).numpy()
    td = q[rows, actions] - (rewards + discount * not_done * q_next.max(1))
    grad = online.grad_out().numpy()              # preallocated d loss / d Q, (B, n)
    grad.fill(0.0)
    grad[rows, actions] = np.clip(td, -1.0, 1.0) / len(td)   # Huber, mean
    online.backward()                             # parameter gradients into optim's buffer
    norm, clipped = optim.clip_grad_norm(10.0)
    optim.step()

Rules: float32 CPU tensors; a stack's outputs and input gradients are its own buffers,
overwritten by the next ``forward`` of the same batch size and ``slot`` (use another ``slot`` to
keep two passes of one stack alive for backward, e.g. a critic run on two batches of one size),
and the input of a kept forward must not change before its backward. ``infer`` is the acting
pass: NumPy on views of the weights (one row through 256x256: ~40 against ~60 us of ``forward``).
``tests/test_dense.py``
checks everything against autograd; keep an autograd path as the reference for every fast step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu"}
_TANH_BACKWARD = torch.ops.aten.tanh_backward.grad_input
_RELU_BACKWARD = torch.ops.aten.threshold_backward.grad_input
_INFER = -1  # the slot of forward(keep=False)
#: NumPy-side products of batches with more rows than this multiply through torch on one
#: thread (NumPy's multi-threaded BLAS loses there); the elementwise work stays in NumPy.
TORCH_MATMUL_MIN_ROWS = 64


def _flushing() -> bool:
    """Whether this thread flushes denormal results to zero (torch has no getter)."""
    return bool((torch.tensor(1e-30) * 1e-10).item() == 0.0)


@contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush denormal floats to zero in this thread while the block runs, then restore.

    Adam's moments of parameters whose gradients stop (dead ReLU units) decay geometrically
    into denormals, which x86 FPUs process ~10x slower: a DQN Adam step took 0.85 ms instead of
    0.13-0.17 ms. Values below ~1e-38 do not matter to learning; the mode is restored after the
    block because it is process state other code relies on (hypothesis refuses to run under it).
    """
    before = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


def _flatten(modules: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    if isinstance(modules, nn.Sequential):
        modules = list(modules)
    elif isinstance(modules, nn.Module):
        return [modules]
    return [leaf for m in modules for leaf in _flatten(m)]


class DenseLayout(NamedTuple):
    """A plain MLP's linear layers, its activation and whether it follows the last layer too."""

    linears: list[nn.Linear]
    activation: str | None  # "tanh", "relu", or None (one layer without activation)
    output_activation: bool


def parse_dense(modules: nn.Module | Iterable[nn.Module]) -> DenseLayout:
    """The layout of a plain MLP, or ValueError saying why it is not one.

    Args:
        modules: A module or modules (``nn.Sequential`` flattened, ``nn.Identity`` skipped):
            ``nn.Linear`` layers with one tanh or relu between consecutive ones (the same
            everywhere) and optionally one after the last.

    Returns:
        Its ``DenseLayout``.
    """
    linears: list[nn.Linear] = []
    kinds: list[str | None] = []  # the activation after each linear
    for m in _flatten(modules):
        if isinstance(m, nn.Identity):
            continue
        if type(m) is nn.Linear:
            if m.bias is None:
                raise ValueError("a Linear without bias")
            linears.append(m)
            kinds.append(None)
        elif type(m) in _ACTIVATIONS and linears and kinds[-1] is None:
            kinds[-1] = _ACTIVATIONS[type(m)]
        else:
            raise ValueError(f"{type(m).__name__} in a dense stack (Linear, Tanh, ReLU only)")
    if not linears:
        raise ValueError("no Linear layer")
    if any(kind is None for kind in kinds[:-1]):
        raise ValueError("two Linear layers without an activation between them")
    if len({kind for kind in kinds if kind is not None}) > 1:
        raise ValueError("mixed activations")
    activation = next((kind for kind in kinds if kind is not None), None)
    return DenseLayout(linears, activation, kinds[-1] is not None)


def _check(param: torch.Tensor) -> None:
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError(
            f"fast path needs float32 CPU parameters, got {param.dtype} on {param.device}"
        )


class FastOptimizer:
    """A flat gradient buffer over an optimizer's parameters, clipping and its Adam/RMSprop step.

    Args:
        optimizer: A ``torch.optim.Adam`` or ``AdamW`` (no amsgrad, no maximize) or a plain
            ``torch.optim.RMSprop`` (no momentum, not centered; A2C's) over float32 CPU
            parameters. Its ``state`` is used in its own format (Adam: ``step``, ``exp_avg``,
            ``exp_avg_sq``; RMSprop: ``step``, ``square_avg``); each group's ``betas``/``alpha``,
            ``eps``, ``weight_decay`` apply.
    """

    def __init__(self, optimizer: torch.optim.Adam | torch.optim.RMSprop) -> None:
        self.rmsprop = isinstance(optimizer, torch.optim.RMSprop)
        if not self.rmsprop and not isinstance(optimizer, torch.optim.Adam):
            raise ValueError(f"{type(optimizer).__name__} is not Adam or RMSprop")
        for g in optimizer.param_groups:
            if g["maximize"] or g.get("amsgrad") or g.get("centered") or g.get("momentum"):
                raise ValueError("amsgrad/maximize/centered/momentum are not supported")
        self.optimizer = optimizer
        self.params: list[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"]]
        for p in self.params:
            _check(p)
        #: Every parameter's gradient, in ``params`` order (``grad(p)`` are views of it).
        self.flat_grad = torch.zeros(sum(p.numel() for p in self.params))
        self._flat = self.flat_grad.numpy()
        self._grads: dict[torch.Tensor, torch.Tensor] = {}
        offset = 0
        for p in self.params:
            self._grads[p] = self.flat_grad[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self._adam_args: tuple[object, torch.Tensor, list[list[list[torch.Tensor]]]] | None = None

    def grad(self, param: torch.Tensor) -> torch.Tensor:
        """The gradient view of ``param`` (write it by hand for parameters outside any stack)."""
        try:
            return self._grads[param]
        except KeyError:
            raise ValueError(f"a {tuple(param.shape)} parameter not in this optimizer") from None

    def add_l2(self, coefficient: float, params: list[torch.Tensor]) -> None:
        """Add ``coefficient * p`` (the gradient of ``coefficient / 2 * p ** 2``) to ``params``."""
        for param in params:
            self.grad(param).add_(param.detach(), alpha=coefficient)

    def zero_grad(self) -> None:
        """Zero every gradient (needed only when some are accumulated rather than written)."""
        self._flat.fill(0.0)

    def clip_grad_norm(self, max_norm: float | None) -> tuple[float, float]:
        """Scale gradients to global L2 norm ``max_norm`` like ``clip_grad_norm_`` (None: off).

        Returns:
            The norm before and after clipping.
        """
        flat = self._flat
        norm = math.sqrt(float(np.vdot(flat, flat)))
        if max_norm is None:
            return norm, norm
        scale = min(max_norm / (norm + 1e-6), 1.0)
        if scale < 1.0:
            flat *= scale
        return norm, norm * scale

    def step(self, lr: float | None = None) -> None:
        """One optimizer step with the current gradients (Adam: torch's fused kernel per group).

        Args:
            lr: Learning rate for every group (None: each group's ``lr``).

        Each parameter's ``step`` counter becomes a view of one tensor, so counting is one op
        and a plain ``optimizer.step()`` on the same state still counts each step once; the
        argument lists are rebuilt only when the state was replaced (a load).
        """
        if self.rmsprop:
            self._rmsprop_step(lr)
            return
        state = self.optimizer.state
        if (
            self._adam_args is None
            or self._adam_args[0] is not state
            or self.params[0] not in state
        ):
            self._adam_args = self._build_adam_args()
        _, counts, per_group = self._adam_args
        counts.add_(1.0)
        for group, args in zip(self.optimizer.param_groups, per_group, strict=True):
            beta1, beta2 = group["betas"]
            kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            kernel(
                *args[:4],
                [],
                args[4],
                amsgrad=False,
                lr=group["lr"] if lr is None else lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
            )

    def _rmsprop_step(self, lr: float | None) -> None:
        """The RMSprop update of torch (no momentum, not centered) with foreach ops, per group.

        ``v = alpha v + (1 - alpha) g^2``; ``p -= lr g / (sqrt(v) + eps)``.
        """
        state = self.optimizer.state
        for group in self.optimizer.param_groups:
            params = list(group["params"])
            grads = [self._grads[p] for p in params]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            for p in params:
                if "square_avg" not in state[p]:
                    state[p]["step"] = torch.tensor(0.0)
                    state[p]["square_avg"] = torch.zeros_like(p)
                state[p]["step"] += 1
            averages = [state[p]["square_avg"] for p in params]
            alpha = group["alpha"]
            torch._foreach_mul_(averages, alpha)
            torch._foreach_addcmul_(averages, grads, grads, value=1.0 - alpha)
            denominators = torch._foreach_sqrt(averages)
            torch._foreach_add_(denominators, group["eps"])
            rate = group["lr"] if lr is None else lr
            torch._foreach_addcdiv_([p.detach() for p in params], grads, denominators, value=-rate)

    def _build_adam_args(self) -> tuple[object, torch.Tensor, list[list[list[torch.Tensor]]]]:
        state = self.optimizer.state
        counts = torch.tensor([float(state[p].get("step", 0.0)) for p in self.params])
        for i, p in enumerate(self.params):
            entry = state[p]
            entry["step"] = counts[i]
            entry.setdefault("exp_avg", torch.zeros_like(p))
            entry.setdefault("exp_avg_sq", torch.zeros_like(p))
        per_group = []
        for group in self.optimizer.param_groups:
            params = list(group["params"])
            lists = [[state[p][key] for p in params] for key in ("exp_avg", "exp_avg_sq", "step")]
            per_group.append([params, [self._grads[p] for p in params], *lists])
        return state, counts, per_group


class NumpyLinear(NamedTuple):
    """NumPy views of one linear layer's parameters (shared memory, made once)."""

    weight_t: np.ndarray  # W^T (in, out)
    bias: np.ndarray  # (out,)
    weight_t_torch: torch.Tensor  # the same W^T as a tensor


def numpy_linear(linear: nn.Linear) -> NumpyLinear:
    """Views of ``linear``'s weight (transposed) and bias; updates in place stay visible."""
    weight_t = linear.weight.detach().t()
    return NumpyLinear(weight_t.numpy(), linear.bias.detach().numpy(), weight_t)


def affine(x: np.ndarray, layer: NumpyLinear) -> np.ndarray:
    """``x @ W^T + b`` as a new array; more than ``TORCH_MATMUL_MIN_ROWS`` rows go through torch."""
    if x.shape[0] > TORCH_MATMUL_MIN_ROWS:
        out = torch.mm(torch.from_numpy(x), layer.weight_t_torch).numpy()
    else:
        out = x @ layer.weight_t
    out += layer.bias
    return out


class _Layer(NamedTuple):
    weight: torch.Tensor  # detached: products never enter autograd, updates stay visible
    weight_t: torch.Tensor  # transposed view, made once
    bias: torch.Tensor
    grad_weight: torch.Tensor
    grad_bias: np.ndarray
    activated: bool


class _Buffer(NamedTuple):
    """A preallocated tensor with its NumPy and transposed views (made once)."""

    tensor: torch.Tensor
    array: np.ndarray
    transposed: torch.Tensor


def _buffer(*shape: int) -> _Buffer:
    tensor = torch.empty(shape)
    return _Buffer(tensor, tensor.numpy(), tensor.t())


class _Tape:
    """The buffers of one (batch size, slot) and the input of its last forward."""

    def __init__(self, layers: Sequence[_Layer], size: int, backward: bool) -> None:
        widths = [layer.weight.shape for layer in layers]
        self.inputs: torch.Tensor | None = None
        self.outputs = [_buffer(size, out) for out, _ in widths]
        if not backward:  # inference only
            return
        # d loss / d pre-activation; for a last layer without activation it is grad_out itself
        self.pre_grads = [_buffer(size, out) for out, _ in widths]
        self.grad_out = (
            self.pre_grads[-1] if not layers[-1].activated else _buffer(size, widths[-1][0])
        )
        self.input_grads: list[torch.Tensor | None] = [
            torch.empty(size, width) if i else None for i, (_, width) in enumerate(widths)
        ]
        self.ones = np.ones(size, dtype=np.float32)  # bias gradients as ones @ grad (BLAS gemv)
        self.bias_scratch = [np.empty(out, np.float32) for out, _ in widths]


class DenseStack:
    """Forward and hand-derived backward of a plain MLP, in place on its own parameters.

    Args:
        modules: The MLP, as ``parse_dense`` accepts it (e.g. ``[network.mlp, head]``).
        optimizer: The ``FastOptimizer`` whose gradient buffer receives this stack's parameter
            gradients (None: a stack only run for inference or for input gradients with
            ``params=False``, e.g. a target network; parameter gradients go to private
            tensors nobody reads).
    """

    def __init__(
        self, modules: nn.Module | Iterable[nn.Module], optimizer: FastOptimizer | None = None
    ) -> None:
        linears, activation, output_activation = parse_dense(modules)
        self.relu = activation == "relu"
        self.linears = linears
        layers = []
        for i, linear in enumerate(linears):
            weight, bias = linear.weight, linear.bias
            _check(weight)
            if optimizer is None:
                grad_weight, grad_bias = torch.zeros_like(weight), torch.zeros_like(bias)
            else:
                grad_weight, grad_bias = optimizer.grad(weight), optimizer.grad(bias)
            activated = i < len(linears) - 1 or output_activation
            layers.append(
                _Layer(
                    weight.detach(),
                    weight.detach().t(),
                    bias.detach(),
                    grad_weight,
                    grad_bias.numpy(),
                    activated,
                )
            )
        self.layers = layers
        self._numpy = [numpy_linear(linear) for linear in linears]
        self._tapes: dict[tuple[int, int], _Tape] = {}
        self._last: dict[int, _Tape] = {}

    def _tape(self, size: int, slot: int) -> _Tape:
        tape = self._tapes.get((size, slot))
        if tape is None:
            tape = self._tapes[size, slot] = _Tape(self.layers, size, slot != _INFER)
        return tape

    @property
    def input_size(self) -> int:
        """Features per input row."""
        return self.layers[0].weight.shape[1]

    @property
    def output_size(self) -> int:
        """Features per output row."""
        return self.layers[-1].weight.shape[0]

    def forward(self, x: torch.Tensor, *, keep: bool = True, slot: int = 0) -> torch.Tensor:
        """The stack's output for ``x`` ``(B, input_size)``, a plain float32 tensor.

        Args:
            x: The input rows; with ``keep`` it must stay unchanged until ``backward``.
            keep: Keep what ``backward`` needs (False: inference only, e.g. a target network
                or acting; it never disturbs a kept pass).
            slot: Which kept pass to replace: each slot keeps its last forward for backward
                (run a stack twice in one loss in two slots, e.g. 0 and 1).

        Returns:
            ``(B, output_size)``, a buffer of the stack, overwritten by its next forward of the
            same batch size and slot.
        """
        tape = self._tape(x.shape[0], slot if keep else _INFER)
        if keep:
            tape.inputs = x
            self._last[slot] = tape
        relu = self.relu
        for layer, (out, out_np, _) in zip(self.layers, tape.outputs, strict=True):
            torch.addmm(layer.bias, x, layer.weight_t, out=out)
            if layer.activated:
                if relu:
                    torch.relu_(out)  # ~2x faster than np.maximum here
                else:
                    np.tanh(out_np, out=out_np)
            x = out
        return x

    def infer(self, x: np.ndarray) -> np.ndarray:
        """The stack's output for ``x`` ``(B, input_size)`` computed in NumPy: a new array.

        The acting pass: NumPy's per-op cost is a fraction of torch's, which dominates for a
        few rows; it keeps no tape and touches no buffer of ``forward``.
        """
        for layer, linear in zip(self.layers, self._numpy, strict=True):
            x = affine(x, linear)
            if layer.activated:
                if self.relu:
                    np.maximum(x, 0.0, out=x)
                else:
                    np.tanh(x, out=x)
        return x

    def grad_out(self, slot: int = 0) -> torch.Tensor:
        """A preallocated ``(B, output_size)`` buffer for d loss / d output of the kept pass.

        Fill it (e.g. through ``.numpy()``) and call ``backward()`` without ``grad_out``: this
        saves a copy and, for a linear last layer, making views on every step. Its content is
        whatever the last step left there.
        """
        return self._last[slot].grad_out.tensor

    def backward(
        self,
        grad_out: torch.Tensor | None = None,
        *,
        input_grad: bool = False,
        accumulate: bool = False,
        params: bool = True,
        slot: int = 0,
    ) -> torch.Tensor | None:
        """Back-propagate d loss / d output through the pass kept in ``slot``.

        Args:
            grad_out: ``(B, output_size)`` d loss / d output (None: the ``grad_out()`` buffer).
            input_grad: Return d loss / d input.
            accumulate: Add the parameter gradients to the optimizer's buffer (else overwrite
                them: the first backward of a stack in a step writes, later ones accumulate).
            params: Compute parameter gradients (False: only d loss / d input, e.g. a critic in
                an actor loss).
            slot: The kept pass to use.

        Returns:
            d loss / d input ``(B, input_size)`` (a buffer of the stack) if ``input_grad``.
        """
        tape = self._last[slot]
        grad = tape.grad_out.tensor if grad_out is None else grad_out
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            pre = self._pre_grad(i, grad, tape)
            if params:
                inputs = tape.outputs[i - 1].tensor if i else tape.inputs
                _param_grads(layer, pre, inputs, tape, i, accumulate)
            if i or input_grad:
                out = tape.input_grads[i]
                if out is None:
                    out = tape.input_grads[0] = torch.empty(len(tape.ones), self.input_size)
                grad = torch.mm(pre.tensor, layer.weight, out=out)
        return grad if input_grad else None

    def _pre_grad(self, i: int, grad: torch.Tensor, tape: _Tape) -> _Buffer:
        """The gradient w.r.t. layer ``i``'s pre-activation, given it w.r.t. its output."""
        if self.layers[i].activated:
            pre = tape.pre_grads[i]
            if self.relu:  # grad * [h > 0]
                _RELU_BACKWARD(grad, tape.outputs[i].tensor, 0.0, grad_input=pre.tensor)
            else:  # grad * (1 - h^2)
                _TANH_BACKWARD(grad, tape.outputs[i].tensor, grad_input=pre.tensor)
            return pre
        if grad is tape.grad_out.tensor:
            return tape.grad_out
        return _Buffer(grad, grad.numpy(), grad.t())


def _param_grads(
    layer: _Layer, pre: _Buffer, inputs: torch.Tensor, tape: _Tape, i: int, accumulate: bool
) -> None:
    """Write (or add) a layer's weight and bias gradients from d loss / d pre-activation."""
    if accumulate:
        layer.grad_weight.addmm_(pre.transposed, inputs)
        scratch = tape.bias_scratch[i]
        np.dot(tape.ones, pre.array, out=scratch)
        np.add(layer.grad_bias, scratch, out=layer.grad_bias)
    else:
        torch.mm(pre.transposed, inputs, out=layer.grad_weight)
        np.dot(tape.ones, pre.array, out=layer.grad_bias)  # column sums, ~5x faster than np.sum

"""The shared fast path (forceexp.core.dense) against autograd: stacks, gradients, Adam."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forceexp.core.dense import DenseStack, FastOptimizer, parse_dense

ACTIVATION = {"tanh": nn.Tanh, "relu": nn.ReLU}

# (input size, hidden widths, output size, activation, activation after the last layer)
SHAPES = {
    "ppo_64x64_tanh": (4, [64, 64], 2, "tanh", False),
    "dqn_256x256_relu": (4, [256, 256], 2, "relu", False),
    "sac_critic_256x256_relu": (4, [256, 256], 1, "relu", False),
    "depth1_linear": (7, [], 3, "tanh", False),
    "depth1_relu_out": (5, [], 6, "relu", True),
    "depth2_tanh_out": (5, [32], 8, "tanh", True),
    "depth3_relu_out": (6, [16, 24], 5, "relu", True),
    "depth3_tanh": (3, [16, 16], 1, "tanh", False),
}


def _mlp(shape: tuple, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    size, hidden, out, activation, output_activation = shape
    layers: list[nn.Module] = []
    for width in [*hidden, out]:
        layers += [nn.Linear(size, width), ACTIVATION[activation]()]
        size = width
    return nn.Sequential(*(layers if output_activation else layers[:-1]))


def _close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5) -> None:
    """Relative agreement, with the absolute floor scaled to the tensor's magnitude."""
    atol = rtol * max(float(expected.abs().max()), 1e-6)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol)


def _autograd(mlp: nn.Module, xs: list[torch.Tensor], gs: list[torch.Tensor]) -> tuple:
    """Autograd's parameter and input gradients of sum_k <mlp(x_k), g_k>."""
    xs = [x.clone().requires_grad_(True) for x in xs]
    loss = sum((mlp(x) * g).sum() for x, g in zip(xs, gs, strict=True))
    grads = torch.autograd.grad(loss, [*mlp.parameters(), *xs])
    n = len(list(mlp.parameters()))
    return grads[:n], grads[n:]


@pytest.mark.parametrize(
    ("name", "batch"),
    [(name, batch) for name in sorted(SHAPES) for batch in (1, 33, 256)]
    + [("dqn_256x256_relu", 4096), ("ppo_64x64_tanh", 4096)],
)
def test_forward_and_gradients_match_autograd(name: str, batch: int) -> None:
    mlp = _mlp(SHAPES[name])
    optim = FastOptimizer(torch.optim.Adam(mlp.parameters()))
    stack = DenseStack(mlp, optim)
    x, g = torch.randn(batch, stack.input_size), torch.randn(batch, stack.output_size)
    with torch.no_grad():
        expected_out = mlp(x)
    _close(stack.forward(x), expected_out)
    param_grads, (input_grad,) = _autograd(mlp, [x], [g])
    got_input_grad = stack.backward(g.clone(), input_grad=True)
    _close(got_input_grad, input_grad)
    for p, expected in zip(mlp.parameters(), param_grads, strict=True):
        _close(optim.grad(p), expected)
    stack.grad_out().copy_(g)  # the preallocated buffer gives the same gradients
    optim.zero_grad()
    assert stack.backward() is None
    for p, expected in zip(mlp.parameters(), param_grads, strict=True):
        _close(optim.grad(p), expected)


@pytest.mark.parametrize("name", ["dqn_256x256_relu", "depth3_relu_out", "depth2_tanh_out"])
def test_two_passes_accumulate_like_the_summed_loss(name: str) -> None:
    """One stack used twice in one loss (two slots), and a third pass on another batch size."""
    mlp = _mlp(SHAPES[name], seed=1)
    optim = FastOptimizer(torch.optim.Adam(mlp.parameters()))
    stack = DenseStack(mlp, optim)
    sizes = (64, 64, 17)
    xs = [torch.randn(b, stack.input_size) for b in sizes]
    gs = [torch.randn(b, stack.output_size) for b in sizes]
    for slot, x in enumerate(xs):
        stack.forward(x, slot=slot)
    stack.forward(torch.randn(64, stack.input_size), keep=False)  # inference disturbs nothing
    param_grads, input_grads = _autograd(mlp, xs, gs)
    for slot, g in enumerate(gs):
        got = stack.backward(g, input_grad=True, accumulate=slot > 0, slot=slot)
        _close(got, input_grads[slot])
    for p, expected in zip(mlp.parameters(), param_grads, strict=True):
        _close(optim.grad(p), expected)


def test_input_gradients_only_leave_parameter_gradients_alone() -> None:
    """A critic in an actor loss: d Q / d (states, actions) without touching its gradients."""
    mlp = _mlp(SHAPES["sac_critic_256x256_relu"], seed=2)
    optim = FastOptimizer(torch.optim.Adam(mlp.parameters()))
    stack = DenseStack(mlp, optim)
    x = torch.randn(256, 4)
    stack.forward(x)
    optim.flat_grad.fill_(3.0)
    _, (expected,) = _autograd(mlp, [x], [torch.full((256, 1), 1 / 256)])
    stack.grad_out().fill_(1 / 256)
    _close(stack.backward(input_grad=True, params=False), expected)
    assert bool((optim.flat_grad == 3.0).all())


def test_stack_without_optimizer_and_inference() -> None:
    mlp = _mlp(SHAPES["depth3_tanh"], seed=3)
    stack = DenseStack(mlp)
    x = torch.randn(10, 3)
    with torch.no_grad():
        _close(stack.forward(x, keep=False), mlp(x))
    stack.forward(x)
    _, (expected,) = _autograd(mlp, [x], [torch.ones(10, 1)])
    _close(stack.backward(torch.ones(10, 1), input_grad=True), expected)


def test_parameters_are_the_modules_own() -> None:
    """Updates of the module's parameters in place (optimizer, load_state_dict) are seen."""
    mlp = _mlp(SHAPES["depth2_tanh_out"], seed=4)
    stack = DenseStack(mlp)
    other = _mlp(SHAPES["depth2_tanh_out"], seed=5)
    mlp.load_state_dict(other.state_dict())
    x = torch.randn(8, 5)
    with torch.no_grad():
        _close(stack.forward(x), other(x))


@pytest.mark.parametrize(
    ("modules", "reason"),
    [
        ([nn.Linear(2, 3), nn.ELU(), nn.Linear(3, 1)], "ELU"),
        ([nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1)], "mixed"),
        ([nn.Linear(2, 3), nn.Linear(3, 1)], "without an activation"),
        ([nn.Linear(2, 3, bias=False)], "without bias"),
        ([nn.Tanh(), nn.Linear(2, 3)], "Tanh"),
        ([nn.Identity()], "no Linear"),
    ],
)
def test_unsupported_stacks_say_why(modules: list, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_dense(modules)


def test_nested_sequential_and_identity_are_accepted() -> None:
    mlp, head = _mlp(SHAPES["depth3_relu_out"]), nn.Linear(5, 2)
    linears, activation, output_activation = parse_dense([mlp, nn.Identity(), head])
    assert len(linears) == 4 and activation == "relu" and not output_activation


def _optimizers(
    fused: bool | None, adamw: bool
) -> tuple[list[nn.Module], torch.optim.Adam, torch.optim.Adam]:
    nets = [_mlp(SHAPES["ppo_64x64_tanh"], seed=6), _mlp(SHAPES["depth3_relu_out"], seed=7)]
    copies = [_mlp(SHAPES["ppo_64x64_tanh"], seed=6), _mlp(SHAPES["depth3_relu_out"], seed=7)]
    kind = torch.optim.AdamW if adamw else torch.optim.Adam

    def make(pair: list[nn.Module], **kwargs) -> torch.optim.Adam:
        groups = [  # two groups with their own hyperparameters
            dict(params=pair[0].parameters(), lr=3e-3),
            dict(params=pair[1].parameters(), lr=1e-3, betas=(0.8, 0.99), weight_decay=0.1),
        ]
        return kind(groups, eps=1e-5, **kwargs)

    return [*nets, *copies], make(nets), make(copies, fused=fused)


@pytest.mark.parametrize("adamw", [False, True])
@pytest.mark.parametrize("fused", [None, True])
def test_clipping_and_adam_match_torch(fused: bool | None, adamw: bool) -> None:
    """Several steps of clip + Adam against clip_grad_norm_ + torch.optim.Adam/AdamW."""
    (a, b, a_ref, b_ref), opt, ref = _optimizers(fused, adamw)
    fast = FastOptimizer(opt)
    stacks = [DenseStack(a, fast), DenseStack(b, fast)]
    for step in range(6):
        xs = [torch.randn(32, 4), torch.randn(32, 6)]
        gs = [torch.randn(32, 2) * 10, torch.randn(32, 5)]
        for stack, x, g in zip(stacks, xs, gs, strict=True):
            stack.forward(x)
            stack.backward(g)
        ref.zero_grad()
        sum((net(x) * g).sum() for net, x, g in zip((a_ref, b_ref), xs, gs, strict=True)).backward()
        max_norm = (None, 1.0, 1e6)[step % 3]
        if max_norm is None:
            params = [p for g in ref.param_groups for p in g["params"]]
            expected = float(
                torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
            )
            assert fast.clip_grad_norm(None) == pytest.approx((expected, expected), rel=1e-5)
        else:
            expected = float(
                nn.utils.clip_grad_norm_(
                    ref.param_groups[0]["params"] + ref.param_groups[1]["params"], max_norm
                )
            )
            norm, clipped = fast.clip_grad_norm(max_norm)
            assert norm == pytest.approx(expected, rel=1e-5)
            assert clipped == pytest.approx(min(expected, max_norm), rel=1e-5)
        fast.step()
        ref.step()
    for p, q in zip(
        [*a.parameters(), *b.parameters()], [*a_ref.parameters(), *b_ref.parameters()], strict=True
    ):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
        assert float(opt.state[p]["step"]) == float(ref.state[q]["step"]) == 6
        torch.testing.assert_close(
            opt.state[p]["exp_avg_sq"], ref.state[q]["exp_avg_sq"], rtol=1e-5, atol=1e-9
        )


def test_optimizers_coexist_and_learning_rate_override() -> None:
    """Two fast optimizers on their own parameters; ``step(lr)`` overrides the groups' lr."""
    nets = [_mlp(SHAPES["depth1_linear"], seed=8), _mlp(SHAPES["depth1_linear"], seed=9)]
    refs = [_mlp(SHAPES["depth1_linear"], seed=8), _mlp(SHAPES["depth1_linear"], seed=9)]
    fasts = [FastOptimizer(torch.optim.Adam(n.parameters(), lr=0.5)) for n in nets]
    slow = [
        torch.optim.Adam(n.parameters(), lr=lr) for n, lr in zip(refs, (0.01, 0.5), strict=True)
    ]
    stacks = [DenseStack(n, f) for n, f in zip(nets, fasts, strict=True)]
    for _ in range(3):
        x = torch.randn(5, 7)
        for stack, fast, net, opt, lr in zip(stacks, fasts, refs, slow, (0.01, None), strict=True):
            stack.forward(x)
            stack.backward(torch.ones(5, 3))
            fast.step(lr)
            opt.zero_grad()
            net(x).sum().backward()
            opt.step()
    for net, ref in zip(nets, refs, strict=True):
        for p, q in zip(net.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def test_non_adam_and_amsgrad_are_refused() -> None:
    params = list(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="not Adam"):
        FastOptimizer(torch.optim.SGD(params, lr=0.1))
    with pytest.raises(ValueError, match="amsgrad"):
        FastOptimizer(torch.optim.Adam(params, amsgrad=True))


def test_a_parameter_outside_the_optimizer_is_named() -> None:
    mlp = _mlp(SHAPES["depth2_tanh_out"])
    optim = FastOptimizer(torch.optim.Adam(mlp[0].parameters()))
    with pytest.raises(ValueError, match="not in this optimizer"):
        DenseStack(mlp, optim)


def test_denormals_are_flushed_inside_the_block_only() -> None:
    from forceexp.core.dense import denormals_flushed

    def denormal() -> float:
        return (torch.tensor(1e-30) * 1e-10).item()

    torch.set_flush_denormal(False)
    assert denormal() != 0.0
    with denormals_flushed():
        assert denormal() == 0.0
    assert denormal() != 0.0  # restored: other code (hypothesis, NumPy) sees IEEE floats


def test_a_training_phase_leaves_the_float_mode_alone() -> None:
    from forceexp import Agent

    torch.set_flush_denormal(False)
    agent = Agent.create(
        "dqn",
        states={"type": "float", "shape": (2,)},
        actions={"type": "int", "num_values": 2},
        learning_starts=0,
        batch_size=4,
        train_freq=1,
    )
    for _ in range(6):
        agent.act(states=[0.0, 1.0])
        agent.observe(reward=1.0, terminal=0, next_states=[1.0, 0.0])
    assert agent.updates > 0
    assert (torch.tensor(1e-30) * 1e-10).item() != 0.0


@pytest.mark.parametrize("rows", [1, 7, 64, 65, 300])  # NumPy products, then torch's
@pytest.mark.parametrize("name", ["dqn_256x256_relu", "depth2_tanh_out", "depth3_tanh"])
def test_numpy_inference_matches_the_module(name: str, rows: int) -> None:
    """``infer`` (the acting pass) gives the module's output and leaves kept passes alone."""
    mlp = _mlp(SHAPES[name], seed=6)
    stack = DenseStack(mlp)
    x = torch.randn(rows, stack.input_size)
    out = stack.forward(x)  # the kept pass's buffer
    kept = out.clone()
    got = stack.infer(torch.randn(rows, stack.input_size).numpy())
    assert isinstance(got, np.ndarray)
    assert got.shape == (rows, stack.output_size)
    with torch.no_grad():
        _close(torch.from_numpy(stack.infer(x.numpy())), mlp(x))
    assert torch.equal(out, kept)

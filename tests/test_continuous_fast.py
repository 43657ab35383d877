"""DDPG, TD3 and SAC on the shared fast path (agents/continuous_fast.py) against autograd."""

import copy

import numpy as np
import pytest
import torch

from forceexp import Agent
from forceexp.agents.continuous_fast import fast_unsupported

SMALL = {"type": "auto", "size": 32, "depth": 2, "activation": "relu"}
ACTIONS = {
    "steer": {"type": "float", "shape": (), "min_value": -2.0, "max_value": 2.0},
    "gas": {"type": "float", "shape": (2,), "min_value": 0.0, "max_value": 1.0},
}
STATE = {"position": {"type": "float", "shape": (3,)}, "speed": {"type": "float", "shape": ()}}
CASES = [
    ("sac", {}),
    ("sac", {"entropy_coef": 0.2, "target_update_interval": 2}),
    ("sac", {"network": {**SMALL, "activation": "tanh"}, "critic": {**SMALL, "size": [24, 16]}}),
    ("td3", {}),
    ("td3", {"policy_delay": 1, "target_policy_noise": 1.0, "target_noise_clip": 0.3}),
    ("dpg", {}),
]
PRIORITIZED = {"memory": {"capacity": 1000, "sampling": "prioritized"}}


def _pair(name, **kwargs):
    """Two agents alike but for ``fast_update``, with the same memory content."""
    options = {"states": STATE, "actions": ACTIONS, "network": SMALL, "critic": SMALL}
    options.update(seed=0, device="cpu", memory=1000, batch_size=32, learning_rate=3e-3)
    options.update(kwargs)
    agents = [Agent.create(name, fast_update=flag, **options) for flag in (True, False)]
    assert agents[0]._fast is not None and agents[1]._fast is None
    for agent in agents:
        rng = np.random.default_rng(0)
        for _ in range(4):
            size = 32
            agent.memory.add(
                np.zeros(size, dtype=np.int64),
                {"position": rng.standard_normal((size, 3)), "speed": rng.standard_normal(size)},
                {},
                {"steer": rng.uniform(-2, 2, size), "gas": rng.uniform(0, 1, (size, 2))},
                rng.standard_normal(size).astype(np.float32),
                rng.choice([0, 1, 2], size, p=[0.8, 0.1, 0.1]),
                {"position": rng.standard_normal((size, 3)), "speed": rng.standard_normal(size)},
                {},
            )
    return agents


def _modules(agent):
    names = ["actor", "critics", "critic_targets", "actor_target"]
    return [getattr(agent, n) for n in names if hasattr(agent, n)]


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_fast_steps_match_autograd(name, kwargs, prioritized):
    fast, slow = _pair(name, **kwargs, **(PRIORITIZED if prioritized else {}))
    for _ in range(6):
        batch, same = fast.memory.sample(32), slow.memory.sample(32)
        np.testing.assert_array_equal(batch.indices, same.indices)
        torch.testing.assert_close(batch.weights, same.weights)
        stats, errors = fast._gradient_step(batch)
        expected, expected_errors = slow._gradient_step(same)
        torch.testing.assert_close(stats, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(errors, expected_errors, rtol=1e-4, atol=1e-5)
        for agent, td in ((fast, errors), (slow, expected_errors)):
            if prioritized:
                agent.memory.update_priorities(batch.indices, td.numpy())
    for a, b in zip(_modules(fast), _modules(slow), strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    if name == "sac":
        torch.testing.assert_close(fast.log_alpha, slow.log_alpha, rtol=1e-4, atol=1e-6)
    # the optimizers' state is the same too (so checkpoints and a switch of paths agree)
    state, other = fast.actor_optimizer.state_dict(), slow.actor_optimizer.state_dict()
    for key, entry in state["state"].items():
        assert float(entry["step"]) == float(other["state"][key]["step"])
        torch.testing.assert_close(entry["exp_avg"], other["state"][key]["exp_avg"])


def _same_steps(first, second, steps):
    for _ in range(steps):
        batch = first.memory.sample(32)
        stats, errors = first._gradient_step(batch)
        expected, expected_errors = second._gradient_step(batch)
        torch.testing.assert_close(stats, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(errors, expected_errors, rtol=1e-4, atol=1e-5)
    for a, b in zip(_modules(first), _modules(second), strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_checkpoints_move_between_the_paths(name):
    """A state loaded in place (optimizer state replaced) continues alike on either path."""
    fast, slow = _pair(name, **({"policy_delay": 1} if name == "td3" else {}))  # see below
    for _ in range(3):
        fast._gradient_step(fast.memory.sample(32))
    # TD3's delay phase (and SAC's target-update phase) are not part of state_dict yet
    slow.load_state_dict(copy.deepcopy(fast.state_dict()))
    _same_steps(fast, slow, 3)
    for _ in range(2):
        slow._gradient_step(slow.memory.sample(32))
    fast.load_state_dict(copy.deepcopy(slow.state_dict()))
    _same_steps(slow, fast, 3)


@pytest.mark.parametrize("name", ["sac", "td3", "dpg"])
def test_fast_path_is_skipped_where_it_does_not_apply(name):
    layers = [{"type": "dense", "size": 16, "activation": "relu"}]
    box = {"type": "float", "shape": (2,), "min_value": -1.0, "max_value": 1.0}
    options = {"states": {"type": "float", "shape": (2,)}, "actions": box, "seed": 0}
    assert Agent.create(name, **options, device="cpu", network=SMALL)._fast is not None
    for other in (
        {"network": layers},
        {"network": SMALL, "critic": layers},
        {"network": {**SMALL, "activation": "elu"}},
        {"states": {"a": {"type": "float", "shape": (2,)}, "b": {"type": "int", "num_values": 3}}},
    ):
        agent = Agent.create(name, **{**options, "device": "cpu", "network": SMALL, **other})
        assert agent._fast is None
        agent.act({k: np.zeros(s.shape, s.dtype) for k, s in agent.state_specs.items})
    assert Agent.create(name, **options, device="cpu", fast_update=False)._fast is None
    agent = Agent.create(name, **options, device="cpu")
    agent.device = torch.device("cuda")  # the rule (agents on a GPU are built the same way)
    assert fast_unsupported(agent) == "the networks are on cuda"
    if torch.cuda.is_available():
        assert Agent.create(name, **options, device="cuda")._fast is None


@pytest.mark.parametrize("name", ["sac", "td3", "dpg"])
def test_fast_acting_matches_the_torch_modules(name):
    """The actor stack's inference pass acts as the modules do (the same noise draws)."""
    kwargs = {} if name == "sac" else {"exploration": 0.3}
    fast, slow = _pair(name, **kwargs)
    rng = np.random.default_rng(1)
    for size in (1, 5, 32):  # 32: the training batch size shares the stacks' inference buffers
        states = {"position": rng.standard_normal((size, 3)), "speed": rng.standard_normal(size)}
        states = {k: v.astype(np.float32) for k, v in states.items()}
        for deterministic in (False, True):
            options = {"independent": True, "deterministic": deterministic, "parallel": [0] * size}
            want = slow.act(states, **options)
            got = fast.act(states, **options)
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
        fast._gradient_step(fast.memory.sample(32))  # acting and training interleave
        slow._gradient_step(slow.memory.sample(32))

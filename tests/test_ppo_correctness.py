"""PPO details that decide learning quality: per-minibatch KL stop, one random stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forceexp import Agent

DISCRETE = {"type": "int", "num_values": 3}
CONTINUOUS = {"type": "float", "shape": (2,)}


def _agent(actions: dict, **kwargs) -> Agent:
    return Agent.create(
        "ppo",
        states={"type": "float", "shape": (4,)},
        actions=actions,
        parallel_interactions=2,
        rollout_length=32,
        minibatch_size=16,
        epochs=4,
        device="cpu",
        seed=0,
        **kwargs,
    )


def _optimizer_steps(agent: Agent) -> int:
    return int(next(iter(agent.optimizer.state.values()))["step"])


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("target_kl", "steps"), [(None, 16), (1e-12, 1)])
def test_target_kl_is_checked_on_every_minibatch_before_its_step(fast, target_kl, steps):
    """4 epochs x 4 minibatches; a tiny target stops at the 2nd minibatch, before its step."""
    agent = _agent(DISCRETE, fast_update=fast, target_kl=target_kl)
    assert (agent._fused is not None) == fast
    rng = np.random.default_rng(0)
    updated = False
    while not updated:
        agent.act(rng.standard_normal((2, 4)).astype(np.float32))
        updated = agent.observe(reward=rng.standard_normal(2), terminal=[0, 0])
    assert _optimizer_steps(agent) == steps
    agent.close()


@pytest.mark.parametrize("actions", [DISCRETE, CONTINUOUS])
def test_a_seed_means_one_run_whether_or_not_the_fast_path_is_on(actions):
    """Same seed and weights: the NumPy and torch actors sample the same actions."""
    fast, slow = _agent(actions, fast_update=True), _agent(actions, fast_update=False)
    assert fast._actor is not None and slow._actor is None
    slow.policy.load_state_dict(fast.policy.state_dict())
    states = np.random.default_rng(1).standard_normal((40, 2, 4)).astype(np.float32)
    taken = []
    for agent in (fast, slow):
        torch.manual_seed(7)
        taken.append(np.stack([agent.act(s, independent=True) for s in states]))
        agent.close()
    if actions is DISCRETE:
        assert np.array_equal(taken[0], taken[1])
        assert len(np.unique(taken[0])) == 3  # really sampled
    else:
        np.testing.assert_allclose(taken[0], taken[1], rtol=1e-5, atol=1e-6)

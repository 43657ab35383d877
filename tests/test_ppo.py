import numpy as np
import pytest
import torch

from forceexp import Agent, tags
from forceexp.core.buffers import Batch
from forceexp.core.fused import STEP_METRICS


def _agent(**kwargs):
    return Agent.create(
        "ppo",
        states={"type": "float", "shape": (3,)},
        actions={"type": "int", "num_values": 2},
        device="cpu",
        seed=0,
        **kwargs,
    )


@pytest.mark.parametrize("fast", [True, False])
def test_loss_pieces_at_the_start_of_an_update(fast):
    agent = _agent(fast_update=fast)
    states = torch.randn(64, 3)
    with torch.no_grad():
        actions, log_prob, value = agent.policy.act({"state": states}, {}, deterministic=False)
    returns = torch.randn(64)
    batch = Batch({"state": states}, {}, actions, log_prob, value, torch.randn(64), returns)
    if fast:
        step = agent._fused_minibatch_step(agent._fused_rows(batch), torch.arange(64), clip=0.2)
    else:
        step = agent._minibatch_step(batch, torch.arange(64), clip=0.2)
    stats = dict(zip(STEP_METRICS, step.tolist(), strict=True))
    # ratio is exactly 1 for the policy that collected the data
    assert abs(stats[tags.KL_DIVERGENCE]) < 1e-6
    assert stats[tags.CLIP_FRACTION] == 0.0
    assert abs(stats[tags.LOSS_POLICY]) < 1e-5  # -mean(normalized advantages) = 0
    expected_value_loss = float((value - returns).pow(2).mean())
    assert np.isclose(stats[tags.LOSS_VALUE], expected_value_loss, rtol=1e-5)
    assert stats[tags.UPDATE_NORM_CLIPPED] <= 0.5 + 1e-6


def test_update_runs_after_rollout_and_reports_metrics():
    agent = _agent(rollout_length=8, minibatch_size=4, epochs=2, parallel_interactions=2)
    updates = []
    for step in range(8):
        agent.act(np.random.randn(2, 3).astype(np.float32), parallel=[0, 1])
        updates.append(
            agent.observe(
                [1.0, 0.0],
                [0, int(step == 3)],
                parallel=[0, 1],
                next_states=np.zeros((2, 3), np.float32),
            )
        )
    assert updates == [False] * 7 + [True]
    assert agent.updates == 1
    assert agent.timesteps == 16
    assert agent.episodes == 1


def test_update_waits_for_next_act_without_next_states():
    agent = _agent(rollout_length=4, minibatch_size=4, epochs=1)
    results = []
    for _ in range(4):
        agent.act(np.zeros(3))
        results.append(agent.observe(reward=1.0))
    assert results == [False] * 4
    agent.act(np.zeros(3))  # supplies the bootstrap value; the update runs here
    assert agent.observe(reward=1.0) is True


def test_state_normalization_statistics_live_in_the_policy():
    agent = _agent(normalize_states=True)
    for _ in range(50):
        agent.act(np.full(3, 5.0) + np.random.randn(3))
        agent.observe(reward=0.0)
    mean = agent.policy.normalizers["state"].mean
    assert torch.allclose(mean, torch.full((3,), 5.0), atol=0.5)
    assert "normalizers.state.mean" in agent.policy.state_dict()

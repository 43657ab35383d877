"""Every agent on ``device='cuda'``: acts, learns and saves (skipped without a GPU; CI has none)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.environments.testing import IdentityEnvironment, TargetEnvironment

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
SMALL = {"seed": 0, "device": "cuda", "batch_size": 32, "learning_starts": 64}
RNN = {"type": "auto", "size": 16, "depth": 1, "rnn": 2}


@pytest.mark.parametrize(
    ("spec", "environment"),
    [
        ({"agent": "ppo", "seed": 0, "device": "cuda", "rollout_length": 32}, IdentityEnvironment),
        ({"agent": "a2c", "seed": 0, "device": "cuda", "rollout_length": 32}, IdentityEnvironment),
        ({"agent": "vpg", "seed": 0, "device": "cuda", "rollout_length": 32}, IdentityEnvironment),
        ({"agent": "ac", "seed": 0, "device": "cuda", "rollout_length": 32}, IdentityEnvironment),
        ({"agent": "trpo", "seed": 0, "device": "cuda", "rollout_length": 32}, IdentityEnvironment),
        ({"agent": "dqn", **SMALL}, IdentityEnvironment),
        ({"agent": "dueling_dqn", **SMALL}, IdentityEnvironment),
        ({"agent": "sac", **SMALL}, TargetEnvironment),
        ({"agent": "td3", **SMALL}, TargetEnvironment),
        ({"agent": "dpg", **SMALL}, TargetEnvironment),
        ({"agent": "dqn", **SMALL, "network": RNN}, IdentityEnvironment),  # stored internals
        ({"agent": "sac", **SMALL, "network": RNN}, TargetEnvironment),  # recurrent actor
        (  # recurrent TRPO: Fisher-vector products double-backward through the LSTM cell
            {"agent": "trpo", "seed": 0, "device": "cuda", "rollout_length": 32, "network": RNN},
            IdentityEnvironment,
        ),
    ],
)
def test_agent_trains_and_round_trips_on_cuda(tmp_path, spec, environment):
    runner = Runner(agent=spec, environment=environment, num_parallel=2, seed=0)
    runner.run(num_timesteps=400, use_tqdm=False)
    agent = runner.agent
    assert agent.device.type == "cuda" and runner.updates > 0
    states = np.zeros((2, *agent.state_specs["state"].shape), dtype=np.float32)
    expected = agent.act(states=states, independent=True, deterministic=True)
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    np.testing.assert_allclose(
        loaded.act(states=states, independent=True, deterministic=True), expected, rtol=1e-5
    )
    runner.close()

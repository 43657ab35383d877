"""agent.pretrain: replay and imitation objectives, error paths, the pretrain.py entry point."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from forceexp import Agent, Runner
from forceexp.environments import create
from forceexp.errors import CheckpointError, ConfigError
from forceexp.execution.evaluation import evaluate
from forceexp.observers.recorder import read_trace, write_trace

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"type": "float", "shape": (4,), "min_value": 0.0, "max_value": 1.0}
CHOICE = {"type": "int", "shape": (), "num_values": 4}


def _identity_traces(directory, episodes=20, length=8, seed=0, masked=False):
    """Optimal play on the identity task: the action equals the one-hot state's index."""
    rng = np.random.default_rng(seed)
    for episode in range(episodes):
        targets = rng.integers(0, 4, size=length)
        states = np.eye(4, dtype=np.float32)[targets]
        terminals = np.zeros(length, np.int64)
        terminals[-1] = 1
        masks = None
        if masked:  # allow the target and one neighbour only
            masks = {
                "action": np.eye(4, dtype=bool)[targets] | np.eye(4, dtype=bool)[(targets + 1) % 4]
            }
        write_trace(directory, episode, states, targets, np.ones(length), terminals, masks=masks)


def _ppo(**kwargs):
    options = dict(states=IDENTITY, actions=CHOICE, seed=0, device="cpu", learning_rate=3e-3)
    return Agent.create("ppo", **{**options, **kwargs})


def test_imitation_clones_the_recorded_policy(tmp_path):
    _identity_traces(tmp_path)
    agent = _ppo()
    metrics = agent.pretrain(
        tmp_path, num_iterations=20, num_traces=None, num_updates=10, objective="imitation"
    )
    assert metrics["losses/policy_loss"] < 0.1
    assert agent.timesteps == 20 * 160 and agent.episodes == 20 * 20
    actions = agent.act(np.eye(4, dtype=np.float32), parallel=[0, 0, 0, 0], independent=True)
    assert actions.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        values = agent.policy.value({"state": torch.eye(4)})
    assert torch.allclose(values, torch.full((4,), 4.0), atol=1.5)  # mean discounted return


def test_imitation_respects_masks(tmp_path):
    _identity_traces(tmp_path, masked=True)
    agent = _ppo()
    agent.pretrain(tmp_path, num_iterations=5, num_traces=None, objective="imitation")
    assert np.isfinite(agent.pretrain(tmp_path, 1, objective="imitation")["losses/policy_loss"])
    mask = np.array([[False, True, False, False]])
    action = agent.act(
        {"state": np.eye(4, dtype=np.float32)[:1], "action_mask": mask},
        parallel=[0],
        independent=True,
    )
    assert action.tolist() == [1]


def test_replay_runs_the_agents_own_update_on_recorded_rewards(tmp_path):
    _identity_traces(tmp_path)
    agent = _ppo(epochs=4)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    metrics = agent.pretrain(tmp_path, num_iterations=3, num_traces=2, num_updates=2)
    assert {"losses/policy_loss", "losses/value_loss", "losses/approx_kl"} <= set(metrics)
    assert agent.updates == 6 and agent.timesteps == 3 * 2 * 8
    changed = [
        not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True)
    ]
    assert any(changed)


def test_pretrain_reads_traces_written_by_the_recorder(tmp_path):
    runner = Runner(
        agent={"agent": "random", "seed": 0, "device": "cpu", "recorder": str(tmp_path)},
        environment="identity",
        num_parallel=2,
        seed=0,
    )
    runner.run(num_episodes=4, use_tqdm=False)
    runner.close()
    assert len(list(tmp_path.glob("trace-*.npz"))) == 4
    agent = _ppo()
    agent.pretrain(tmp_path, num_iterations=2, num_traces=None, objective="imitation")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_iterations": 0}, r"pretrain.num_iterations: 0 is invalid; expected an int >= 1"),
        ({"num_updates": 1.5}, r"pretrain.num_updates: 1.5 is invalid"),
        ({"num_traces": 0}, r"pretrain.num_traces: 0 is invalid"),
        ({"objective": "bc"}, r"pretrain.objective: 'bc' is invalid; expected 'replay' or"),
    ],
)
def test_bad_pretrain_arguments(tmp_path, kwargs, match):
    _identity_traces(tmp_path, episodes=1)
    with pytest.raises(ConfigError, match=match):
        _ppo().pretrain(**{"directory": tmp_path, "num_iterations": 1, **kwargs})


def test_pretrain_refuses_agents_without_a_policy(tmp_path):
    agent = Agent.create("random", states=IDENTITY, actions=CHOICE)
    with pytest.raises(ConfigError, match=r"agent 'random' has no trainable policy"):
        agent.pretrain(tmp_path, num_iterations=1)


def test_pretrain_refuses_an_empty_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"pretrain: no .npz trace files in"):
        _ppo().pretrain(tmp_path, num_iterations=1)


def test_pretrain_names_the_bad_file_and_key(tmp_path):
    _identity_traces(tmp_path, episodes=1)
    np.savez_compressed(
        tmp_path / "trace-000000001.npz",
        **{
            "states/state": np.zeros((2, 3)),
            "actions/action": [0, 1],
            "reward": [0, 0],
            "terminal": [0, 1],
        },
    )
    with pytest.raises(CheckpointError, match=r"000001.npz: states/state: .* Got shape \(2, 3\)"):
        _ppo().pretrain(tmp_path, num_iterations=1, num_traces=None)


def test_pretrain_refuses_an_episode_without_terminal(tmp_path):
    write_trace(tmp_path, 0, np.zeros((2, 4)), [0, 1], [1, 1], [0, 0])
    with pytest.raises(CheckpointError, match=r"the last episode has no terminal"):
        _ppo().pretrain(tmp_path, num_iterations=1)


@pytest.mark.slow
def test_pretrain_script_in_a_subprocess(tmp_path):
    traces, out = tmp_path / "traces", tmp_path / "run"
    _identity_traces(traces)
    command = [
        sys.executable,
        str(ROOT / "pretrain.py"),
        "env=identity",
        f"pretrain.directory={traces}",
        "pretrain.num_iterations=20",
        "pretrain.num_updates=10",
        "eval_episodes=3",
        f"hydra.run.dir={out}",
        "agent.learning_rate=3e-3",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["eval_return_mean"] == 8.0  # identity: 8 steps, all correct
    assert results["pretrain_timesteps"] == 20 * 160 and "pretrain/losses/policy_loss" in results


# --------------------------------------------------------------- done-when: CartPole cloning


def _play_and_record(agent, directory, episodes, num_envs=8):
    """Deterministic play of ``agent`` on CartPole, one trace per episode via write_trace."""
    envs = [create("CartPole-v1") for _ in range(num_envs)]
    written = 0
    while written < episodes:
        states = [env.reset(seed=1000 + written + i) for i, env in enumerate(envs)]
        steps = [{"s": [], "a": [], "r": [], "t": []} for _ in envs]
        done = np.zeros(num_envs, dtype=bool)
        while not done.all():
            idx = np.flatnonzero(~done)
            batch = np.stack([states[i] for i in idx])
            actions = agent.act(batch, parallel=idx, independent=True, deterministic=True)
            for row, i in enumerate(idx):
                steps[i]["s"].append(states[i])
                steps[i]["a"].append(actions[row])
                states[i], terminal, reward = envs[i].execute(actions[row])
                steps[i]["r"].append(reward)
                steps[i]["t"].append(terminal)
                done[i] = terminal > 0
        for episode in steps[: episodes - written]:
            write_trace(
                directory,
                written,
                np.stack(episode["s"]),
                np.stack(episode["a"]),
                episode["r"],
                episode["t"],
            )
            written += 1
    for env in envs:
        env.close()


@pytest.fixture(scope="module")
def cartpole_traces(tmp_path_factory):
    """Train PPO on CartPole once; return (recorder traces of its last 100 training episodes,
    write_trace traces of 100 deterministic episodes of the trained agent)."""
    torch.set_num_threads(1)
    timesteps = 100_000
    recorded = tmp_path_factory.mktemp("recorded")
    runner = Runner(
        agent={
            "agent": "ppo",
            "seed": 0,
            "device": "cpu",
            "lr_schedule": "linear",
            "clip_schedule": "linear",
            "schedule_timesteps": timesteps,
            "recorder": {"directory": str(recorded), "max_traces": 100},
        },
        environment="CartPole-v1",
        num_parallel=8,
        seed=0,
    )
    runner.run(num_timesteps=timesteps, use_tqdm=False)
    scripted = tmp_path_factory.mktemp("scripted")
    _play_and_record(runner.agent, scripted, episodes=100)
    runner.close()
    return recorded, scripted


def _clone_and_evaluate(directory):
    agent = Agent.create("ppo", environment="CartPole-v1", seed=1, device="cpu")
    agent.pretrain(directory, num_iterations=5, num_traces=None, objective="imitation")
    env = create("CartPole-v1")
    result = evaluate(agent, env, num_episodes=10, seed=123)
    env.close()
    return result["return_mean"]


@pytest.mark.slow
def test_imitation_from_100_recorded_cartpole_episodes(cartpole_traces):
    files = sorted(cartpole_traces[0].glob("trace-*.npz"))
    assert len(files) == 100  # max_traces kept the last 100 training episodes
    assert _clone_and_evaluate(cartpole_traces[0]) >= 400


@pytest.mark.slow
def test_imitation_from_100_deterministic_expert_episodes(cartpole_traces):
    files = sorted(cartpole_traces[1].glob("trace-*.npz"))
    assert len(files) == 100
    lengths = [len(np.load(f, allow_pickle=False)["terminal"]) for f in files]
    assert np.mean(lengths) >= 475  # the expert is good
    assert _clone_and_evaluate(cartpole_traces[1]) >= 400


def test_experiment_pretrain_with_composed_config(tmp_path):
    from hydra import compose, initialize_config_dir

    from forceexp.experiment import pretrain

    _identity_traces(tmp_path / "traces")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "pretrain",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                "env=identity",
                f"pretrain.directory={tmp_path / 'traces'}",
                "pretrain.num_iterations=2",
                "eval_episodes=2",
            ],
        )
    results = pretrain(cfg)
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == results
    assert results["pretrain_timesteps"] == 2 * 160 and results["eval_episodes"] == 2
    # the pretrained agent is saved so train.py +resume=<run dir> continues from it
    from forceexp import Agent
    from forceexp.agents.persistence import resume_directory

    resumed = Agent.load(resume_directory(tmp_path / "run"))
    assert resumed.timesteps == 2 * 160


def test_docs_examples_run(tmp_path, monkeypatch):
    import re

    monkeypatch.chdir(tmp_path)
    text = (ROOT / "docs" / "record_pretrain.md").read_text()
    walk, writer = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    walk = walk.replace("60_000", "512").replace("num_episodes=10", "num_episodes=1")
    exec(compile(walk, "record_pretrain.md", "exec"), {})
    assert 0 < len(list((tmp_path / "data" / "traces").glob("trace-*.npz"))) <= 100
    exec(compile(writer, "record_pretrain.md", "exec"), {})
    trace = read_trace(
        tmp_path / "data" / "expert" / "trace-000000000.npz",
        {"type": "float", "shape": (4,)},
        {"type": "int", "num_values": 2},
    )
    assert trace.terminal.tolist() == [0, 0, 1]


def test_observers_see_each_pretraining_iteration(tmp_path):
    from forceexp.observers.base import Observer

    class Collect(Observer):
        def __init__(self):
            self.metrics = []

        def on_update(self, agent, metrics):
            self.metrics.append(metrics)

    _identity_traces(tmp_path, episodes=2)
    collect = Collect()
    agent = _ppo(summarizer=collect)
    agent.pretrain(tmp_path, num_iterations=3, objective="imitation")
    assert len(collect.metrics) == 3 and "losses/value_loss" in collect.metrics[-1]


def test_seed_form_records_and_pretrains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = Agent.create(
        agent="ppo",
        environment="identity",
        parallel_interactions=2,
        device="cpu",
        recorder=dict(directory="data/traces", frequency=2),
    )
    runner = Runner(agent=agent, environment="identity", num_parallel=2, seed=0)
    runner.run(num_episodes=6, use_tqdm=False)
    runner.close()
    agent.close()
    assert len(list((tmp_path / "data" / "traces").glob("trace-*.npz"))) == 3
    agent = Agent.create(agent="ppo", environment="identity", device="cpu")
    agent.pretrain(directory="data/traces", num_iterations=5)
    assert agent.updates == 5


@pytest.mark.parametrize("bounding", ["clip", "squash"])
def test_imitation_of_bounded_float_actions(tmp_path, bounding):
    rng = np.random.default_rng(0)
    for episode in range(10):
        targets = rng.uniform(-0.9, 0.9, size=(16, 1)).astype(np.float32)
        write_trace(tmp_path, episode, targets, targets, np.zeros(16), [0] * 15 + [1])
    spec = {"type": "float", "shape": (1,), "min_value": -1.0, "max_value": 1.0}
    agent = Agent.create(
        "ppo",
        states=spec,
        actions=spec,
        bounded_actions=bounding,
        seed=0,
        device="cpu",
        learning_rate=3e-3,
    )
    agent.pretrain(tmp_path, num_iterations=60, num_traces=None, objective="imitation")
    states = np.array([[-0.5], [0.0], [0.5]], dtype=np.float32)
    actions = agent.act(states, parallel=[0, 0, 0], independent=True, deterministic=True)
    assert np.allclose(actions, states, atol=0.15)

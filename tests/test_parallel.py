"""Parallel environments in one process (batched/unbatched) and in worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest
import torch

from forceexp import Environment, Runner
from forceexp.environments.multiprocessing import ProcessEnvironment, exit_cause
from forceexp.environments.remote import RemoteEnvironmentError
from forceexp.errors import ConfigError, ProtocolError

torch.set_num_threads(1)
AGENT = {
    "agent": "ppo",
    "rollout_length": 16,
    "minibatch_size": 64,
    "epochs": 2,
    "network": {"type": "auto", "size": 16, "depth": 1},
    "device": "cpu",
}


@pytest.fixture
def agent_json(tmp_path: Path) -> str:
    path = tmp_path / "ppo1.json"
    path.write_text(json.dumps(AGENT))
    return str(path)


@pytest.fixture
def agent_yaml(tmp_path: Path) -> str:
    path = tmp_path / "ppo1.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in AGENT.items()))
    return str(path)


def assert_gone(pids: list[int]) -> None:
    """Every pid has exited and been reaped (no orphans, no zombies)."""
    deadline = time.monotonic() + 5
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"worker pid {pid} is still alive"
            time.sleep(0.05)


def test_seed_batched_local(agent_json: str) -> None:
    runner = Runner(agent=agent_json, environment="CartPole-v1", num_parallel=5)
    runner.run(num_episodes=10, batch_agent_calls=True)
    runner.close()
    assert 10 <= runner.episodes < 15
    assert runner.updates >= 1
    assert runner.timesteps == sum(runner.episode_timesteps)


def test_unbatched_local_and_sync_episodes(agent_json: str) -> None:
    runner = Runner(agent=agent_json, environment="CartPole-v1", num_parallel=3)
    runner.run(num_episodes=6, batch_agent_calls=False)
    assert runner.episodes >= 6
    assert runner.timesteps == sum(runner.episode_timesteps)
    runner.run(num_episodes=6, batch_agent_calls=True, sync_episodes=True)
    assert runner.episodes == 6  # each run counts its own episodes
    assert runner.timesteps == sum(runner.episode_timesteps)
    runner.close()


def test_seed_multiprocessing_unbatched(agent_yaml: str) -> None:
    runner = Runner(
        agent=agent_yaml, environment="CartPole-v1", num_parallel=5, remote="multiprocessing"
    )
    pids = [env.process.pid for env in runner.environments]
    assert len(set(pids)) == 5
    assert os.getpid() not in pids
    runner.run(num_episodes=10)
    assert 10 <= runner.episodes < 15
    assert runner.updates >= 1
    runner.close()
    assert_gone(pids)


def test_multiprocessing_batched_timesteps(agent_json: str) -> None:
    runner = Runner(
        agent=agent_json,
        environment={"environment": "CartPole-v1"},
        num_parallel=2,
        remote="multiprocessing",
        max_episode_timesteps=20,
        seed=3,
        blocking=True,
    )
    runner.run(num_timesteps=50, batch_agent_calls=True, sync_episodes=True)
    runner.run(num_timesteps=30, batch_agent_calls=False)
    runner.run(num_episodes=2, evaluation=True)
    pids = [env.process.pid for env in runner.environments]
    runner.close()
    runner.close()  # idempotent
    assert_gone(pids)
    assert max(runner.episode_timesteps) <= 20
    assert runner.timesteps == sum(runner.episode_timesteps)


def test_worker_killed_mid_episode(agent_json: str) -> None:
    runner = Runner(
        agent=agent_json, environment="CartPole-v1", num_parallel=2, remote="multiprocessing"
    )
    pids = [env.process.pid for env in runner.environments]

    killed = []

    def kill(_runner: Runner, _index: int) -> bool:
        if not killed:  # once: two episodes can end in the same step
            os.kill(pids[1], signal.SIGKILL)
            killed.append(pids[1])
        return True

    with pytest.raises(RemoteEnvironmentError, match=r"environments\[1\].*died \(signal SIGKILL"):
        runner.run(num_episodes=50, callback=kill)
    assert_gone(pids)  # the failed run stopped the other worker too


@pytest.mark.parametrize("batch", [True, False])
def test_ctrl_c_leaves_no_orphans(agent_json: str, batch: bool) -> None:
    runner = Runner(
        agent=agent_json, environment="CartPole-v1", num_parallel=2, remote="multiprocessing"
    )
    pids = [env.process.pid for env in runner.environments]

    def interrupt(_runner: Runner, _index: int) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(num_episodes=50, callback=interrupt, batch_agent_calls=batch)
    assert_gone(pids)


def test_worker_environment_error_is_reported() -> None:
    with pytest.raises(RemoteEnvironmentError, match=r"environments\[0\].*raised"):
        ProcessEnvironment({"environment": "CartPole-v1", "no_such_kwarg": 1})
    env = ProcessEnvironment("CartPole-v1", index=4)
    env.reset(seed=0)
    with pytest.raises(RemoteEnvironmentError, match=r"environments\[4\].*raised"):
        env.execute(7)  # out of range for CartPole's two actions
    env.close()
    assert_gone([env.process.pid])


def test_lambda_spec_runs_in_a_worker() -> None:
    limit = 5
    env = ProcessEnvironment(lambda: Environment.create("CartPole-v1", max_episode_timesteps=limit))
    env.reset(seed=0)
    assert env.max_episode_timesteps() == limit
    env.close()


SCRIPT = """
    import numpy as np
    from forceexp import Environment, Runner

    class Ticker(Environment):
        def states(self):
            return dict(type="float", shape=(2,))

        def actions(self):
            return dict(type="int", num_values=2)

        def reset(self):
            self.t = 0
            return np.zeros(2, dtype=np.float32)

        def execute(self, actions):
            self.t += 1
            return np.full(2, self.t, dtype=np.float32), self.t >= 4, 1.0

    print("MAIN RAN", flush=True)
    agent = dict(agent="ppo", rollout_length=8, minibatch_size=16, epochs=1, device="cpu",
                 network=dict(type="auto", size=8, depth=1))
    runner = Runner(agent=agent, environment="CartPole-v1", num_parallel=5,
                    remote="multiprocessing", max_episode_timesteps=10)
    runner.run(num_episodes=5, use_tqdm=False)
    runner.close()
    runner = Runner(agent=agent, environment=Ticker, num_parallel=2, remote="multiprocessing")
    runner.run(num_episodes=4, use_tqdm=False)
    runner.close()
    print("EPISODES", runner.episodes, flush=True)
"""


def test_worker_does_not_import_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A class of a ``__main__`` that would exit if imported still runs in a worker."""
    script = tmp_path / "main_script.py"
    script.write_text("raise SystemExit(3)\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    exec(textwrap.dedent(SCRIPT).split("print(")[0], main.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", main)
    env = ProcessEnvironment(main.Ticker, max_episode_timesteps=10)
    assert env.reset(seed=0).tolist() == [0.0, 0.0]
    assert env.execute(1)[0].tolist() == [1.0, 1.0]
    env.close()
    assert sys.modules["__main__"] is main


@pytest.mark.slow
def test_script_without_main_guard(tmp_path: Path) -> None:
    """Issue 16: the seed example and a custom class run as a plain script, no main guard."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("MAIN RAN") == 1  # no worker re-ran the script
    assert "EPISODES" in result.stdout


def test_exit_cause() -> None:
    assert exit_cause(-9) == "signal SIGKILL"
    assert exit_cause(3) == "exit code 3"
    assert exit_cause(None) == "still running"


def test_create_remote_multiprocessing() -> None:
    env = Environment.create("CartPole-v1", remote="multiprocessing")
    state = env.reset(seed=1)
    next_state, terminal, reward = env.execute(0)
    assert state.shape == next_state.shape == (4,)
    assert terminal == 0
    assert reward == 1.0
    env.send_execute(0)
    with pytest.raises(ProtocolError, match="has not been received"):
        env.send_execute(0)
    env.receive()
    with pytest.raises(ProtocolError, match="no call is pending"):
        env.receive()
    env.close()


def test_bad_arguments(agent_json: str) -> None:
    with pytest.raises(ConfigError, match="remote"):
        Runner(agent=agent_json, environment="CartPole-v1", remote="carrier-pigeon")
    with pytest.raises(ConfigError, match="remote"):
        Environment.create("CartPole-v1", remote="carrier-pigeon")
    with pytest.raises(ConfigError, match="context"):
        ProcessEnvironment("CartPole-v1", context="fork")
    with pytest.raises(ConfigError, match="instance cannot be copied"):
        Runner(
            agent=agent_json,
            environment=Environment.create("CartPole-v1"),
            remote="multiprocessing",
        )
    with pytest.raises(ConfigError, match=r"environments\[0\]: .*sent to a worker.*lock"):
        Runner(
            agent=agent_json,
            environment={"environment": "CartPole-v1", "lock": threading.Lock()},
            remote="multiprocessing",
        )
    with pytest.raises(ConfigError, match="needs port"):
        Runner(agent=agent_json, remote="socket-client")
    with pytest.raises(ConfigError, match=r"3 host\(s\) and 2 port\(s\)"):
        Runner(agent=agent_json, remote="socket-client", host="a,b,c", port=[1, 2])
    with pytest.raises(ConfigError, match="host"):
        Runner(agent=agent_json, remote="socket-client", host=3.5, port=1)


@pytest.mark.slow
def test_train_py_multiprocessing(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            str(root / "train.py"),
            "runner=multiprocessing",
            "runner.num_parallel=2",
            "runner.num_timesteps=100",
            "runner.use_tqdm=false",
            "eval_episodes=1",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["timesteps"] == 100

"""MLflow tracker: a real SQLite store in tmp_path, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from forceexp import Agent, Environment, Runner, tags
from forceexp.callbacks import MlflowStore
from forceexp.command import describe_run
from forceexp.compare import Group, config_name, load_groups, main, smooth, strip_common
from forceexp.errors import ConfigError
from forceexp.observers.run_info import RunInfo, run_name, sweep_keys
from forceexp.observers.tracker import (
    OVERRIDES_TAG,
    MlflowTracker,
    ensure_experiment,
    flatten,
    store_uri,
    track,
)

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = ("0.001", "0.0003")  # as Hydra writes 1e-3 and 3e-4 in the jobs' overrides


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module's fast tests (creating tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def _cfg(tmp_path: Path, uri: str, experiment: str, **tracker: object) -> object:
    return OmegaConf.create(
        {
            "task_name": "unit",
            "run_name": None,
            "seed": 3,
            "agent": {"_target_": "forceexp.agents.ppo.PPOAgent", "learning_rate": 1e-3},
            "env": {"environment": "CartPole-v1"},
            "paths": {"output_dir": str(tmp_path / "run")},
            "saver": {"directory": str(tmp_path / "run" / "checkpoints")},
            "tracker": {"tracking_uri": uri, "experiment": experiment, **tracker},
        }
    )


def _short_run(tracker: object, **observers: object) -> Agent:
    env = Environment.create("CartPole-v1", max_episode_timesteps=30)
    agent = Agent.create(
        "ppo",
        environment=env,
        rollout_length=32,
        minibatch_size=32,
        epochs=1,
        seed=0,
        device="cpu",
        **observers,
    )
    tracker.watch(agent)
    runner = Runner(agent=agent, environment=env)
    runner.run(num_timesteps=96, use_tqdm=False)
    runner.close()
    return agent


def test_track_logs_name_tags_metrics_and_artifacts(tmp_path: Path, uri: str) -> None:
    cfg = _cfg(tmp_path, uri, "unit", tags={"purpose": "test"})
    run_dir = tmp_path / "run"
    info = describe_run(cfg)
    assert info.name == "ppo-CartPole-v1-s3"
    board = tmp_path / "run" / "tensorboard"
    with track(cfg, info) as tracker:
        agent = _short_run(
            tracker,
            summarizer={"directory": str(board), "filename": info.name},
            saver={"directory": str(run_dir / "checkpoints"), "frequency": 2},
        )
        agent.save(run_dir / "export", format="numpy_policy")
        agent.close()
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / ".hydra" / "config.yaml").write_text("seed: 3\n")
        (run_dir / "results.json").write_text(
            json.dumps({"eval_return_mean": 12.5, "steps_per_second": 99.0, "timesteps": 96})
        )
    client = MlflowClient(cfg.tracker.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "ppo-CartPole-v1-s3"
    assert run.data.params["agent.learning_rate"] == "0.001"
    assert run.data.params["tracker.experiment"] == "unit"
    found = run.data.tags
    assert found["purpose"] == "test"
    assert (found["agent"], found["env"], found["seed"], found["task_name"]) == (
        "ppo",
        "CartPole-v1",
        "3",
        "unit",
    )
    assert len(found["git_commit"]) in (40, len("unknown"))
    assert found["mlflow.source.git.commit"] == found["git_commit"]
    assert found["git_dirty"] in ("true", "false", "none")
    assert found["command"] and found["mlflow.source.name"] and found["mlflow.user"]
    history = client.get_metric_history(run.info.run_id, tags.EPISODE_RETURN)
    assert history
    assert all(0 < m.step <= 96 and 1 <= m.value <= 30 for m in history)
    losses = client.get_metric_history(run.info.run_id, tags.LOSS_TOTAL)
    assert sorted({m.step for m in losses}) == [32, 64, 96]
    # one SPS: the MLflow values are the TensorBoard values, update by update
    speeds = client.get_metric_history(run.info.run_id, tags.STEPS_PER_SECOND)
    in_mlflow = sorted((m.step, m.value) for m in speeds if m.step < 96 or m.value != 99.0)
    events = EventAccumulator(str(board / info.name))
    events.Reload()
    in_board = [(e.step, e.value) for e in events.Scalars(tags.STEPS_PER_SECOND)]
    assert [s for s, _ in in_mlflow] == [s for s, _ in in_board] == [32, 64, 96]
    assert [v for _, v in in_mlflow] == pytest.approx([v for _, v in in_board], rel=1e-6)
    assert run.data.metrics[tags.EVAL_RETURN] == 12.5  # results.json, under the vocabulary
    assert run.data.metrics[tags.STEPS_PER_SECOND] == 99.0
    assert run.data.metrics["results/timesteps"] == 96
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {".hydra", "results.json", "tensorboard", "model", "policy"}
    listed = {a.path for a in client.list_artifacts(run.info.run_id, f"tensorboard/{info.name}")}
    assert any("events.out.tfevents" in path for path in listed)
    models = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert models == {"model/agent-3.pt"}  # the final checkpoint only (updates 2 and 3 saved)
    policy = {a.path for a in client.list_artifacts(run.info.run_id, "policy")}
    assert policy == {"policy/agent.policy.json", "policy/agent.policy.npz"}
    hydra_files = {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    assert hydra_files == {".hydra/config.yaml"}
    store_dir = Path(uri.removeprefix("sqlite:///")).parent
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(store_dir)


def test_run_names_and_sweep_keys() -> None:
    swept = ["agent.learning_rate=0.001", "seed=1", "+env.x=2"]
    assert run_name("ppo", "cartpole", swept, 1) == "ppo-cartpole-learning_rate=0.001-x=2-s1"
    assert run_name("dqn", "CartPole-v1", [], None) == "dqn-CartPole-v1"
    assert run_name("ppo", "a/b", ["agent=ppo", "x=a b"], 0) == "ppo-a_b-x=a_b-s0"
    overrides = ["agent.learning_rate=1e-3,3e-4", "seed=0,1", "agent.layers=[64,64]", "x=range(3)"]
    assert sweep_keys([*overrides, "tracker=mlflow"]) == {"agent.learning_rate", "seed", "x"}


def test_failed_run_is_marked_failed(tmp_path: Path, uri: str) -> None:
    cfg = _cfg(tmp_path, uri, "failing")
    with pytest.raises(RuntimeError, match="boom"), track(cfg, describe_run(cfg)):
        raise RuntimeError("boom")
    client = MlflowClient(cfg.tracker.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("failing").experiment_id])
    assert run.info.status == "FAILED"


def test_no_tracker_yields_a_null_tracker(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"tracker": None, "paths": {"output_dir": str(tmp_path)}})
    info = RunInfo("x", "ppo", "env", 0, "unit", "python train.py", "train.py")
    with track(cfg, info) as tracker:
        _short_run(tracker).close()
    assert not (tmp_path / "mlflow.db").exists()


def test_experiment_creation_is_idempotent_and_batched_params(tmp_path: Path, uri: str) -> None:
    default = store_uri(None, tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve() / 'outputs' / 'mlflow.db'}"
    assert (tmp_path / "outputs").is_dir()
    first = ensure_experiment(uri, "same")
    assert ensure_experiment(uri, "same") == first
    tracker = MlflowTracker(uri, "same", run_name="many")
    tracker.log_params({f"p{i}": i for i in range(250)})
    tracker.end()
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert len(run.data.params) == 250
    assert run.info.run_name == "many"
    assert flatten({"a": {"b": [1, {"c": None}]}}) == {"a.b.0": "1", "a.b.1.c": "None"}


@pytest.mark.parametrize(
    ("uri", "match"),
    [("file:///tmp/mlruns", "refuses its old file store"), ("./mlruns", "http"), (5, "5")],
)
def test_bad_tracking_uri_raises(uri: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        store_uri(uri, ".")


def test_unknown_tracker_key_raises(tmp_path: Path, uri: str) -> None:
    with (
        pytest.raises(ConfigError, match="keys tracking_uri, experiment, tags"),
        track(_cfg(tmp_path, uri, "unit", url="x"), describe_run(_cfg(tmp_path, uri, "unit"))),
    ):
        pass


def test_compare_errors(tmp_path: Path, uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    ensure_experiment(uri, "present")
    with pytest.raises(ConfigError, match=r"no experiment 'absent' .*found \[.*'present'"):
        load_groups(uri, "absent", "eval_return_mean")
    assert main(["--tracking-uri", uri, "--experiment", "present"]) == 1
    assert "no finished runs" in capsys.readouterr().err
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert main([]) == 2
    finally:
        os.chdir(cwd)
    assert "no MLflow store at outputs/mlflow.db" in capsys.readouterr().err
    assert config_name("agent.lr=1 seed=2 +x=1") == "agent.lr=1 +x=1"
    assert config_name("seed=2") == "(defaults)"


def test_strip_common_and_smooth() -> None:
    groups = [Group("lr=1 steps=9 x=1"), Group("lr=2 steps=9"), Group("steps=9")]
    assert strip_common(groups) == ["steps=9"]
    assert [g.name for g in groups] == ["lr=1 x=1", "lr=2", "(defaults)"]
    assert smooth(np.array([2.0, 4.0, 6.0, 8.0]), 2).tolist() == [2.0, 3.0, 5.0, 7.0]
    assert smooth(np.array([1.0]), 1).tolist() == [1.0]


@pytest.mark.slow
def test_multirun_2x2_logs_four_runs_and_compares(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "agent.learning_rate=1e-3,3e-4",
        "seed=0,1",
        "tracker=mlflow",
        "summarizer=tensorboard",
        "task_name=sweep",
        "runner.num_timesteps=256",
        "runner.num_parallel=2",
        "runner.use_tqdm=false",
        "agent.rollout_length=64",
        "agent.epochs=1",
        "eval_episodes=1",
        "hydra.sweep.dir=multirun",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {f"ppo-cartpole-learning_rate={lr}-s{seed}" for lr in LEARNING_RATES for seed in (0, 1)}
    boards = list((tmp_path / "multirun").glob("*/tensorboard/*"))
    assert {board.name for board in boards} == names
    events = EventAccumulator(str(boards[0]))
    events.Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    infos = HParamsPluginData.FromString(content).experiment.hparam_infos
    assert {info.name for info in infos if info.differs} == {"agent.learning_rate", "seed"}
    uri = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert {r.info.run_name for r in runs} == names
    assert {r.data.tags["forceexp.sweep_dir"] for r in runs} == {str(tmp_path / "multirun")}
    assert all("seed=" in r.data.tags[OVERRIDES_TAG] for r in runs)
    for run in runs:
        found = run.data.tags
        assert (found["agent"], found["env"], found["task_name"]) == ("ppo", "cartpole", "sweep")
        assert found["command"].startswith("python train.py ")
        assert f"seed={found['seed']}" in found["command"].split()
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "tensorboard")}
        assert artifacts == {f"tensorboard/{run.info.run_name}"}
        assert {tags.EVAL_RETURN, tags.STEPS_PER_SECOND, tags.LOSS_POLICY} <= set(run.data.metrics)
    png = tmp_path / "curves.png"
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        assert main(["--experiment", "sweep", "--plot", str(png)]) == 0
    finally:
        os.chdir(cwd)
    groups = load_groups(uri, "sweep", "eval_return_mean")
    assert sorted(len(g.run_ids) for g in groups) == [2, 2]
    assert all(sorted(g.seeds) == ["0", "1"] for g in groups)
    assert png.stat().st_size > 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.socket
def test_tracker_logs_to_a_real_mlflow_server(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "served")]
    server = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        tracker = MlflowTracker(store_uri(url, tmp_path), "served", run_name="remote")
        tracker.log_params({"agent.learning_rate": 0.001})
        tracker.log_metrics({tags.EPISODE_RETURN: 9.0}, step=5)
        (tmp_path / "results.json").write_text("{}")
        tracker.log_artifacts(tmp_path / "results.json")
        tracker.end()
        client = MlflowClient(url)
        run = client.get_run(tracker.run_id)
        assert run.data.params == {"agent.learning_rate": "0.001"}
        (point,) = client.get_metric_history(tracker.run_id, tags.EPISODE_RETURN)
        assert (point.step, point.value) == (5, 9.0)
        assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["results.json"]
        assert list((tmp_path / "served").rglob("results.json"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


JOB = """
import sys
from forceexp.observers.tracker import MlflowTracker
tracker = MlflowTracker(sys.argv[1], "race", run_name=sys.argv[2])
tracker.log_metrics({"x": 1.0}, step=1)
tracker.end()
"""


@pytest.mark.slow
def test_callback_creates_store_before_parallel_jobs(tmp_path: Path) -> None:
    config = OmegaConf.create({"task_name": "race", "hydra": {"runtime": {"cwd": str(tmp_path)}}})
    MlflowStore(tracking_uri=None, experiment=None).on_multirun_start(config)
    uri = f"sqlite:///{tmp_path.resolve() / 'outputs' / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("race")
    assert experiment is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, uri, f"job{i}"], env=env, text=True, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]
    errors = [job.communicate(timeout=120)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], errors
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["job0", "job1"]


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_into_one_mlflow_store(tmp_path: Path) -> None:
    """``-m hydra/launcher=joblib`` on a fresh store: every job lands in MLflow."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "agent=ppo,dqn",
        "env=identity",
        "seed=0,1",
        "tracker=mlflow",
        "task_name=joblib",
        "runner.num_timesteps=256",
        "runner.use_tqdm=false",
        "eval_episodes=1",
        "hydra.sweep.dir=multirun",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Joblib" in done.stdout + done.stderr  # the launcher that ran the jobs
    client = MlflowClient(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("joblib").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert len(list((tmp_path / "multirun").glob("*/results.json"))) == 4

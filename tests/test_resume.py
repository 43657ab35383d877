"""Interrupted runs continue: ``+resume=auto``, ``run_state.json``, ``benchmark --resume``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forceexp.benchmark import grid_status, parse_args, resumable
from forceexp.errors import CheckpointError, ConfigError
from forceexp.execution.run_state import RunState
from forceexp.observers.run_info import RunInfo
from forceexp.resume import resume_source

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 60_000
TRAIN = [
    sys.executable,
    str(ROOT / "train.py"),
    "agent=ppo",
    "env=cartpole",
    f"runner.num_timesteps={BUDGET}",
    "runner.use_tqdm=false",
    "saver=checkpoint",
    "saver.unit=timesteps",
    "saver.frequency=4000",
    "saver.max_checkpoints=1",
    "evaluation.frequency=5000",
    "evaluation.num_episodes=2",
    "evaluation.keep_best=true",
    "eval_episodes=2",
    "+resume=auto",
]


def run_state(directory: Path) -> RunState | None:
    try:
        return RunState.load(directory / "checkpoints")
    except CheckpointError:  # caught mid-rename: look again
        return None


def test_a_killed_run_continues_and_reports_the_whole_run(tmp_path):
    """SIGKILL a real train.py after a few checkpoints, run it again: one run's results."""
    command = [*TRAIN, f"hydra.run.dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        state = run_state(tmp_path)
        if state is not None and state.timesteps >= 12_000 and state.evaluations:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "results.json").exists()
    killed = RunState.load(tmp_path / "checkpoints")
    assert killed is not None and 12_000 <= killed.timesteps < BUDGET
    (line,) = grid_status(tmp_path)  # what `benchmark --status` prints for the folder
    assert (
        f"ppo cartpole seed 0: checkpoint at {killed.timesteps:,} timesteps of {BUDGET:,}" in line
    )
    assert "in 1 segment(s); ~" in line and line.endswith(" h left")

    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["timesteps"] == BUDGET
    assert results["resumed_at"] == [killed.timesteps]
    assert results["stop_reason"] == f"budget: {BUDGET} timesteps"
    assert results["episodes"] > killed.episodes
    assert results["wall_seconds"] > killed.wall_seconds
    # the curve starts in the first segment; the evaluations go on where they left off
    assert results["train_curve"][0][0] < killed.timesteps
    steps = [e["timesteps"] for e in results["evaluations"]]
    assert steps[: len(killed.evaluations)] == [int(t) for t, _ in killed.evaluations]
    assert steps == sorted(steps) and steps[-1] == BUDGET and len(steps) >= 11
    assert all(b - a >= 5000 for a, b in itertools.pairwise(steps[:-1]))  # last: the final
    best = max(results["evaluations"], key=lambda e: (e["return_mean"], e["timesteps"]))
    assert results["best_eval_timesteps"] == best["timesteps"]
    (line,) = grid_status(tmp_path)
    assert f"finished, eval {results['eval_return_mean']:.1f} after {BUDGET:,} timesteps" in line

    # a finished run is not trained again
    again = subprocess.run(
        command, cwd=tmp_path, env=env, check=True, capture_output=True, text=True, timeout=120
    )
    assert "finished already" in again.stdout + again.stderr
    assert json.loads((tmp_path / "results.json").read_text()) == results


def job(*overrides: str) -> RunInfo:
    return RunInfo("run", "ppo", "cartpole", 0, "train", "", "train.py", overrides)


def test_auto_resume_refuses_another_jobs_folder(compose_cfg, tmp_path):
    cfg = compose_cfg("saver=checkpoint", "+resume=auto")
    RunState(["seed=1"], timesteps=100).save(tmp_path / "checkpoints")
    with pytest.raises(ConfigError, match=r"holds the run of \['seed=1'\], not of this job"):
        resume_source(cfg, tmp_path, job("seed=0", "+resume=auto"))
    assert resume_source(cfg, tmp_path, job("seed=1", "+resume=auto")) == (None, None)
    (tmp_path / "results.json").write_text('{"eval_return_mean": 1')  # the finished run's, cut
    with pytest.raises(ConfigError, match="cannot read the run's files"):
        resume_source(cfg, tmp_path, job("seed=1", "+resume=auto"))
    (tmp_path / "checkpoints" / "run_state.json").unlink()
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"without .*run_state\.json"):
        resume_source(cfg, tmp_path, job("seed=1"))


def test_auto_resume_needs_a_checkpoint_saver(compose_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"resume=auto: .* add saver=checkpoint"):
        resume_source(compose_cfg("+resume=auto"), tmp_path, job())
    cfg = compose_cfg("saver=checkpoint", "saver.format=numpy", "+resume=auto")
    with pytest.raises(ConfigError, match="saver=checkpoint"):
        resume_source(cfg, tmp_path, job())


def test_auto_resume_starts_afresh_in_an_empty_folder(compose_cfg, tmp_path):
    from forceexp.experiment import train

    results = train(compose_cfg("saver=checkpoint", "+resume=auto"))
    assert results["timesteps"] == 256 and "resumed_at" not in results
    state = RunState.load(tmp_path / "checkpoints")  # written with the final checkpoint
    assert state is not None and state.timesteps == 256
    assert len(state.episode_returns) == results["episodes"]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"overrides": [], "timesteps": -1}', "timesteps=-1 has the wrong type"),
        ('{"overrides": [], "episode_returns": [1.0, "x"]}', "episode_returns="),
        ('{"overrides": [], "best": [10]}', "best=\\[10\\]"),
        ('{"overrides": [], "extra": 1}', "unknown keys \\['extra'\\]"),
        ('{"timesteps": 3}', "no 'overrides'"),
        ("[1, 2]", "expected a JSON object"),
        ("{not json", "unreadable"),
        ('{"overrides": ["a"], "episode_returns": [1.0, 2', "unreadable"),  # truncated
        ("[" * 100_000 + "]" * 100_000, "unreadable \\(RecursionError: "),  # nested too deep
        ('{"overrides": [], "wall_seconds": 1e999}', "wall_seconds=inf"),  # not finite
    ],
)
def test_run_state_is_checked_on_read(tmp_path, text, error):
    (tmp_path / "run_state.json").write_text(text)
    with pytest.raises(CheckpointError, match=error):
        RunState.load(tmp_path)


def test_run_state_round_trip(tmp_path):
    state = RunState(
        ["seed=3"],
        timesteps=40,
        episodes=2,
        wall_seconds=1.5,
        episode_returns=[1.0, 2.5],
        episode_lengths=[20, 20],
        evaluations=[[20, 3.0]],
        best=[20, 3.0],
        next_evaluation=40,
        resumed_at=[20],
    )
    state.save(tmp_path)
    assert RunState.load(tmp_path) == state
    assert RunState.load(tmp_path / "elsewhere") is None
    state.episode_returns.append(float("nan"))  # not JSON: refused, the old file stays
    with pytest.raises(ValueError, match="not JSON compliant"):
        state.save(tmp_path)
    assert len(RunState.load(tmp_path).episode_returns) == 2


def test_benchmark_resume_overrides():
    args = parse_args(["--resume", "--out", "x", "--checkpoint-every", "1000", "--", "a=1"])
    assert resumable(args) == [
        "a=1",
        "+resume=auto",
        "saver=checkpoint",
        "saver.unit=timesteps",
        "saver.frequency=1000",
        "saver.memory=true",
        "saver.max_checkpoints=1",
    ]
    own = parse_args(["--resume", "--out", "x", "--", "saver=checkpoint"])
    assert resumable(own) == ["saver=checkpoint", "+resume=auto"]
    with pytest.raises(ConfigError, match="give --out"):
        resumable(parse_args(["--resume"]))
    with pytest.raises(ConfigError, match="--checkpoint-every: 0 is invalid"):
        resumable(parse_args(["--resume", "--out", "x", "--checkpoint-every", "0"]))


def test_benchmark_resume_keeps_finished_runs_and_guards_the_grid(tmp_path):
    """A real two-job multirun, run again: nothing retrained; another grid is refused."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "grid"

    def benchmark(seeds: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "forceexp.benchmark", "--seeds", seeds, "--resume"]
        command += ["--out", str(out), "--checkpoint-every", "512", "--"]
        command += ["runner.num_timesteps=1024", "eval_episodes=2"]
        return subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    first = benchmark("0-1")
    assert first.returncode == 0, first.stderr[-3000:]
    results = {p: p.read_text() for p in sorted(out.glob("*/results.json"))}
    assert len(results) == 2
    assert all((p.parent / "checkpoints" / "run_state.json").is_file() for p in results)
    again = benchmark("0-1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("finished already") == 2
    assert {p: p.read_text() for p in results} == results
    assert "cartpole,ppo,0 1," in (out / "results.csv").read_text()
    status = subprocess.run(
        [sys.executable, "-m", "forceexp.benchmark", "--status", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert [line.split(", eval")[0] for line in status] == [
        "0: ppo cartpole seed 0: finished",
        "1: ppo cartpole seed 1: finished",
    ]
    other = benchmark("1-2")  # job 0 would be seed 1 in seed 0's folder
    assert "not of this job" in other.stdout + other.stderr
    assert {p: p.read_text() for p in results} == results


def test_benchmark_status_names_what_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match="no job folder"):
        grid_status(tmp_path)
    job = tmp_path / "3" / ".hydra"
    job.mkdir(parents=True)
    (job / "overrides.yaml").write_text("seed: [\n")
    with pytest.raises(ConfigError, match=str(job / "overrides.yaml")):
        grid_status(tmp_path)
    (job / "overrides.yaml").write_text("- agent=dqn\n- seed=3\n")
    assert grid_status(tmp_path) == ["3: dqn cartpole seed 3: started, no checkpoint yet"]
    checkpoints = tmp_path / "3" / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "run_state.json").write_text('{"overrides": [], "timesteps": "many"}')
    (line,) = grid_status(tmp_path)  # a damaged state is listed, not raised: others still show
    assert (
        line.startswith("3: dqn cartpole seed 3: checkpoint unreadable (") and "timesteps" in line
    )
    RunState(["agent=dqn", "seed=3"], timesteps=500, wall_seconds=10.0).save(checkpoints)
    assert grid_status(tmp_path) == [  # no composed config.yaml: no budget, no time left
        "3: dqn cartpole seed 3: checkpoint at 500 timesteps, 10 s trained in 1 segment(s)"
    ]
    (tmp_path / "3" / "results.json").write_text('{"eval_return_mean": 12.5}')
    assert grid_status(tmp_path) == [
        "3: dqn cartpole seed 3: finished, eval 12.5 after ? timesteps, ? s"
    ]

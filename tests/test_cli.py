"""Slow subprocess tests of the command-line entry points."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_py_writes_results_json(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        "agent=ppo",
        "env=cartpole",
        "runner.num_timesteps=1024",
        "eval_episodes=2",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["timesteps"] == 1024
    assert {
        "eval_return_mean",
        "eval_return_std",
        "episodes",
        "wall_seconds",
        "steps_per_second",
        "solved_timesteps",
        "solved_seconds",
    } <= set(results)
    assert results["solve_return"] == 475.0  # CartPole-v1's registered reward threshold
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert (run_dir / "train.log").exists()


@pytest.mark.slow
def test_misspelled_override_fails_clearly(tmp_path):
    cmd = [sys.executable, "train.py", "agent.learnin_rate=0.1", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Key 'learnin_rate' is not in struct" in proc.stderr


@pytest.mark.slow
def test_optuna_sweep_runs_two_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep_dir = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hparams_search=ppo_optuna",
        "env=identity",
        "hydra.sweeper.n_trials=2",
        "runner.num_timesteps=512",
        "runner.num_parallel=2",
        "runner.use_tqdm=false",
        "eval_episodes=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted(sweep_dir.glob("*/results.json"))
    assert len(results) == 2
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_value" in best


def run_cli(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` (train.py, pretrain.py) from ``cwd`` with this checkout on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / script), *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "overrides", "expected"),
    [
        ("train.py", ["experiment=foo"], "experiment: unknown option 'foo'; Valid: cartpole_fast"),
        ("train.py", ["tuning=ppo_acrobat"], "did you mean 'ppo_acrobot'? Valid: ddpg_pendulum"),
        ("train.py", ["+agent.foo=1"], "Error: agent 'ppo': got an unexpected keyword argument"),
        ("pretrain.py", [], "Error: Missing mandatory value: pretrain.directory"),
    ],
)
def test_config_errors_are_one_line_and_leave_no_run_dir(tmp_path, script, overrides, expected):
    proc = run_cli(script, *overrides, "runner.num_timesteps=64", cwd=tmp_path)
    assert proc.returncode == 1
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(tmp_path.iterdir()) == []  # no outputs/<task>/<time> folder left behind

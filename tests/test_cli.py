"""Subprocess tests of the command-line entry points (the long ones marked slow)."""

import json
import os
import re
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
    assert "Run name: ppo-cartpole-s0" in (run_dir / "train.log").read_text()


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
        ("train.py", ["tuning=ppo_acrobat"], "did you mean 'ppo_acrobot'? Valid: a2c_cartpole"),
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


@pytest.mark.slow
def test_joblib_multirun_writes_each_result_and_ends_with_a_summary(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    overrides = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1"]
    overrides += ["env=identity", "runner.num_timesteps=256", "eval_episodes=2"]
    proc = run_cli("train.py", *overrides, f"hydra.sweep.dir={sweep}", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stderr + proc.stdout
    for job in ("0", "1"):
        assert json.loads((sweep / job / "results.json").read_text())["timesteps"] == 256
    assert f"Sweep summary: 2 finished runs in {sweep}" in proc.stdout
    assert "common overrides: env=identity runner.num_timesteps=256 eval_episodes=2" in proc.stdout
    assert re.search(r"\n0 +seed=0 +-?\d+\.\d\d +256 +\d+\.\d +budget\n", proc.stdout), proc.stdout
    assert f"Next: python -m forceexp.compare {sweep}" in proc.stdout
    compared = subprocess.run(
        [sys.executable, "-m", "forceexp.compare", str(sweep)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert compared.returncode == 0, compared.stderr
    row = r"eval_episodes=2 +2 +0,1 +-?\d+\.\d\d \[[^]]+\] +-?\d+\.\d\d ± \d+\.\d\d"  # IQM [CI]
    assert re.search(row, compared.stdout), compared.stdout


def test_sweep_summary_lists_each_finished_job(tmp_path, capsys):
    from omegaconf import OmegaConf

    from forceexp.callbacks import SweepSummary

    for job, seed, value in (("0", 0, 12.5), ("1", 1, 20.0), ("10", 0, 30.0)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        lr = "1e-3" if job != "10" else "3e-4"
        overrides = f"- seed={seed}\n- agent.learning_rate={lr}\n- env=identity\n"
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(overrides)
        results = {"eval_return_mean": value, "timesteps": 256, "wall_seconds": 1.25}
        results["stop_reason"] = "budget: 256 timesteps"
        (tmp_path / job / "results.json").write_text(json.dumps(results))
    (tmp_path / "2").mkdir()  # a job that failed: no results.json
    config = OmegaConf.create({"optimized_metric": "eval_return_mean"})
    config.hydra = {"sweep": {"dir": str(tmp_path)}}
    SweepSummary().on_multirun_end(config)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Sweep summary: 3 finished runs in {tmp_path}"
    assert lines[1] == "common overrides: env=identity"
    header = "job overrides eval_return_mean timesteps wall s stopped by"
    assert lines[2].split() == header.split()
    assert [line.split()[0] for line in lines[4:7]] == ["0", "1", "10"]
    row = "10 seed=0 agent.learning_rate=3e-4 30.00 256 1.2 budget"
    assert lines[6].split() == row.split()
    assert lines[7] == f"Next: python -m forceexp.compare {tmp_path}  (mean ± std over seeds)"

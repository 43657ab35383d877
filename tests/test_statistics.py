"""IQM, stratified bootstrap, performance profiles, P(X > Y) and the benchmark reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.stats import trim_mean

from forceexp import benchmark
from forceexp.compare import Group, format_table
from forceexp.errors import ConfigError
from forceexp.statistics import (
    iqm,
    normalized,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size", [4, 5, 10, 13])
def test_iqm_is_scipys_quarter_trimmed_mean(size):
    scores = np.random.default_rng(size).normal(size=(size, 3))
    assert iqm(scores) == pytest.approx(trim_mean(scores, 0.25, axis=None))
    assert iqm([1.0, 2.0, 3.0, 100.0]) == 2.5  # the outlier is cut


def test_bootstrap_resamples_within_each_task():
    scores = np.stack([np.zeros(6), np.ones(6)], 1)  # task 0 all 0, task 1 all 1
    ci = stratified_bootstrap(scores, lambda x: float(x.mean()), repetitions=200)
    assert ci == (0.5, 0.5, 0.5)  # pooled resampling would move the mean
    spread = stratified_bootstrap(np.arange(10.0), repetitions=500)
    assert spread.low < spread.value < spread.high
    assert spread.value == iqm(np.arange(10.0))
    with pytest.raises(ConfigError, match=r"confidence: 1\.5 is invalid"):
        stratified_bootstrap(np.arange(3.0), confidence=1.5)


def test_profile_and_probability_of_improvement_by_hand():
    scores = np.array([[0.2, 1.0], [0.6, 1.5], [1.2, 0.1]])
    np.testing.assert_allclose(performance_profile(scores, np.array([0.5, 1.1])), [4 / 6, 2 / 6])
    x, y = np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]])
    assert probability_of_improvement(x, y) == pytest.approx((0 + 0 + 1 + 0.5) / 4)
    assert probability_of_improvement(y, x) == pytest.approx(1 - 1.5 / 4)
    with pytest.raises(ConfigError, match="x has 1 tasks, y has 2"):
        probability_of_improvement(x, np.zeros((2, 2)))
    np.testing.assert_allclose(normalized([21.0, 500.0, 260.5], 21.0, 500.0), [0, 1, 0.5])


def test_compare_table_reports_the_iqm_with_its_interval():
    group = Group("agent=ppo", ["a", "b", "c", "d"], ["0", "1", "2", "3"], [1, 2, 3, 100], [5] * 4)
    table = format_table([group], "eval_return_mean")
    assert "IQM [95% CI]" in table.splitlines()[0]
    assert "2.50 [" in table.splitlines()[2]


def _fake_run(directory: Path, env: str, agent: str, seed: int, final: float) -> None:
    (directory / ".hydra").mkdir(parents=True)
    overrides = [f"env={env}", f"agent={agent}", f"seed={seed}", "runner.num_timesteps=10"]
    (directory / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    results = {
        "eval_return_mean": final,
        "wall_seconds": 2.0,
        "timesteps": 1000,
        "train_curve": [[100, 20.0], [1000, final]],
    }
    (directory / "results.json").write_text(json.dumps(results))


def test_reports_from_a_sweep_folder(tmp_path):
    finals = {("cartpole", "ppo"): [500, 480, 120, 490], ("cartpole", "dqn"): [500, 500, 500]}
    number = 0
    for (env, agent), values in finals.items():
        for seed, final in enumerate(values):
            _fake_run(tmp_path / str(number), env, agent, seed, final)
            number += 1
    table = benchmark.report(benchmark.collect(tmp_path), tmp_path, "test")
    assert "| cartpole | ppo | 0 1 2 3 | 485.0 [" in table  # IQM: mean of 480 and 490
    assert "| 500 | 3 | 2.0 | 1000 |" in table  # Zoo figure, seeds >= 450, wall time, steps
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("env,agent,seeds,iqm,ci_low,ci_high") and len(rows) == 3
    aggregate = (tmp_path / "aggregate.md").read_text()
    assert "| dqn | ppo | 0.875 |" in aggregate  # P(dqn > ppo): 9 wins, 3 ties of 12 pairs
    assert (tmp_path / "curves-cartpole.png").stat().st_size > 1000
    assert benchmark.parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ConfigError, match="benchmark --seeds: 'a-b' is invalid"):
        benchmark.parse_seeds("a-b")


@pytest.mark.slow
def test_benchmark_runs_a_two_seed_grid_end_to_end(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "forceexp.benchmark", "--seeds", "0-1", "--jobs", "2"]
    command += ["--out", str(tmp_path), "--", "runner.num_timesteps=2048", "eval_episodes=2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("cartpole,ppo,0 1,")
    assert (tmp_path / "curves-cartpole.png").is_file()


@pytest.mark.parametrize(
    ("results", "overrides"),
    [('{"eval_return_mean": 1', "- seed=0\n"), ("[1, 2]", "- seed=0\n"), ("{}", "seed: [\n")],
)
def test_a_damaged_run_folder_is_named_not_a_traceback(tmp_path, results, overrides):
    from forceexp.benchmark import collect
    from forceexp.compare import sweep_groups

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / "results.json").write_text(results)  # truncated, wrong shape, or fine
    (job / ".hydra" / "overrides.yaml").write_text(overrides)
    for read in (lambda: collect(tmp_path), lambda: sweep_groups(tmp_path, "eval_return_mean")):
        with pytest.raises(ConfigError, match=str(job)):
            read()

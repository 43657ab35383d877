"""The SB3 comparison benchmarks run with tiny arguments and print well-formed JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"benchmark", "framework", "figure", "value", "unit"}


def run_benchmark(script: str, *args: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    for line in lines:
        assert line.keys() >= KEYS, line
    return lines


def test_compare_sb3_prints_each_figure_per_framework_and_the_ratios():
    lines = run_benchmark("compare_sb3.py", "--timesteps", "2000", "--seeds", "1", "--skip-default")
    figures = {(line["framework"], line["figure"]) for line in lines}
    per_run = ("seconds_to_475", "timesteps_to_475", "wall_seconds", "steps_per_second")
    for framework in ("forceexp", "sb3"):
        for figure in (*per_run, "eval_return_mean"):
            assert (framework, figure) in figures
    for figure in ("steps_per_second", "seconds_to_475", "timesteps_to_475"):
        assert ("forceexp/sb3", f"{figure}_ratio") in figures
    assert all(len(line["per_seed"]) == 1 for line in lines)
    runs = [line for line in lines if line["framework"] in ("forceexp", "sb3")]
    assert all(
        line["value"] > 0 for line in runs if line["figure"] in ("wall_seconds", "steps_per_second")
    )


def test_act_latency_prints_ours_and_sb3():
    lines = run_benchmark("act_latency.py", "--calls", "50")
    figures = {(line["framework"], line["figure"]) for line in lines}
    shared = ("act_independent_deterministic", "batched_act_n8", "batched_act_n1024")
    for framework in ("forceexp", "sb3"):
        for figure in shared:
            assert (framework, figure) in figures
    assert ("forceexp", "act_observe_stochastic") in figures
    assert ("sb3", "policy_forward_no_grad") in figures
    assert all(line["value"] > 0 for line in lines)


def test_update_step_prints_each_path_and_the_speedup():
    lines = run_benchmark("update_step.py", "--rounds", "1", "--updates", "1")
    figures = {(line["framework"], line["figure"]) for line in lines}
    for framework in ("forceexp", "forceexp-autograd", "sb3"):
        assert (framework, "ms_per_update") in figures
        assert (framework, "gradient_steps_per_second") in figures
    assert ("forceexp/sb3", "update_speedup") in figures
    assert all(line["value"] > 0 for line in lines)


def test_dense_step_prints_both_paths_and_the_speedups():
    lines = run_benchmark("dense_step.py", "--rounds", "1", "--steps", "2")
    figures = {(line["framework"], line["figure"]) for line in lines}
    for name in ("dqn", "sac"):
        for path in ("fast", "autograd", "products"):
            assert (f"forceexp-{path}", f"{name}_us_per_step") in figures
        assert ("forceexp", f"{name}_speedup") in figures
        assert ("forceexp", f"{name}_products_share") in figures
    assert ("products", "sac_floor_vs_sb3") in figures
    assert all(line["value"] > 0 for line in lines)


@pytest.mark.parametrize(("algo", "timesteps"), [("dqn", "1500"), ("sac", "400")])
def test_compare_sb3_off_policy_runs_our_shipped_config_and_sb3(algo, timesteps):
    lines = run_benchmark(
        "compare_sb3.py", "--algo", algo, "--timesteps", timesteps, "--seeds", "1"
    )
    figures = {(line["framework"], line["figure"]) for line in lines}
    for framework in ("forceexp", "sb3"):
        for figure in ("wall_seconds", "steps_per_second", "eval_return_mean"):
            assert (framework, figure) in figures
    assert ("forceexp/sb3", "steps_per_second_ratio") in figures
    assert all(line["algo"] == algo for line in lines)


@pytest.mark.slow
def test_compare_sb3_dqn_evaluates_on_both_sides_and_counts_every_timestep():
    """Past the tuning's first evaluation (5,000 steps): SB3 loads its best model, and its
    steps/s still counts the whole run's timesteps (wall x steps/s; SB3 finishes its last
    rollout of train_freq = 256 steps: 21 x 256), not the best model's 5,000."""
    lines = run_benchmark("compare_sb3.py", "--algo", "dqn", "--timesteps", "5200", "--seeds", "1")
    value = {(line["framework"], line["figure"]): line["value"] for line in lines}
    for framework, taken in (("forceexp", 5200), ("sb3", 21 * 256)):
        steps = value[framework, "wall_seconds"] * value[framework, "steps_per_second"]
        assert steps == pytest.approx(taken, rel=0.005)
        assert value[framework, "eval_return_mean"] > 0


def test_sac_pendulum_prints_each_framework_and_the_ratios():
    lines = run_benchmark("sac_pendulum.py", "--rounds", "1", "--timesteps", "10")
    figures = {(line["framework"], line["figure"]) for line in lines}
    for framework in ("forceexp", "forceexp-autograd", "sb3"):
        assert (framework, "steps_per_second") in figures
    for framework in ("forceexp/sb3", "forceexp/forceexp-autograd"):
        assert (framework, "steps_per_second_ratio") in figures
    assert all(line["value"] > 0 for line in lines)


def test_startup_prints_the_torch_floor_and_each_agents_first_step():
    lines = run_benchmark("startup.py", "--agents", "ppo", "--rounds", "1")
    figures = {(line["figure"], line.get("agent")) for line in lines}
    floor = {("torch_import", None), ("cpu_torch_import", None)}
    per_agent = {("seconds_to_first_step", "ppo"), ("cpu_seconds_to_first_step", "ppo")}
    assert figures == floor | per_agent | {("overhead", "ppo")}
    value = {line["figure"]: line["value"] for line in lines}
    assert 0 < value["cpu_torch_import"] < value["cpu_seconds_to_first_step"] < 120
    assert value["torch_import"] > 0 and 0 < value["seconds_to_first_step"] < 120

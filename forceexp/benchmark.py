"""Benchmark suite: ``python -m forceexp.benchmark --envs cartpole --agents ppo --seeds 0-9``.

Runs an env x agent x seed grid as one Hydra multirun of ``train.py`` (the joblib launcher runs
jobs in parallel when installed), collects each run's ``results.json``, and writes into the
output folder: ``results.md`` and ``results.csv`` (final deterministic evaluation return per
cell as IQM with a 95% stratified bootstrap CI, mean ± std, worst seed, the RL-Zoo's published
return beside it, wall time and timesteps), ``aggregate.md`` (over environments, on scores
normalized from a random policy's return (0) to the Zoo's (1): IQM with CI, probability of
improvement between agents, and a performance profile) and one learning-curve PNG per
environment (training return, rolling mean of 100 episodes, mean and range over seeds).
``--collect DIR`` rebuilds the reports from a finished sweep folder without running anything;
``--status DIR`` lists how far each of its jobs got.
``--resume --out DIR`` runs the same grid again into DIR: finished runs stand, runs that were
interrupted (a killed session, a preempted machine) continue from their newest checkpoint, and
each ``results.json`` covers its whole run (``forceexp.resume``).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forceexp.compare import read_job, read_overrides
from forceexp.errors import CheckpointError, ConfigError, message
from forceexp.statistics import (
    normalized,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)

#: RL-Zoo published mean returns (rl-baselines3-zoo ``benchmark.md``), by (agent, env) group
#: names; the figures issue 20 and the README's tables quote.
ZOO_RETURNS: dict[tuple[str, str], float] = {
    ("ppo", "cartpole"): 500.0,
    ("ppo", "acrobot"): -73.5,
    ("ppo", "pendulum"): -172.2,
    ("ppo", "lunarlander"): 242.0,
    ("ppo", "lunarlander_continuous"): 271.0,
    ("dqn", "cartpole"): 500.0,
    ("dqn", "acrobot"): -76.6,
    ("dqn", "lunarlander"): 154.0,
    ("sac", "pendulum"): -157.0,
    ("sac", "lunarlander_continuous"): 260.0,
    ("td3", "pendulum"): -152.0,
    ("td3", "lunarlander_continuous"): 207.5,  # 300k steps
    ("dpg", "pendulum"): -152.1,  # the Zoo's ddpg row (20k steps)
    ("ddpg", "pendulum"): -152.1,
    ("a2c", "cartpole"): 500.0,
    ("trpo", "cartpole"): 500.0,  # sb3-contrib's TRPO row (100k steps)
}

#: Mean return of uniformly random actions over 100 episodes (measured 2026-11-29 with
#: ``Runner(agent="random", environment=..., seed=0).evaluate(100, deterministic=False,
#: seed=0)``); the 0 of normalized scores.
RANDOM_RETURNS: dict[str, float] = {
    "cartpole": 21.0,
    "acrobot": -499.9,
    "pendulum": -1173.3,
    "lunarlander": -167.7,
    "lunarlander_continuous": -211.3,
}

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"


@dataclass
class Run:
    """One finished run of the grid: its choices and its ``results.json``."""

    env: str
    agent: str
    seed: int
    results: dict[str, Any]
    directory: Path


def parse_seeds(text: str) -> list[int]:
    """``'0-9'``, ``'0,3,5'`` or a mix (``'0-2,7'``) as a sorted list of ints.

    Raises:
        ConfigError: the text is not ranges or ints.
    """
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            seeds.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ConfigError(
            message("benchmark --seeds", text, "ints or ranges like 0-9,12")
        ) from None
    return sorted(seeds)


def sweep_command(
    envs: Sequence[str],
    agents: Sequence[str],
    seeds: Sequence[int],
    directory: Path,
    jobs: int,
    overrides: Sequence[str] = (),
) -> list[str]:
    """The ``train.py -m`` command of the grid (joblib launcher when ``jobs > 1``)."""
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        "-m",
        f"env={','.join(envs)}",
        f"agent={','.join(agents)}",
        f"seed={','.join(str(s) for s in seeds)}",
        f"hydra.sweep.dir={directory}",
    ]
    if jobs > 1:
        command += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    return command + list(overrides)


def _choices(overrides: Sequence[str]) -> tuple[str, str, int]:
    """A job's env, agent and seed from its Hydra overrides (train.py's defaults otherwise)."""
    chosen = dict(o.split("=", 1) for o in overrides if "=" in o)
    return chosen.get("env", "cartpole"), chosen.get("agent", "ppo"), int(chosen.get("seed", 0))


def collect(directory: Path) -> list[Run]:
    """Every run below ``directory`` that wrote ``results.json``, with its env/agent/seed."""
    runs = []
    for results_file in sorted(Path(directory).rglob("results.json")):
        overrides, results = read_job(results_file)
        if overrides is None:  # not a Hydra job folder
            continue
        env, agent, seed = _choices(overrides)
        runs.append(Run(env, agent, seed, results, results_file.parent))
    return runs


def grid_status(directory: Path) -> list[str]:
    """One line per job folder below ``directory``: finished, checkpointed (how far) or started.

    For grids that run over several sessions (``--resume``): what is done and what is left,
    read from each job's ``results.json`` or the ``run_state.json`` of its newest checkpoint.

    Raises:
        ConfigError: no job folder below ``directory``; a job's files are malformed (named).
    """
    from forceexp.execution.run_state import FILE, RunState
    from forceexp.resume import BEST

    lines = []
    jobs = [path.parent.parent for path in Path(directory).rglob(".hydra/overrides.yaml")]
    for job in sorted(jobs, key=_job_order):
        overrides_file = job / ".hydra" / "overrides.yaml"
        results_file = job / "results.json"
        if results_file.is_file():
            overrides, results = read_job(results_file)
        else:
            overrides, results = read_overrides(overrides_file), None
        env, agent, seed = _choices(overrides or [])  # found through its overrides file
        name = f"{job.relative_to(directory)}: {agent} {env} seed {seed}"
        if results is not None:
            score, steps = results.get("eval_return_mean"), results.get("timesteps")
            lines.append(
                f"{name}: finished, eval {_number(score, '.1f')} after {_number(steps, ',')} "
                f"timesteps, {_number(results.get('wall_seconds'), ',.0f')} s"
            )
            continue
        states = [p.parent for p in job.rglob(FILE) if p.parent.name != BEST]
        try:
            state = RunState.load(states[0]) if states else None
        except CheckpointError as exc:  # listed, so that the other jobs still are
            lines.append(f"{name}: checkpoint unreadable ({exc})")
            continue
        if state is None:
            lines.append(f"{name}: started, no checkpoint yet")
            continue
        budget = _budget(job / ".hydra" / "config.yaml")
        of = left = ""
        if budget is not None and budget > 0:
            of = f" of {budget:,} ({state.timesteps / budget:.0%})"
            if state.timesteps:  # at this run's pace so far
                seconds = (budget - state.timesteps) * state.wall_seconds / state.timesteps
                left = f"; ~{seconds / 3600:.1f} h left"
        lines.append(
            f"{name}: checkpoint at {state.timesteps:,} timesteps{of}, "
            f"{state.wall_seconds:,.0f} s trained in {len(state.resumed_at) + 1} segment(s){left}"
        )
    if not lines:
        raise ConfigError(
            f"benchmark --status: no job folder (.hydra/overrides.yaml) below {directory}"
        )
    return lines


def _number(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``?`` when a results file lacks it."""
    return format(value, spec) if isinstance(value, int | float) else "?"


def _budget(config_file: Path) -> int | None:
    """``runner.num_timesteps`` of a job's composed config (None when absent or unreadable)."""
    import yaml

    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    runner = config.get("runner") if isinstance(config, dict) else None
    budget = runner.get("num_timesteps") if isinstance(runner, dict) else None
    return budget if isinstance(budget, int) else None


def _job_order(job: Path) -> tuple[str, int, int | str]:
    """Job folders in grid order: numbered ones by number (2 before 10), then by name."""
    return (
        (str(job.parent), 0, int(job.name))
        if job.name.isdigit()
        else (str(job.parent), 1, job.name)
    )


def cells(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (env, agent), seeds in order."""
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.env, r.agent, r.seed)):
        grouped.setdefault((run.env, run.agent), []).append(run)
    return grouped


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (env, agent): final evaluation statistics, the Zoo's figure, time, steps."""
    rows = []
    for (env, agent), group in cells(runs).items():
        finals = np.array([r.results["eval_return_mean"] for r in group])
        ci = stratified_bootstrap(finals)
        zoo = ZOO_RETURNS.get((agent, env))
        rows.append(
            {
                "env": env,
                "agent": agent,
                "seeds": " ".join(str(r.seed) for r in group),
                "iqm": ci.value,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "mean": float(finals.mean()),
                "std": float(finals.std()),
                "worst": float(finals.min()),
                "zoo": zoo,
                "seeds_at_90pct_zoo": None if zoo is None else int(np.sum(finals >= _ninety(zoo))),
                "wall_seconds": float(np.mean([r.results["wall_seconds"] for r in group])),
                "timesteps": int(np.mean([r.results["timesteps"] for r in group])),
            }
        )
    return rows


def _ninety(zoo: float) -> float:
    """90% of a return on its natural scale (a negative return may be 10% worse)."""
    return 0.9 * zoo if zoo >= 0 else zoo / 0.9


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| env | agent | seeds | eval IQM [95% CI] | mean ± std | worst | RL-Zoo "
        "| seeds >= 90% Zoo | wall s (mean) | timesteps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        zoo = "—" if r["zoo"] is None else f"{r['zoo']:g}"
        hits = "—" if r["seeds_at_90pct_zoo"] is None else str(r["seeds_at_90pct_zoo"])
        lines.append(
            f"| {r['env']} | {r['agent']} | {r['seeds']} | {r['iqm']:.1f} "
            f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}] | {r['mean']:.1f} ± {r['std']:.1f} "
            f"| {r['worst']:.1f} | {zoo} | {hits} | {r['wall_seconds']:.1f} | {r['timesteps']} |"
        )
    return "\n".join(lines) + "\n"


def aggregate_markdown(runs: list[Run]) -> str:
    """Across environments (normalized scores): IQM + CI per agent, P(X > Y), profile."""
    scores = _normalized_scores(runs)
    if not scores:
        return "No environment has both a random and an RL-Zoo reference: nothing to aggregate.\n"
    lines = ["Normalized score: (return - random) / (RL-Zoo - random), over these envs:"]
    lines += [f"- {agent}: {', '.join(envs)}" for agent, (envs, _) in scores.items()]
    lines += ["", "| agent | IQM [95% CI] | P(score > 0.9) | P(score > 1.0) |", "|---|---|---|---|"]
    for agent, (_, matrix) in scores.items():
        ci = stratified_bootstrap(matrix)
        above = performance_profile(matrix, np.array([0.9, 1.0]))
        lines.append(
            f"| {agent} | {ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}] | {above[0]:.2f} "
            f"| {above[1]:.2f} |"
        )
    names = list(scores)
    pairs = [(x, y) for x in names for y in names if x < y and scores[x][0] == scores[y][0]]
    if pairs:
        lines += ["", "| X | Y | P(X > Y) |", "|---|---|---|"]
        lines += [
            f"| {x} | {y} | {probability_of_improvement(scores[x][1], scores[y][1]):.3f} |"
            for x, y in pairs
        ]
    return "\n".join(lines) + "\n"


def _normalized_scores(runs: list[Run]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per agent: the envs it can be normalized on and its scores ``(seeds, envs)``.

    Only envs where every agent's cell has the same number of seeds line up as one matrix; a
    cell with fewer seeds is cut to the smallest count (seeds in order).
    """
    by_agent: dict[str, dict[str, np.ndarray]] = {}
    for (env, agent), group in cells(runs).items():
        zoo, random = ZOO_RETURNS.get((agent, env)), RANDOM_RETURNS.get(env)
        if zoo is None or random is None:
            continue
        finals = np.array([r.results["eval_return_mean"] for r in group])
        by_agent.setdefault(agent, {})[env] = normalized(finals, random, zoo)
    out = {}
    for agent, per_env in by_agent.items():
        envs = sorted(per_env)
        runs_count = min(len(per_env[e]) for e in envs)
        out[agent] = (envs, np.stack([per_env[e][:runs_count] for e in envs], 1))
    return out


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The rows as CSV (atomically)."""
    with _atomic(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(runs: list[Run], directory: Path) -> list[Path]:
    """One PNG per env: training-return curves, mean and min-max over seeds per agent."""
    try:
        import matplotlib
    except ImportError:  # the reports stay useful without figures
        print("benchmark: matplotlib is not installed; no curves (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for env in sorted({r.env for r in runs}):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for (cell_env, agent), group in cells(runs).items():
            curves = [np.asarray(r.results.get("train_curve") or [], float) for r in group]
            curves = [c for c in curves if len(c) > 1]
            if cell_env != env or not curves:
                continue
            grid = np.linspace(0, min(c[-1, 0] for c in curves), 100)
            values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
            axes.plot(grid, values.mean(0), label=f"{agent} (n={len(curves)})")
            axes.fill_between(grid, values.min(0), values.max(0), alpha=0.2)
            zoo = ZOO_RETURNS.get((agent, env))
            if zoo is not None:
                axes.axhline(zoo, linestyle="--", linewidth=0.8, color="gray")
        axes.set(title=env, xlabel="timesteps", ylabel="training return (mean of last 100)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        path = directory / f"curves-{env}.png"
        with _atomic(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


class _atomic:
    """Open a temp file beside ``path`` and rename it over ``path`` on success."""

    def __init__(self, path: Path, mode: str, **kwargs: Any) -> None:
        self.path, self.mode, self.kwargs = path, mode, kwargs

    def __enter__(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.handle = os.fdopen(fd, self.mode, **self.kwargs)
        return self.handle

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self.handle.close()
        if kind is None:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def report(runs: list[Run], directory: Path, command: str) -> str:
    """Write results.md/.csv, aggregate.md and the curves into ``directory``; return the table."""
    if not runs:
        raise ConfigError(f"benchmark: no finished runs (results.json) below {directory}")
    rows = table_rows(runs)
    header = (
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.node()} "
        f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}), "
        f"command: `{command}`\n\n"
    )
    table = markdown_table(rows)
    (directory / "results.md").write_text(header + table)
    write_csv(rows, directory / "results.csv")
    (directory / "aggregate.md").write_text(header + aggregate_markdown(runs))
    for path in plot_curves(runs, directory):
        print(f"curves: {path}")
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments; everything after ``--`` goes to train.py as overrides."""
    parser = argparse.ArgumentParser(prog="python -m forceexp.benchmark", description=__doc__)
    parser.add_argument("--envs", nargs="+", default=["cartpole"], help="env group names")
    parser.add_argument("--agents", nargs="+", default=["ppo"], help="agent group names")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,5")
    parser.add_argument("--jobs", type=int, default=1, help="parallel runs (joblib launcher)")
    parser.add_argument("--out", default=None, help="default outputs/benchmark/<date_time>")
    parser.add_argument("--collect", default=None, help="only report on this sweep folder")
    parser.add_argument(
        "--status",
        default=None,
        help="only list the job folders of this sweep: finished, checkpointed (how far), started",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="rerun the grid into --out: finished runs stand, interrupted ones continue from "
        "their newest checkpoint (jobs checkpoint every --checkpoint-every timesteps)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=50_000,
        help="with --resume: timesteps between checkpoints (with the replay memory), unless "
        "the overrides configure a saver themselves",
    )
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    return parser.parse_args(argv)


def resumable(args: argparse.Namespace) -> list[str]:
    """The overrides that make every job continue where an earlier sweep left it.

    ``+resume=auto`` (``forceexp.resume``) and, unless the overrides name a saver, full
    checkpoints every ``--checkpoint-every`` timesteps with the replay memory, the newest kept.

    Raises:
        ConfigError: no ``--out`` (the folder to continue) or a bad ``--checkpoint-every``.
    """
    if args.out is None:
        raise ConfigError("benchmark --resume: give --out, the folder of the sweep to continue")
    if args.checkpoint_every < 1:
        given = args.checkpoint_every
        raise ConfigError(message("benchmark --checkpoint-every", given, "an int >= 1"))
    overrides = [*args.overrides, "+resume=auto"]
    if not any(o.lstrip("+~").startswith("saver") for o in args.overrides):
        overrides += [
            "saver=checkpoint",
            "saver.unit=timesteps",
            f"saver.frequency={args.checkpoint_every}",
            "saver.memory=true",
            "saver.max_checkpoints=1",
        ]
    return overrides


def main(argv: list[str] | None = None) -> int:
    """Run the grid (unless ``--collect``), then write and print the reports."""
    args = parse_args(argv)
    try:
        if args.status is not None:
            print("\n".join(grid_status(Path(args.status))))
            return 0
        if args.collect is not None:
            directory = Path(args.collect)
            command = f"python -m forceexp.benchmark --collect {directory}"
        else:
            stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime())
            directory = Path(args.out or Path("outputs") / "benchmark" / stamp).resolve()
            seeds = parse_seeds(args.seeds)
            overrides = resumable(args) if args.resume else args.overrides
            cmd = sweep_command(args.envs, args.agents, seeds, directory, args.jobs, overrides)
            command = " ".join(["python -m forceexp.benchmark", *(argv or sys.argv[1:])])
            print("running:", " ".join(cmd[1:]), flush=True)
            done = subprocess.run(cmd, check=False)
            if done.returncode != 0:
                print(f"benchmark: train.py exited with {done.returncode}", file=sys.stderr)
        print(report(collect(directory), directory, command))
        print(f"reports: {directory}/results.md, results.csv, aggregate.md")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compare runs: ``python -m forceexp.compare [SWEEP_DIR] [--experiment NAME] [--metric M]``.

Runs whose Hydra overrides differ only in ``seed`` form one configuration; the table shows the
final metric's interquartile mean over seeds with a 95% bootstrap confidence interval
(``forceexp.statistics``), its mean ± std, the best seed, and steps/s. Given a multirun dir, the
runs are its jobs' ``results.json`` files (any tracker); otherwise they are the MLflow runs of
an experiment, and a PNG shows the learning curves (mean ± std over seeds per configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forceexp import tags
from forceexp.errors import ConfigError, brief, message
from forceexp.observers.tracker import DEFAULT_STORE, OVERRIDES_TAG, SEED_TAG, SWEEP_TAG, store_uri
from forceexp.statistics import stratified_bootstrap


@dataclass
class Group:
    """Runs of one configuration (same overrides but the seed)."""

    name: str
    run_ids: list[str] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    finals: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)


def config_name(overrides: str) -> str:
    """The overrides without ``seed=...`` (the configuration a run belongs to)."""
    kept = [o for o in overrides.split() if not o.lstrip("+~").startswith("seed=")]
    return " ".join(kept) or "(defaults)"


def strip_common(groups: list[Group]) -> list[str]:
    """Drop the overrides every configuration shares from the group names; return them."""
    if len(groups) < 2:
        return []
    tokens = [group.name.split() for group in groups]
    common = [t for t in tokens[0] if all(t in other for other in tokens[1:])]
    for group, names in zip(groups, tokens, strict=True):
        group.name = " ".join(t for t in names if t not in common) or "(defaults)"
    return common


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` points (shorter at the start)."""
    if window <= 1 or len(values) == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def load_groups(uri: str, experiment: str, metric: str, sweep: str | None = None) -> list[Group]:
    """Finished runs of ``experiment`` (optionally of one sweep dir) grouped by configuration.

    ``metric`` is a tag (``eval/mean_return``) or a ``results.json`` key (``eval_return_mean``).
    """
    from mlflow.tracking import MlflowClient

    metric = tags.RESULT_TAGS.get(metric, metric)

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise ConfigError(f"compare: no experiment {experiment!r} in {uri}; found {names}")
    query = "attributes.status = 'FINISHED'"
    if sweep is not None:
        query += f" and tags.`{SWEEP_TAG}` = '{Path(sweep).resolve()}'"
    groups: dict[str, Group] = {}
    runs = client.search_runs([found.experiment_id], query, max_results=10000)
    for run in sorted(runs, key=lambda r: r.info.start_time):
        name = config_name(run.data.tags.get(OVERRIDES_TAG, ""))
        group = groups.setdefault(name, Group(name))
        group.run_ids.append(run.info.run_id)
        group.seeds.append(run.data.tags.get(SEED_TAG, "?"))
        group.finals.append(run.data.metrics.get(metric, float("nan")))
        group.speeds.append(run.data.metrics.get(tags.STEPS_PER_SECOND, float("nan")))
    return list(groups.values())


def format_table(groups: list[Group], metric: str) -> str:
    """A plain-text table, one row per configuration, best mean first."""
    header = (
        "configuration",
        "runs",
        "seeds",
        "IQM [95% CI]",
        f"{metric} mean ± std",
        "best",
        "steps/s",
    )
    rows = [header]
    for group in sorted(groups, key=lambda g: -np.nan_to_num(np.nanmean(g.finals), nan=-np.inf)):
        finals = np.asarray(group.finals, dtype=float)
        kept = finals[~np.isnan(finals)]
        ci = stratified_bootstrap(kept) if len(kept) else None
        rows.append(
            (
                group.name,
                str(len(group.run_ids)),
                ",".join(group.seeds),
                "-" if ci is None else f"{ci.value:.2f} [{ci.low:.2f}, {ci.high:.2f}]",
                f"{np.nanmean(finals):.2f} ± {np.nanstd(finals):.2f}",
                f"{np.nanmax(finals):.2f}",
                f"{np.nanmean(group.speeds):.0f}",
            )
        )
    return render(rows)


def render(rows: list[tuple[str, ...]]) -> str:
    """Plain-text columns: the first row is the header, underlined."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def read_overrides(path: Path) -> list[str]:
    """A job's ``.hydra/overrides.yaml`` as a list of strings.

    Raises:
        ConfigError: the file is unreadable or not a list of strings (the message names it).
    """
    import yaml

    try:
        overrides = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(message(str(path), overrides, "a list of override strings"))
    return overrides


def read_job(results_file: Path) -> tuple[list[str] | None, dict[str, Any]]:
    """A run folder's Hydra overrides (None without ``.hydra/overrides.yaml``) and results.

    Raises:
        ConfigError: ``results.json`` or the overrides file is unreadable or malformed (the
            message names the file).
    """
    try:
        results = json.loads(results_file.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{results_file}: cannot read the run's files ({exc})") from exc
    if not isinstance(results, dict):
        raise ConfigError(message(str(results_file), brief(results), "a JSON object"))
    overrides_file = results_file.parent / ".hydra" / "overrides.yaml"
    return (read_overrides(overrides_file) if overrides_file.is_file() else None), results


def sweep_jobs(sweep: Path) -> list[tuple[str, str, dict]]:
    """(job folder, overrides, results.json) of each finished job of a multirun dir, in order."""
    jobs = []
    for results_file in sweep.glob("*/results.json"):
        overrides, results = read_job(results_file)
        jobs.append((results_file.parent.name, " ".join(overrides or []), results))
    return sorted(jobs, key=lambda job: (len(job[0]), job[0]))  # 0, 1, ..., 10


def sweep_groups(sweep: Path, metric: str) -> list[Group]:
    """A multirun dir's finished jobs grouped by configuration (as ``load_groups`` for MLflow).

    ``metric`` is a ``results.json`` key or the tag it is logged under (``eval/mean_return``).
    """
    key = {tag: name for name, tag in tags.RESULT_TAGS.items()}.get(metric, metric)
    groups: dict[str, Group] = {}
    for job, overrides, results in sweep_jobs(sweep):
        group = groups.setdefault(config_name(overrides), Group(config_name(overrides)))
        seeds = [o.split("=", 1)[1] for o in overrides.split() if o.lstrip("+").startswith("seed=")]
        group.run_ids.append(job)
        group.seeds.append(seeds[0] if seeds else "?")
        group.finals.append(results.get(key, float("nan")))
        group.speeds.append(results.get("steps_per_second", float("nan")))
    return list(groups.values())


def sweep_summary(sweep: Path, metric: str = "eval_return_mean") -> str | None:
    """One row per finished job (overrides, metric, timesteps, wall time, why it stopped)."""
    jobs = sweep_jobs(sweep)
    if not jobs:
        return None
    names = [Group(overrides or "(defaults)") for _, overrides, _ in jobs]
    common = strip_common(names)  # shown once above the table
    header = ("job", "overrides", metric, "timesteps", "wall s", "stopped by")
    rows = [header]
    for (job, _, results), name in zip(jobs, names, strict=True):
        value = results.get(metric)
        reason = str(results.get("stop_reason", "")).split(":", 1)[0]
        cells = (job, name.name, "-" if value is None else f"{value:.2f}")
        rows.append(
            (
                *cells,
                str(results.get("timesteps", "-")),
                f"{results.get('wall_seconds', 0):.1f}",
                reason,
            )
        )
    lines = [f"Sweep summary: {len(jobs)} finished runs in {sweep}"]
    lines += [f"common overrides: {' '.join(common)}"] if common else []
    lines.append(render(rows))
    lines.append(f"Next: python -m forceexp.compare {sweep}  (mean ± std over seeds)")
    return "\n".join(lines)


def curves(
    uri: str, group: Group, key: str, window: int = 10, points: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Steps grid and per-run smoothed values of ``key`` interpolated onto it ``(runs, points)``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    histories = []
    for run_id in group.run_ids:
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if history:
            array = np.asarray(history, dtype=float)
            array[:, 1] = smooth(array[:, 1], window)
            histories.append(array)
    if not histories:
        return np.zeros(0), np.zeros((0, 0))
    end = min(h[-1, 0] for h in histories)
    grid = np.linspace(min(h[0, 0] for h in histories), end, points)
    return grid, np.stack([np.interp(grid, h[:, 0], h[:, 1]) for h in histories])


def plot(uri: str, groups: list[Group], key: str, path: Path, window: int = 10) -> Path:
    """Write a PNG of mean ± std learning curves per configuration (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for group in groups:
        grid, values = curves(uri, group, key, window)
        if values.size == 0:
            continue
        mean, std = values.mean(0), values.std(0)
        axes.plot(grid, mean, label=f"{group.name} (n={len(values)})")
        axes.fill_between(grid, mean - std, mean + std, alpha=0.2)
    axes.set_xlabel("timesteps")
    axes.set_ylabel(f"{key} (moving mean of {window})" if window > 1 else key)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(prog="python -m forceexp.compare", description=__doc__)
    parser.add_argument(
        "sweep_dir", nargs="?", default=None, help="a multirun dir: compare its results.json files"
    )
    parser.add_argument("--tracking-uri", default=None, help="default: ./outputs/mlflow.db")
    parser.add_argument("--experiment", default="train", help="MLflow experiment (task_name)")
    parser.add_argument("--metric", default=tags.EVAL_RETURN, help="final metric to compare")
    parser.add_argument("--curve", default=tags.EPISODE_RETURN, help="metric of the curves")
    parser.add_argument("--smooth", type=int, default=10, help="moving-average window")
    parser.add_argument("--sweep", default=None, help="only runs of this multirun sweep dir")
    parser.add_argument("--plot", default=None, help="PNG path (default outputs/compare-*.png)")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table and write the curves PNG; return the exit status."""
    args = parse_args(argv)
    if args.sweep_dir is not None:
        groups = sweep_groups(Path(args.sweep_dir), args.metric)
        if not groups:
            print(f"compare: no */results.json in {args.sweep_dir}", file=sys.stderr)
            return 1
        common = strip_common(groups)
        if common:
            print(f"common overrides: {' '.join(common)}")
        print(format_table(groups, args.metric))
        return 0
    try:
        if args.tracking_uri is None and not (Path.cwd() / DEFAULT_STORE).is_file():
            raise ConfigError(f"compare: no MLflow store at {DEFAULT_STORE}; pass --tracking-uri")
        uri = store_uri(args.tracking_uri, Path.cwd())
        groups = load_groups(uri, args.experiment, args.metric, args.sweep)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not groups:
        print(f"compare: no finished runs in experiment {args.experiment!r}", file=sys.stderr)
        return 1
    common = strip_common(groups)
    if common:
        print(f"common overrides: {' '.join(common)}")
    print(format_table(groups, args.metric))
    if not args.no_plot:
        default = Path("outputs") / f"compare-{args.experiment}.png"
        path = Path(args.plot) if args.plot else default
        written = plot(uri, groups, args.curve, path, args.smooth)
        print(f"curves: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

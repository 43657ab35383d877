"""Pruned hyperparameter search: ``python -m forceexp.tune hparams_search=ppo_pruned [...]``.

Composes ``conf/train.yaml`` like ``train.py``; the ``tune`` block (from an
``hparams_search/*_pruned.yaml`` option) names the search space, the trial count, the sampler
and the pruner. Every trial is one ``experiment.train`` run with sampled overrides in its own
folder (``<run dir>/trial_<n>``); each periodic evaluation (``evaluation.frequency``) is
reported to Optuna, and a ``MedianPruner`` stops trials whose evaluation falls below the
median of earlier trials at the same evaluation, as RL-Zoo's and CleanRL's tuners do.
``tune.n_jobs`` worker processes share one study through Optuna's journal file
(``<run dir>/optuna.journal``; Optuna >= 3.1), so trials run in parallel; with one job the
study stays in memory and any Optuna >= 2.10 works. Optuna's own API is used, not the Hydra
Optuna sweeper: that plugin pins ``optuna<3`` and cannot prune, and Optuna 2.10's SQLite
storage fails with SQLAlchemy 2 (which MLflow needs). The ``tune`` extra installs a current
Optuna (5.x), which replaces the sweeper's 2.10: install one of ``tune`` and ``sweep``.
``tune.seeds`` trains every trial on several seeds, one after the other (in
``trial_<n>/seed_<s>``): its value is the mean over seeds, and its evaluations are reported
seed after seed (indices continue), so the pruner compares trials on the same seed at the same
point. One seed can crown a lucky configuration (docs/benchmarks.md, Acrobot).
``tune.json`` summarises the study: best value and parameters, trials completed and pruned,
and the environment steps all trials used.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from forceexp.errors import ConfigError, check_int, is_int, message

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random")
PARAM_TYPES = ("float", "int", "categorical")


def check_options(options: dict[str, Any], frequency: Any) -> None:
    """Validate the ``tune`` block before any trial starts.

    Raises:
        ConfigError: naming the key, the value and what was expected.
    """
    check_int("tune.n_trials", options.get("n_trials"), 1)
    check_int("tune.n_jobs", options.get("n_jobs", 1), 1)
    seeds = options.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list) or not seeds or not all(is_int(x) for x in seeds)
    ):
        expected = "null (the config's seed) or a list of ints"
        raise ConfigError(message("tune.seeds", seeds, expected))
    if options.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(message("tune.direction", options["direction"], "maximize | minimize"))
    if options.get("sampler", "tpe") not in SAMPLERS:
        raise ConfigError(message("tune.sampler", options["sampler"], " | ".join(SAMPLERS)))
    if options.get("pruner") is not None and frequency is None:
        raise ConfigError(
            message(
                "evaluation.frequency",
                None,
                "timesteps between evaluations when tune.pruner is set",
                "Trials are pruned on their periodic evaluations",
            )
        )
    params = options.get("params")
    if not isinstance(params, dict) or not params:
        raise ConfigError(message("tune.params", params, "a dict of <key>: {type: ..., ...}"))
    for key, spec in params.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in PARAM_TYPES:
            raise ConfigError(message(f"tune.params.{key}.type", kind, " | ".join(PARAM_TYPES)))
        needed = ("choices",) if kind == "categorical" else ("low", "high")
        missing = [name for name in needed if name not in spec]
        if missing:
            raise ConfigError(message(f"tune.params.{key}", spec, f"keys {list(needed)}"))


def suggest(trial: Any, key: str, spec: dict[str, Any]) -> Any:
    """The trial's value of ``key`` from its spec (float/int with low, high, log; choices)."""
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, list(spec["choices"]))
    method = trial.suggest_float if spec["type"] == "float" else trial.suggest_int
    return method(key, spec["low"], spec["high"], log=bool(spec.get("log", False)))


def _objective(base: dict[str, Any], trial: Any) -> float:
    """One trial: train with the sampled overrides; report evaluations; prune when told."""
    import optuna

    from forceexp.experiment import train

    cfg = OmegaConf.create(base)
    options = base["tune"]
    for key, spec in options["params"].items():
        OmegaConf.update(cfg, key, suggest(trial, key, spec), merge=False)
    folder = Path(base["paths"]["output_dir"]) / f"trial_{trial.number}"
    seeds = options.get("seeds")
    pruned: list[int] = []
    reported = 0  # evaluations reported by earlier seeds: indices continue across seeds
    timesteps, values = 0, []
    for seed in seeds or [cfg.seed]:
        cfg.seed = seed
        cfg.paths.output_dir = str(folder / f"seed_{seed}" if seeds else folder)

        def report(index: int, steps: int, mean: float, offset: int = reported) -> bool:
            trial.report(mean, offset + index)
            if trial.should_prune():
                pruned.append(steps)
                return False
            return True

        results = train(cfg, on_evaluation=report)
        reported += len(results.get("evaluations", []))
        timesteps += int(results["timesteps"])
        trial.set_user_attr("timesteps", timesteps)
        if pruned:
            raise optuna.exceptions.TrialPruned(f"pruned at {pruned[0]} timesteps (seed {seed})")
        values.append(float(results[cfg.optimized_metric]))
    return sum(values) / len(values)


def journal(path: Path) -> Any:
    """Optuna's journal-file storage at ``path`` (shared by worker processes).

    Raises:
        ConfigError: the installed Optuna has no journal storage (before 3.1).
    """
    import optuna

    try:
        from optuna.storages import JournalStorage
    except ImportError:
        raise ConfigError(
            message(
                "tune.n_jobs",
                "> 1",
                f"Optuna >= 3.1 for parallel trials (installed: {optuna.__version__})",
                'Install the tune extra (pip install -e ".[tune]") or set tune.n_jobs=1',
            )
        ) from None
    try:  # Optuna >= 4
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna 3.1-3.6
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalStorage(JournalFileBackend(str(path)))


def _study(options: dict[str, Any], storage: Any, name: str, worker: int) -> Any:
    """Load (or create) the study with this worker's sampler and the pruner."""
    import optuna

    seed = options.get("seed")
    seed = None if seed is None else int(seed) + worker  # workers must not draw the same
    sampler_name = options.get("sampler", "tpe")
    sampler = (
        optuna.samplers.RandomSampler(seed=seed)
        if sampler_name == "random"
        else optuna.samplers.TPESampler(seed=seed)
    )
    pruner_options = options.get("pruner")
    pruner = (
        optuna.pruners.NopPruner()
        if pruner_options is None
        else optuna.pruners.MedianPruner(**pruner_options)
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=options.get("direction", "maximize"),
        load_if_exists=True,
    )


def _work(base: dict[str, Any], path: str, name: str, worker: int, trials: int) -> None:
    """One worker process: run ``trials`` trials of the study shared through ``path``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(base["tune"], journal(Path(path)), name, worker)
    study.optimize(partial(_objective, base), n_trials=trials, catch=())


def tune(cfg: DictConfig) -> dict[str, Any]:
    """Run the study ``cfg.tune`` describes; write and return its ``tune.json`` summary."""
    options = OmegaConf.to_container(cfg.get("tune"), resolve=True) if "tune" in cfg else None
    if not isinstance(options, dict):
        raise ConfigError(message("tune", options, "a tune block (hparams_search=ppo_pruned)"))
    check_options(options, cfg.evaluation.get("frequency"))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    base = OmegaConf.to_container(cfg, resolve=False)
    base["paths"]["output_dir"] = str(output_dir)  # the one hydra: interpolation, resolved
    base["tune"] = options
    name, jobs, trials = str(cfg.task_name), int(options.get("n_jobs", 1)), options["n_trials"]
    if jobs == 1:  # in this process, the study in memory
        study = _study(options, None, name, 0)
        study.optimize(partial(_objective, base), n_trials=trials, catch=())
    else:
        path = output_dir / "optuna.journal"
        study = _study(options, journal(path), name, 0)  # created before the workers start
        shares = [trials // jobs + (i < trials % jobs) for i in range(jobs)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            done = [pool.submit(_work, base, str(path), name, i, n) for i, n in enumerate(shares)]
            for future in done:
                future.result()
        study = _study(options, journal(path), name, 0)
    summary = summarize(study)
    (output_dir / "tune.json").write_text(json.dumps(summary, indent=2))
    log.info("Tuning: %s", json.dumps(summary))
    return summary


def summarize(study: Any) -> dict[str, Any]:
    """Best value and parameters, trial counts and total environment steps of a study."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.trials
    complete = [t for t in trials if t.state == states.COMPLETE]
    return {
        "best_value": study.best_value if complete else None,
        "best_params": study.best_params if complete else None,
        "best_trial": study.best_trial.number if complete else None,
        "trials_complete": len(complete),
        "trials_pruned": sum(t.state == states.PRUNED for t in trials),
        "total_timesteps": sum(int(t.user_attrs.get("timesteps", 0)) for t in trials),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "timesteps": t.user_attrs.get("timesteps"),
            }
            for t in trials
        ],
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Entry point; returns the best value (what a sweeper above this would optimise)."""
    try:
        return tune(cfg)["best_value"]
    except ConfigError as exc:
        raise SystemExit(f"Error: {exc}") from None


if __name__ == "__main__":
    main()

"""Hydra callbacks: MLflow store and Ray on loopback before a multirun, a summary after it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class MlflowStore(Callback):
    """Create the MLflow tables and experiment in the launching process.

    Parallel jobs that each find a fresh SQLite file race to create its tables; creating them
    here, before the launcher starts any job, leaves the jobs only adding runs.

    Args:
        tracking_uri: ``tracker.tracking_uri`` (None: ``<launch dir>/outputs/mlflow.db``).
        experiment: Experiment name (None: ``task_name``).
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Create the store and experiment (idempotent)."""
        from forceexp.observers.tracker import ensure_experiment, store_uri

        uri = store_uri(self.tracking_uri, config.hydra.runtime.cwd)
        name = self.experiment or str(config.get("task_name", "train"))
        experiment_id = ensure_experiment(uri, name)
        log.info("MLflow experiment %r (id %s) ready in %s", name, experiment_id, uri)


class SweepSummary(Callback):
    """Print a table of the sweep's runs when a multirun ends (``conf/hydra/default.yaml``).

    One row per finished job (its overrides, ``optimized_metric``, timesteps, wall time and why
    it stopped, from its ``results.json``), then the ``python -m forceexp.compare`` command that
    groups the jobs over seeds.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Print the summary of ``hydra.sweep.dir`` (nothing when no job finished)."""
        from forceexp.compare import sweep_summary

        metric = config.get("optimized_metric") or "eval_return_mean"
        summary = sweep_summary(Path(config.hydra.sweep.dir), metric)
        if summary is not None:
            print(summary, flush=True)


class RayLoopback(Callback):
    """Keep the local Ray instance of ``hydra/launcher=ray`` on 127.0.0.1.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` when it is imported, which the Ray launcher
    does after this callback; without it Ray replaces 127.0.0.1 by the host's address. Does
    nothing for other launchers, or when ``hydra.launcher.ray.init.address`` names a cluster.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Set the loopback variables (``forceexp.environments.ray_remote``) before Ray starts."""
        launcher = config.hydra.launcher
        if "RayLauncher" not in str(launcher.get("_target_", "")):
            return
        from forceexp.environments.ray_remote import loopback_environment

        loopback_environment(launcher.ray.init.get("address"))

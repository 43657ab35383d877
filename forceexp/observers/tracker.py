"""MLflow tracking of a training run: params, tags, metrics with steps and artifacts.

``mlflow`` is imported only here, and only when the ``tracker`` group is not ``none``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from forceexp import tags
from forceexp.errors import ConfigError, message
from forceexp.observers.base import Observer, steps_per_second
from forceexp.observers.run_info import RunInfo

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

log = logging.getLogger(__name__)
DEFAULT_STORE = Path("outputs") / "mlflow.db"
MAX_PARAM_LENGTH = 6000
BATCH_PARAMS = 100
OVERRIDES_TAG = "forceexp.overrides"
SWEEP_TAG = "forceexp.sweep_dir"
SEED_TAG = "seed"
#: exported-policy files (forceexp.export) logged as the ``policy/`` artifact
POLICY_SUFFIXES = (".onnx", ".torchscript.pt", ".policy.json", ".policy.npz")


def store_uri(tracking_uri: str | None, root: str | Path) -> str:
    """The tracking URI: given (``sqlite:///``, ``http(s)://``) or ``<root>/outputs/mlflow.db``."""
    if tracking_uri is None:
        path = (Path(root) / DEFAULT_STORE).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if not isinstance(tracking_uri, str) or tracking_uri.startswith(("file:", "./", "/")):
        raise ConfigError(
            message(
                "tracker.tracking_uri",
                tracking_uri,
                "null, 'sqlite:///<abs path>' or an http(s):// server URL",
                "MLflow 3 refuses its old file store",
            )
        )
    return tracking_uri


def artifact_root(uri: str) -> str | None:
    """Artifact location beside a SQLite store (``<db dir>/mlartifacts``); servers choose theirs."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` beside a sqlite store (nothing for servers).

    MLflow creates the store's tables on first use; processes starting at once on a fresh
    ``mlflow.db`` otherwise race (``table ... already exists``).
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: ensure_experiment retries instead
        yield
        return
    path = Path(uri[len("sqlite:///") :]).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_experiment(uri: str, name: str, attempts: int = 5) -> str:
    """Create the store (tables) and experiment ``name`` if missing; return its id.

    Safe when several processes do it at once: a file lock serialises the creation on sqlite
    stores, and a failed attempt is retried (``attempts`` times in all).
    """
    for attempt in range(attempts):
        try:
            with store_lock(uri):
                return _ensure_experiment(uri, name)
        except Exception:
            if attempt + 1 == attempts:
                raise
            log.warning("MLflow store %s busy (attempt %d); retrying", uri, attempt + 1)
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def _ensure_experiment(uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(uri))
    except MlflowException:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """Flatten nested dicts/lists to ``{'a.b.0': 'value'}`` strings (MLflow params)."""
    if isinstance(node, Mapping):
        items = node.items()
    elif isinstance(node, list | tuple):
        items = enumerate(node)
    else:
        return {prefix: str(node)[:MAX_PARAM_LENGTH]}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class MlflowTracker(Observer):
    """One MLflow run; as an observer it logs episode and update metrics at ``agent.timesteps``.

    Args:
        tracking_uri: Store URI (see ``store_uri``).
        experiment: Experiment name (created when missing).
        run_name: Run name shown in the UI.
        tags: Run tags.
        flush_every: Buffered metric values sent in one batch.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        flush_every: int = 500,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.experiment_id = ensure_experiment(tracking_uri, experiment)
        with store_lock(tracking_uri):  # the client may touch (create) the store's tables
            self.client = MlflowClient(tracking_uri)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id: str = run.info.run_id
        self.flush_every = flush_every
        self._metrics: list[Any] = []
        self.boards: list[Path] = []  # TensorBoard folders of the watched agent
        self.checkpoints: list[Path] = []  # saver folders of the watched agent

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values as strings), in batches of the server's limit."""
        from mlflow.entities import Param

        items = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for start in range(0, len(items), BATCH_PARAMS):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH_PARAMS])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer metric values at ``step``; sent every ``flush_every`` values and on ``flush``."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), stamp, int(step)) for k, v in metrics.items())
        if len(self._metrics) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Send buffered metric values."""
        while self._metrics:
            batch, self._metrics = self._metrics[:1000], self._metrics[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifacts(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory's contents (skipped when missing)."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        """Flush and mark the run ``FINISHED`` or ``FAILED``."""
        self.flush()
        self.client.set_terminated(self.run_id, status=status)

    # ------------------------------------------------------------------ observer hooks
    def watch(self, agent: Agent) -> None:
        """Log the agent's episodes and updates from now on.

        Its TensorBoard and saver folders are noted; ``track`` logs them as artifacts.
        """
        from forceexp.observers.saver import Saver
        from forceexp.observers.summarizer import Summarizer

        agent.observers.append(self)
        self.boards += [o.log_dir for o in agent.observers if isinstance(o, Summarizer)]
        self.checkpoints += [o.directory for o in agent.observers if isinstance(o, Saver)]

    def on_episode(self, agent: Agent, slot: int, episode_return: float, length: int) -> None:
        """Log episode return and length."""
        metrics = {tags.EPISODE_RETURN: episode_return, tags.EPISODE_LENGTH: length}
        self.log_metrics(metrics, agent.timesteps)

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Log update metrics and ``charts/SPS`` (the summarizer's value)."""
        rate = steps_per_second(agent)
        values = metrics if rate is None else {**metrics, tags.STEPS_PER_SECOND: rate}
        self.log_metrics(values, agent.timesteps)

    def on_metrics(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Log metrics from outside an update (evaluations during training)."""
        self.log_metrics(metrics, agent.timesteps)

    def close(self, agent: Agent) -> None:
        """Send buffered values when the agent closes (the run stays open for results)."""
        self.flush()


class NullTracker:
    """Tracker used when ``tracker=none``: watches nothing."""

    def watch(self, agent: Agent) -> None:
        """Do nothing."""


def project_root() -> Path:
    """Hydra's launch directory (or the current one outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()


def _start(cfg: DictConfig, node: Mapping[str, Any], run: RunInfo) -> MlflowTracker:
    unknown = set(node) - {"tracking_uri", "experiment", "tags"}
    if unknown:
        raise ConfigError(
            message("tracker", sorted(unknown), "keys tracking_uri, experiment, tags")
        )
    uri = store_uri(node.get("tracking_uri"), project_root())
    run_tags = run.tags()
    run_tags.update({str(k): str(v) for k, v in (node.get("tags") or {}).items()})
    experiment = node.get("experiment") or run.task_name
    tracker = MlflowTracker(uri, experiment, run_name=run.name, tags=run_tags)
    tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
    return tracker


def _finish(tracker: MlflowTracker, output_dir: Path) -> None:
    """Log ``results.json`` (values as metrics of the tag vocabulary) and the artifacts."""
    results_file = output_dir / "results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text())
        numbers = {
            tags.result_tag(k): v
            for k, v in results.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        tracker.log_metrics(numbers, int(results.get("timesteps", 0)))
        tracker.log_artifacts(results_file)
    tracker.log_artifacts(output_dir / ".hydra", ".hydra")
    for board in tracker.boards:
        tracker.log_artifacts(board, f"tensorboard/{board.name}")
    for directory in tracker.checkpoints:
        for path in final_model(directory):
            tracker.log_artifacts(path, "model")
    for directory in {*tracker.checkpoints, output_dir / "export"}:
        for path in sorted(Path(directory).glob("*")):
            if path.name.endswith(POLICY_SUFFIXES):
                tracker.log_artifacts(path, "policy")


def final_model(directory: Path) -> list[Path]:
    """The newest checkpoint in ``directory`` (per ``checkpoint.json``) and its side files."""
    from forceexp.checkpoints import read_index

    entries = read_index(Path(directory))
    if not entries:
        return []
    latest = Path(directory) / entries[-1]["file"]
    stem = latest.name.removesuffix(latest.suffix)
    return [p for p in sorted(latest.parent.glob(f"{stem}*")) if p.name.split(".")[0] == stem]


def progress(output_dir: Path, cfg: DictConfig, uri: str | None) -> None:
    """Log where to look at the run: its directory, TensorBoard and the MLflow UI."""
    log.info("Run directory: %s", output_dir.resolve())
    summarizer = cfg.get("summarizer")
    if isinstance(summarizer, Mapping | DictConfig) and summarizer.get("directory"):
        log.info("TensorBoard: tensorboard --logdir %s", Path(summarizer.directory).resolve())
    if uri is not None:
        shown = uri if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}"
        log.info("MLflow: %s", shown)


@contextmanager
def track(cfg: DictConfig, run: RunInfo) -> Iterator[MlflowTracker | NullTracker]:
    """Track the training inside the block with ``cfg.tracker`` (nothing when it is empty).

    The MLflow run is named ``run.name`` and tagged with ``run.tags()``.
    """
    node = cfg.get("tracker")
    output_dir = Path(cfg.paths.output_dir)
    if not node:
        yield NullTracker()
        progress(output_dir, cfg, None)
        return
    tracker = _start(cfg, OmegaConf.to_container(node, resolve=True), run)
    try:
        yield tracker
    except BaseException:
        tracker.end("FAILED")
        raise
    _finish(tracker, output_dir)
    tracker.end("FINISHED")
    progress(output_dir, cfg, tracker.uri)

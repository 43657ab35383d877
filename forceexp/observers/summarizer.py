"""TensorBoard summarizer observer: labels filter which tags are written (torch SummaryWriter)."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from forceexp import tags
from forceexp.errors import ConfigError, message, unknown_name
from forceexp.observers.base import Observer, steps_per_second

if TYPE_CHECKING:
    from forceexp.agents.agent import Agent

log = logging.getLogger(__name__)
CUSTOM_TYPES = ("scalar", "histogram", "image", "text")
_KEYS = ("directory", "filename", "labels", "frequency", "flush", "custom")


def parse_labels(labels: Any) -> frozenset[str]:
    """Normalise ``'all'`` or a list of labels (old aliases accepted) to a set of labels."""
    if labels == "all":
        return frozenset(tags.LABELS)
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, Sequence):
        raise ConfigError(message("summarizer.labels", labels, "'all' or a list of labels"))
    valid = set(tags.LABELS) | set(tags.LABEL_ALIASES)
    parsed = set()
    for label in labels:
        if label not in valid:
            raise unknown_name("summarizer.labels", label, valid, "label")
        parsed.add(tags.LABEL_ALIASES.get(label, label))
    return frozenset(parsed)


def parse_custom(custom: Any) -> dict[str, str]:
    """Check ``custom=dict(name=dict(type=...))``; return ``{name: type}``."""
    if custom is None:
        return {}
    if not isinstance(custom, Mapping):
        raise ConfigError(message("summarizer.custom", custom, "a dict name -> dict(type=...)"))
    parsed = {}
    for name, spec in custom.items():
        if not isinstance(spec, Mapping) or set(spec) != {"type"}:
            raise ConfigError(message(f"summarizer.custom.{name}", spec, "dict(type=<type>)"))
        if spec["type"] not in CUSTOM_TYPES:
            raise unknown_name(f"summarizer.custom.{name}.type", spec["type"], CUSTOM_TYPES, "type")
        parsed[name] = spec["type"]
    return parsed


def image_format(value: np.ndarray) -> str:
    """TensorBoard ``dataformats`` of an image array: HW, CHW or HWC."""
    if value.ndim == 2:
        return "HW"
    if value.ndim == 3:
        channels_first = value.shape[0] in (1, 3, 4) and value.shape[-1] not in (1, 3, 4)
        return "CHW" if channels_first else "HWC"
    raise ConfigError(message("summarize.value", value.shape, "an image of shape HW, HWC or CHW"))


class _GraphView(torch.nn.Module):
    """Traceable view of an ActorCritic: states in, distribution parameters and value out."""

    def __init__(self, policy: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.policy, self.names = policy, names

    def forward(self, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = dict(zip(self.names, states, strict=True))
        features = self.policy.network(batch)
        outputs = []
        for dist in self.policy.distributions(features, {}).values():
            outputs.extend(dist.parameters().values())
        outputs.append(self.policy.value_from(features, batch))
        return tuple(outputs)


#: Tensorforce's run subfolder of a summarizer spec without ``filename`` (``strftime``)
DEFAULT_FILENAME = "summary-%Y%m%d-%H%M%S"


class Summarizer(Observer):
    """Write TensorBoard summaries of an agent.

    Args:
        directory: Where event files go.
        filename: Run sub-directory (``strftime`` pattern) or None to write into ``directory``.
        labels: ``'all'`` or a list of labels from ``forceexp.tags.LABELS``.
        frequency: Write per-timestep values (step reward, distribution) every this many
            timesteps; episode values are written every episode, update values every update.
        flush: Seconds between flushes to disk.
        custom: ``dict(name=dict(type='scalar'|'histogram'|'image'|'text'))`` for
            ``agent.summarize``.
    """

    def __init__(
        self,
        directory: str | Path,
        filename: str | None = None,
        labels: Any = "all",
        frequency: int = 1,
        flush: float = 10,
        custom: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 1:
            raise ConfigError(message("summarizer.frequency", frequency, "an int >= 1 (timesteps)"))
        if not isinstance(flush, int | float) or flush <= 0:
            raise ConfigError(message("summarizer.flush", flush, "a number of seconds > 0"))
        self.labels = parse_labels(labels)
        self.custom = parse_custom(custom)
        self.frequency, self.flush = frequency, flush
        self.log_dir = Path(directory)
        if filename:
            self.log_dir = self.log_dir / time.strftime(filename)
        self._writer: Any = None
        self._last_step_summary = self._last_distribution = -frequency
        self._graph_done = "graph" not in self.labels

    @classmethod
    def from_spec(cls, spec: Any) -> Summarizer:
        """Build from a directory string or a dict with the constructor's keys.

        As in Tensorforce, a spec without ``filename`` writes into a ``summary-<date-time>``
        subfolder of ``directory`` (``DEFAULT_FILENAME``); ``filename=None`` writes into
        ``directory`` itself.
        """
        if isinstance(spec, str | Path):
            spec = {"directory": spec}
        if not isinstance(spec, Mapping) or "directory" not in spec:
            raise ConfigError(message("summarizer", spec, "a directory or dict(directory=...)"))
        spec = {"filename": DEFAULT_FILENAME, **spec}
        if "summaries" in spec:  # Tensorforce 0.6.1+'s name for labels
            if "labels" in spec and spec["labels"] != spec["summaries"]:
                raise ConfigError("summarizer: give labels= or summaries= (its alias), not both")
            spec["labels"] = spec.pop("summaries")
        unknown = set(spec) - set(_KEYS)
        if unknown:
            raise unknown_name("summarizer", sorted(unknown)[0], (*_KEYS, "summaries"), "key")
        return cls(**spec)

    @property
    def writer(self) -> Any:
        """The SummaryWriter, created on first use (tensorboard is imported lazily)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=int(self.flush))
        return self._writer

    def wants(self, tag: str) -> bool:
        """Whether ``tag`` belongs to an enabled label."""
        return tags.label_of(tag) in self.labels

    # ------------------------------------------------------------------ hooks
    def on_act(
        self,
        agent: Agent,
        states: dict[str, Any],
        masks: dict[str, Any],
        actions: dict[str, np.ndarray],
        slots: np.ndarray,
    ) -> None:
        """Write the graph once and, every ``frequency`` timesteps, the action distribution."""
        policy = getattr(agent, "policy", None)
        if not self._graph_done and policy is not None:
            self._graph_done = True
            self._write_graph(policy, states)
        if "distribution" in self.labels and policy is not None and self._due(agent):
            self._write_distribution(agent, policy, states, masks)

    def on_observe(
        self, agent: Agent, rewards: np.ndarray, terminals: np.ndarray, slots: np.ndarray
    ) -> None:
        """Write the mean step reward every ``frequency`` timesteps."""
        due = agent.timesteps - self._last_step_summary >= self.frequency
        if due and self.wants(tags.REWARD_STEP):
            self._last_step_summary = agent.timesteps
            self.writer.add_scalar(tags.REWARD_STEP, float(np.mean(rewards)), agent.timesteps)

    def on_episode(self, agent: Agent, slot: int, episode_return: float, length: int) -> None:
        """Write episode return and length."""
        self.on_metrics(agent, {tags.EPISODE_RETURN: episode_return, tags.EPISODE_LENGTH: length})

    def on_update(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Write the update metrics of enabled labels, ``charts/SPS`` and weight histograms.

        Histograms are written with the ``variables`` label only.
        """
        rate = steps_per_second(agent)
        values = metrics if rate is None else {**metrics, tags.STEPS_PER_SECOND: rate}
        self.on_metrics(agent, values)
        policy = getattr(agent, "policy", None)
        if "variables" in self.labels and policy is not None:
            for name, param in policy.named_parameters():
                self.writer.add_histogram(
                    f"{tags.VARIABLES}/{name}", param.detach().cpu(), agent.timesteps
                )

    def on_metrics(self, agent: Agent, metrics: dict[str, float]) -> None:
        """Write the scalar metrics whose label is enabled, at ``agent.timesteps``."""
        for tag, value in metrics.items():
            if self.wants(tag):
                self.writer.add_scalar(tag, value, agent.timesteps)

    def summarize(self, agent: Agent, summary: str, value: Any, step: int | None = None) -> None:
        """Write custom summary ``summary`` (declared in ``custom``) at ``step`` (or timesteps)."""
        if summary not in self.custom:
            raise unknown_name("summarize.summary", summary, self.custom, "custom summary")
        step = agent.timesteps if step is None else int(step)
        kind = self.custom[summary]
        if kind == "text":
            self.writer.add_text(summary, str(value), step)
            return
        array = np.asarray(value)
        if kind == "scalar":
            if array.size != 1:
                raise ConfigError(message("summarize.value", array.shape, "a scalar"))
            self.writer.add_scalar(summary, float(array), step)
        elif kind == "histogram":
            self.writer.add_histogram(summary, array.astype(np.float64).ravel(), step)
        else:
            self.writer.add_image(summary, array, step, dataformats=image_format(array))

    def close(self, agent: Agent) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ helpers
    def _due(self, agent: Agent) -> bool:
        if agent.timesteps - self._last_distribution < self.frequency:
            return False
        self._last_distribution = agent.timesteps
        return True

    def _write_graph(self, policy: torch.nn.Module, states: dict[str, Any]) -> None:
        names = list(states)
        inputs = tuple(policy.normalize(states, update=False)[n][:1] for n in names)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                self.writer.add_graph(_GraphView(policy, names), inputs)
        except (RuntimeError, TypeError, ValueError) as exc:  # tracing is best effort
            log.warning("summarizer: could not trace the model graph: %s", exc)

    @torch.no_grad()
    def _write_distribution(
        self, agent: Agent, policy: torch.nn.Module, states: dict[str, Any], masks: dict[str, Any]
    ) -> None:
        features = policy.network(policy.normalize(states, update=False))
        for action, dist in policy.distributions(features, masks).items():
            for kind, values in dist.parameters().items():
                values = values.float().cpu()
                tag = f"{tags.DISTRIBUTION}/{action}-{kind}"
                if values.shape[-1] > 1 and kind == "probabilities":
                    flat = values.reshape(-1, values.shape[-1]).mean(0)
                    for index, prob in enumerate(flat.tolist()):
                        self.writer.add_scalar(f"{tag}{index}", prob, agent.timesteps)
                else:
                    self.writer.add_scalar(tag, float(values.mean()), agent.timesteps)


def write_hparams(
    directory: str | Path,
    hparams: Mapping[str, Any],
    metrics: Mapping[str, float],
    step: int,
    varying: Collection[str] = (),
) -> None:
    """Write TensorBoard HParams into ``directory``: hyperparameters and final metrics.

    Args:
        directory: The run's event folder (its HParams row is that run).
        hparams: Name -> bool, int, float or str (None values are left out).
        metrics: Final metric tags -> values, also written as scalars at ``step``.
        step: Timesteps at the end of training.
        varying: Names in ``hparams`` that the sweep varies; the HParams tab lists them first.
    """
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    experiment, start, end = hparams_summaries(dict(hparams), dict(metrics))
    plugin = experiment.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(plugin.content)
    for info in data.experiment.hparam_infos:
        info.differs = info.name in varying
    plugin.content = data.SerializeToString()
    with SummaryWriter(log_dir=str(directory)) as writer:
        for summary in (experiment, start, end):
            writer.file_writer.add_summary(summary, step)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)

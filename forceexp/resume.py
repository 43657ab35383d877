"""``train.py +resume=...``: where a run continues from, and its counts across interruptions.

``+resume=<run or checkpoint dir>`` continues from that folder's newest checkpoint;
``+resume=auto`` (what ``python -m forceexp.benchmark --resume`` passes) looks in the run's own
folder: a finished run (``results.json``) is not trained again, a checkpointed one continues,
anything else starts afresh. Either way a ``Segment`` carries the ``RunState`` of the earlier
segments into this one (evaluation schedule, best weights, curve, wall time) and writes it
beside every checkpoint, so the final ``results.json`` describes the whole run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from forceexp.checkpoints import INDEX
from forceexp.errors import ConfigError
from forceexp.execution.milestones import PeriodicEvaluation, ReturnThreshold
from forceexp.execution.run_state import RunState
from forceexp.observers.run_info import RunInfo, key_of
from forceexp.observers.saver import Saver

log = logging.getLogger(__name__)

BEST = "best"  # folder (in the checkpoint folder) of the best-evaluated weights, when kept


def job_overrides(run: RunInfo) -> list[str]:
    """The overrides that identify the job (``resume`` itself left out)."""
    return [o for o in run.overrides if key_of(o) != "resume"]


def resume_source(
    cfg: DictConfig, output_dir: Path, run: RunInfo
) -> tuple[Path | None, dict[str, Any] | None]:
    """Where to continue from: a checkpoint folder (None: afresh), or a finished run's results.

    Results come back for ``resume=auto`` on a run that finished already (nothing is trained).

    Raises:
        ConfigError: ``resume=auto`` without a checkpoint saver, or the folder holds another
            job's run (its ``run_state.json`` names different overrides).
        CheckpointError: ``resume=<dir>`` has no checkpoint index.
    """
    from forceexp.agents.persistence import resume_directory

    value = cfg.get("resume")
    if not value:
        return None, None
    if value != "auto":
        return resume_directory(value), None
    directory = _saver_directory(cfg)
    state = RunState.load(directory)
    finished = output_dir / "results.json"
    if state is None:
        if finished.is_file() or (directory / INDEX).is_file():
            raise ConfigError(
                f"resume=auto: {output_dir} holds a run without {directory}/run_state.json, so "
                "whose it is cannot be told; give +resume=<dir> explicitly or a fresh folder"
            )
        return None, None
    if state.overrides != job_overrides(run):
        raise ConfigError(
            f"resume=auto: {output_dir} holds the run of {state.overrides}, not of this job "
            f"{job_overrides(run)}; rerun with the same grid and overrides, or a fresh folder"
        )
    if finished.is_file():
        from forceexp.compare import read_job

        log.info("resume=auto: %s finished already; its results stand", output_dir)
        return None, read_job(finished)[1]  # a damaged file is named, not a traceback
    return (directory if (directory / INDEX).is_file() else None), None


def _saver_directory(cfg: DictConfig) -> Path:
    saver = cfg.get("saver")
    if not saver or saver.get("format", "checkpoint") != "checkpoint":
        raise ConfigError(
            "resume=auto: continues a run from its own full checkpoints; add saver=checkpoint "
            f"(saver.unit/frequency as wanted), got saver={saver!r}"
        )
    return Path(saver.directory)


def checkpoint_saver(agent: Any) -> Saver | None:
    """The agent's first saver writing full checkpoints (None: no run state is written)."""
    savers = [o for o in agent.observers if isinstance(o, Saver) and o.format == "checkpoint"]
    return savers[0] if savers else None


class Segment:
    """This run's part of a possibly interrupted run: the earlier parts' state, and this one's.

    Args:
        run: The job (its overrides identify the run in ``run_state.json``).
        agent: The agent as built or restored (its counters are where this segment starts).
        source: The checkpoint folder resumed from (None: a fresh run).
    """

    def __init__(self, run: RunInfo, agent: Any, source: Path | None) -> None:
        self.source, self.saver = source, checkpoint_saver(agent)
        prior = None if source is None else RunState.load(source)
        if prior is not None and prior.timesteps != agent.timesteps:
            log.warning(
                "%s/run_state.json is at %d timesteps, its checkpoint at %d: the earlier "
                "curve and evaluations are dropped",
                source,
                prior.timesteps,
                agent.timesteps,
            )
            prior = None
        if prior is None:
            prior = RunState(job_overrides(run), agent.timesteps, agent.episodes)
        if source is not None:
            prior.resumed_at = [*prior.resumed_at, agent.timesteps]
        self.prior = prior
        self.updates = agent.updates if source is not None else 0  # before this segment
        self.runner: Any = None
        self.solve: ReturnThreshold | None = None
        self.periodic: PeriodicEvaluation | None = None
        self.start = 0.0  # perf_counter when training starts (``watch``)

    def watch(
        self, runner: Any, solve: ReturnThreshold | None, periodic: PeriodicEvaluation | None
    ) -> None:
        """Continue the evaluation schedule and best weights; write the state at checkpoints.

        With a checkpoint saver and ``keep_best``, the best weights are also saved (``best/``
        in the checkpoint folder) so a later segment can still finish with them.
        """
        self.runner, self.solve, self.periodic = runner, solve, periodic
        self.start = time.perf_counter()  # the run's wall time counts training only
        prior = self.prior
        if periodic is not None:
            if self.saver is not None and periodic.keep_best and periodic.save_best is None:
                periodic.save_best = str(self.saver.directory / BEST)
            due = prior.next_evaluation
            history = [(int(t), float(r)) for t, r in prior.evaluations]
            best = None if prior.best is None else (int(prior.best[0]), float(prior.best[1]))
            periodic.resume(
                prior.timesteps,
                prior.episodes,
                history,
                best,
                periodic.frequency if due is None else due,
                self._best_state(best),
            )
        if self.saver is not None:
            self.saver.listeners.append(lambda agent, path: self.write(agent.timesteps))
            self.write(prior.timesteps)  # marks the folder as this job's from the start

    def _best_state(self, best: tuple[int, float] | None) -> dict[str, Any] | None:
        """The best-evaluated weights an earlier segment saved (None: none to keep)."""
        if best is None or self.source is None or not (self.source / BEST).is_dir():
            return None
        from forceexp.agents.persistence import read

        _, payload = read(self.source / BEST, "best-model", None)
        return payload.state

    def state(self, timesteps: int | None = None) -> RunState:
        """The whole run's state now (``timesteps``: the agent's count, else prior + runner)."""
        prior, runner = self.prior, self.runner
        wall = time.perf_counter() - self.start
        done = 0 if runner is None else runner.timesteps
        solved = (prior.solved_timesteps, prior.solved_seconds)
        if solved[0] is None and self.solve is not None and self.solve.timesteps is not None:
            seconds = self.solve.seconds or 0.0
            solved = (prior.timesteps + self.solve.timesteps, prior.wall_seconds + seconds)
        periodic = self.periodic
        returns = [] if runner is None else runner.episode_returns
        lengths = [] if runner is None else runner.episode_timesteps
        return RunState(
            overrides=prior.overrides,
            timesteps=prior.timesteps + done if timesteps is None else timesteps,
            episodes=prior.episodes + (0 if runner is None else runner.episodes),
            wall_seconds=prior.wall_seconds + wall,
            episode_returns=prior.episode_returns + list(returns),
            episode_lengths=prior.episode_lengths + list(lengths),
            evaluations=[[t, r] for t, r in periodic.history] if periodic else [],
            best=None if periodic is None or periodic.best is None else list(periodic.best),
            next_evaluation=None if periodic is None else periodic.due,
            solved_timesteps=solved[0],
            solved_seconds=solved[1],
            resumed_at=prior.resumed_at,
        )

    def write(self, timesteps: int) -> None:
        """Save the state beside the checkpoints (no checkpoint saver: nothing).

        A state JSON cannot hold (a non-finite return) is skipped with a warning rather than
        ending the training; a resume then drops the earlier curve (see ``__init__``).
        """
        if self.saver is None:
            return
        try:
            self.state(timesteps).save(self.saver.directory)
        except ValueError as exc:
            log.warning("run_state.json not written at %d timesteps: %s", timesteps, exc)

"""A run's own progress beside its checkpoints, so an interrupted run continues where it stopped.

An agent checkpoint holds what the agent learned; ``run_state.json`` (written into the
checkpoint folder right after each checkpoint) holds what the run counted up to the same
moment: timesteps, episodes and wall seconds, every finished episode's return and length (the
learning curve), the evaluations during training and the best one, when the next evaluation
falls, and the overrides of the job it belongs to. A resumed ``train.py`` reads it back, so the
``results.json`` of a run interrupted any number of times describes the whole run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from forceexp.checkpoints import atomic_write
from forceexp.errors import CheckpointError

FILE = "run_state.json"


@dataclass
class RunState:
    """Counters and histories of a run, over all of its segments (each resume starts one).

    Args:
        overrides: The job's Hydra overrides (``resume`` ones left out): which run this is.
        timesteps: Timesteps trained (the agent's count at the checkpoint).
        episodes: Episodes finished.
        wall_seconds: Training wall time, all segments together.
        episode_returns: Return of every finished training episode, in order.
        episode_lengths: Their lengths.
        evaluations: ``[timesteps, mean return]`` of each evaluation during training.
        best: ``[timesteps, score]`` of the best evaluation (None: none yet).
        next_evaluation: When the next evaluation is due, in its unit (None: evaluations off).
        solved_timesteps: Timesteps when the rolling return reached ``solve_return`` (None: not
            yet).
        solved_seconds: Wall seconds at that moment.
        resumed_at: Timesteps at which each later segment began.
    """

    overrides: list[str]
    timesteps: int = 0
    episodes: int = 0
    wall_seconds: float = 0.0
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    evaluations: list[list[float]] = field(default_factory=list)
    best: list[float] | None = None
    next_evaluation: int | None = None
    solved_timesteps: int | None = None
    solved_seconds: float | None = None
    resumed_at: list[int] = field(default_factory=list)

    def save(self, directory: Path) -> Path:
        """Write ``<directory>/run_state.json`` atomically; return its path."""
        path = Path(directory) / FILE
        text = json.dumps(asdict(self), allow_nan=False)
        atomic_write(path, lambda tmp: tmp.write_text(text))
        return path

    @classmethod
    def load(cls, directory: Path) -> RunState | None:
        """The state in ``<directory>/run_state.json``, or None when there is none.

        Raises:
            CheckpointError: the file is unreadable or a field has the wrong type (named).
        """
        path = Path(directory) / FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "overrides" not in data:
            raise CheckpointError(
                f"{path}: unknown keys {unknown} or no 'overrides'; expected the keys "
                f"{sorted(known)}"
            )
        for name, value in data.items():
            if not _valid(name, value):
                raise CheckpointError(f"{path}: {name}={value!r:.80} has the wrong type")
        return cls(**data)


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _valid(name: str, value: Any) -> bool:
    """Whether ``value`` fits the field ``name`` (JSON gives lists, ints and floats)."""
    if name == "overrides":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if name in ("timesteps", "episodes"):
        return _count(value)
    if name == "wall_seconds":
        return _number(value) and value >= 0
    if name == "episode_returns":
        return isinstance(value, list) and all(_number(v) for v in value)
    if name in ("episode_lengths", "resumed_at"):
        return isinstance(value, list) and all(_count(v) for v in value)
    if name == "evaluations":
        return isinstance(value, list) and all(_pair(v) for v in value)
    if name == "best":
        return value is None or _pair(value)
    if name in ("next_evaluation", "solved_timesteps"):
        return value is None or _count(value)
    return value is None or _number(value)  # solved_seconds


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and _count(value[0]) and _number(value[1])

"""Who a run is: readable run name, sweep overrides, git state and command line (plain values).

MLflow run names, TensorBoard run folders and the tags that tell runs apart all come from one
``RunInfo``; ``forceexp.command.describe_run`` fills it from the Hydra config.
"""

from __future__ import annotations

import getpass
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+\-]+")


@dataclass(frozen=True)
class RunInfo:
    """What tells a run apart from its siblings.

    Args:
        name: Readable run name (see ``run_name``).
        agent: Agent option name, e.g. ``ppo``.
        env: Environment option name, e.g. ``cartpole``.
        seed: The run's seed (None: unseeded).
        task_name: Hydra ``task_name`` (the MLflow experiment by default).
        command: Command line that reproduces this run (one job of a sweep: its overrides).
        source: Script that ran, e.g. ``train.py``.
        overrides: This run's Hydra overrides, ``key=value`` strings.
        swept: The overrides among ``overrides`` whose key the sweep varies.
        sweep_dir: The multirun's sweep folder (None for a single run).
        job_num: Job number inside the multirun (None for a single run).
        git_commit: HEAD commit of the project (``'unknown'`` outside git).
        git_dirty: Whether tracked files differ from HEAD (None outside git).
    """

    name: str
    agent: str
    env: str
    seed: int | None
    task_name: str
    command: str
    source: str
    overrides: tuple[str, ...] = ()
    swept: tuple[str, ...] = ()
    sweep_dir: str | None = None
    job_num: int | None = None
    git_commit: str = "unknown"
    git_dirty: bool | None = None

    def tags(self) -> dict[str, str]:
        """MLflow run tags; the ``mlflow.*`` ones fill the UI's Source, User and commit."""
        found = {
            "agent": self.agent,
            "env": self.env,
            "seed": str(self.seed),
            "task_name": self.task_name,
            "command": self.command,
            "git_commit": self.git_commit,
            "git_dirty": str(self.git_dirty).lower(),
            "forceexp.overrides": " ".join(self.overrides),
            "mlflow.source.name": self.source,
            "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": self.git_commit,
            "mlflow.user": user(),
        }
        if self.sweep_dir is not None:
            found["forceexp.sweep_dir"] = self.sweep_dir
            found["forceexp.job_num"] = str(self.job_num)
        return found


def sweep_keys(overrides: Iterable[str]) -> set[str]:
    """Keys of the overrides that sweep several values (``a=1,2``, ``b=range(3)``, ...)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}


def key_of(override: str) -> str:
    """The key of ``key=value`` without Hydra's ``+``/``++``/``~`` prefix."""
    return override.split("=", 1)[0].lstrip("+~")


def run_name(agent: str, env: str, varying: Iterable[str], seed: int | None) -> str:
    """``<agent>-<env>[-<key>=<value>...][-s<seed>]``: one readable name per run of a sweep.

    Args:
        agent: Agent option name.
        env: Environment option name.
        varying: ``key=value`` overrides that vary in the sweep; ``agent``, ``env`` and ``seed``
            are dropped (already in the name) and each key is shortened to its last part.
        seed: The seed (None: no ``-s`` part).
    """
    parts = [agent, env]
    for override in varying:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        if key not in ("agent", "env", "seed"):
            parts.append(f"{key.rsplit('.', 1)[-1]}={value}")
    if seed is not None:
        parts.append(f"s{seed}")
    return _UNSAFE.sub("_", "-".join(parts))


def git_state(directory: str | Path) -> tuple[str, bool | None]:
    """HEAD commit and dirty state of the git repository holding ``directory``.

    ``('unknown', None)`` outside git. Dirty: tracked files differ from HEAD (untracked files
    do not count).
    """
    head = _git(directory, "rev-parse", "HEAD")
    if head is None:
        return "unknown", None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return head, None if status is None else bool(status)


def _git(directory: str | Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def user() -> str:
    """The login name (``'unknown'`` when the system has none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"

"""The command-line layer of ``train.py`` / ``pretrain.py``: checks, clean errors, run names.

Kept apart from ``experiment.py`` (what a run does) because it reads Hydra's runtime state
(the command line, the sweep, the config loader) rather than the composed config alone.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from forceexp.errors import ConfigError, unknown_name
from forceexp.observers.run_info import RunInfo, git_state, key_of, run_name, sweep_keys


def run_command(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> float:
    """The body of ``train.py``/``pretrain.py``: check, run ``task(cfg)``, return the sweep metric.

    A config error ends the command with one ``Error: ...`` line (no traceback), and the run
    dir Hydra made for it is removed while it holds nothing but Hydra's own files.
    """
    try:
        check_choices()
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(
                f"Missing mandatory value: {missing[0]}; set it on the command line "
                f"({missing[0]}=...)"
            )
        results = task(cfg)
    except (ConfigError, OmegaConfBaseException) as exc:
        remove_unused_run_dir(Path(cfg.paths.output_dir))
        raise SystemExit(f"Error: {exc}") from None
    return float(results[cfg.optimized_metric])


def check_choices() -> None:
    """Refuse a config-group option named on the command line that does not exist.

    Hydra skips a missing option of an ``optional`` group (``experiment``, ``tuning``,
    ``local``) without a word, so ``experiment=foo`` would train the defaults. Options picked
    by the defaults list itself (``tuning: ${agent}_${env}``) may still be absent.

    Raises:
        ConfigError: ``<group>: unknown option '<name>'; did you mean ...? Valid: ...``.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not GlobalHydra.instance().is_initialized():
        return  # composed by the compose API (tests): no command line
    hydra = HydraConfig.get()
    named = {item.split("=", 1)[0].lstrip("+~") for item in hydra.overrides.task}
    loader = GlobalHydra.instance().config_loader()
    for group, choice in hydra.runtime.choices.items():
        if group in named and choice is not None and not group.startswith("hydra/"):
            options = loader.get_group_options(group)
            if choice not in options:
                raise unknown_name(group, choice, options, "option")


def remove_unused_run_dir(directory: Path) -> None:
    """Delete ``directory`` (and empty parents) if it holds only ``.hydra/`` and ``*.log``.

    The working directory and the folders above it are never deleted.
    """
    root, target = Path.cwd().resolve(), directory.resolve()
    if not target.is_dir() or target == root or target in root.parents:
        return
    if not all(entry.name == ".hydra" or entry.suffix == ".log" for entry in target.iterdir()):
        return
    shutil.rmtree(target)
    for parent in target.parents:
        if parent == root or root not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def describe_run(cfg: DictConfig) -> RunInfo:
    """Name, overrides, sweep and git state of the run (Hydra's runtime config when present).

    The name is ``cfg.run_name`` or ``<agent>-<env>-<overrides the sweep varies>-s<seed>``.
    """
    from hydra.core.hydra_config import HydraConfig

    from forceexp.observers.tracker import project_root

    source, command = Path(sys.argv[0]).name, shlex.join(sys.argv)
    overrides: list[str] = []
    choices: dict[str, Any] = {}
    sweep_dir = job_num = None
    varying: set[str] = set()
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        overrides, choices = list(hydra.overrides.task), dict(hydra.runtime.choices)
        command = shlex.join(["python", source, *overrides])
        if str(hydra.mode) == "RunMode.MULTIRUN":
            sweep_dir, job_num = str(Path(hydra.sweep.dir).resolve()), int(hydra.job.num)
            varying = _swept_keys(Path(sweep_dir), hydra.sweeper.get("params"))
    agent = choices.get("agent") or str(cfg.agent._target_).rsplit(".", 2)[-2]
    environment = cfg.env.get("environment", cfg.env.get("level"))
    env = choices.get("env") or (environment if isinstance(environment, str) else "env")
    seed = None if cfg.seed is None else int(cfg.seed)
    swept = tuple(o for o in overrides if key_of(o) in varying)
    commit, dirty = git_state(project_root())
    if commit == "unknown":  # launched outside a repository: the commit of forceexp's code
        commit, dirty = git_state(Path(__file__).parent)
    return RunInfo(
        name=cfg.get("run_name") or run_name(agent, env, swept, seed),
        agent=agent,
        env=env,
        seed=seed,
        task_name=str(cfg.get("task_name", "train")),
        command=command,
        source=source,
        overrides=tuple(overrides),
        swept=swept,
        sweep_dir=sweep_dir,
        job_num=job_num,
        git_commit=commit,
        git_dirty=dirty,
    )


def _swept_keys(sweep_dir: Path, params: Any) -> set[str]:
    """Keys a multirun sweeps: its command line (``multirun.yaml``) and ``hydra.sweeper.params``."""
    keys = {str(key) for key in (params or {})}
    saved = sweep_dir / "multirun.yaml"
    if saved.is_file():
        keys |= sweep_keys(OmegaConf.load(saved).hydra.overrides.task)
    return keys

"""train(cfg): seed -> env -> agent -> runner -> evaluate -> results.json (Hydra entry layer)."""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from forceexp import tags
from forceexp.agents.agent import Agent, seed_everything
from forceexp.command import describe_run
from forceexp.config import build
from forceexp.environments import create
from forceexp.errors import ConfigError, check_int, message
from forceexp.execution.milestones import (
    PeriodicEvaluation,
    ReturnThreshold,
    chain,
    stop_reason,
)
from forceexp.execution.runner import Runner
from forceexp.observers.run_info import RunInfo, key_of
from forceexp.resume import Segment, resume_source

log = logging.getLogger(__name__)
RUN_KEYS = tuple(p for p in inspect.signature(Runner.run).parameters if p != "self")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def optional(node: Any) -> Any:
    """Plain container of an optional group's node, or None when the group is ``none``."""
    if node is None:
        return None
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return container or None


def split_runner(node: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the runner group into constructor kwargs (with ``_target_``) and ``run()`` kwargs."""
    container = OmegaConf.to_container(node, resolve=True)
    run_kwargs = {key: container.pop(key) for key in RUN_KEYS if key in container}
    return container, run_kwargs


def parallel_slots(runner_kwargs: dict[str, Any]) -> int:
    """The agent's parallel slots: ``num_parallel``, or every Ray worker's environments.

    A tuning's ``runner.num_parallel`` does not apply to ``runner=ray`` (its workers hold
    ``num_workers * envs_per_worker`` environments): it is removed from ``runner_kwargs``.
    """
    if "num_workers" not in runner_kwargs:
        return int(runner_kwargs.get("num_parallel") or 1)
    slots = int(runner_kwargs["num_workers"]) * int(runner_kwargs.get("envs_per_worker", 1))
    if runner_kwargs.pop("num_parallel", None) is not None:
        log.info("runner=ray: runner.num_parallel ignored; the workers hold %d environments", slots)
    return slots


def observer_specs(cfg: DictConfig, run: RunInfo | None = None) -> dict[str, Any]:
    """Saver, summarizer and recorder specs (None when off), named after the run.

    A TensorBoard spec without a run folder (``filename: null``) gets the run's name.
    """
    specs = {group: optional(cfg.get(group)) for group in ("saver", "summarizer", "recorder")}
    summarizer = specs["summarizer"]
    if run is not None and isinstance(summarizer, dict) and summarizer.get("filename") is None:
        summarizer["filename"] = run.name.replace("%", "%%")  # filename is an strftime pattern
    return specs


def build_agent(
    cfg: DictConfig, environment: Any, parallel: int, run: RunInfo | None = None
) -> Agent:
    """Build the agent from ``cfg.agent`` completed with the env's specs and the network group."""
    log.info("Building agent <%s>", cfg.agent._target_)
    extras = {
        "states": environment.states(),
        "actions": environment.actions(),
        "max_episode_timesteps": environment.max_episode_timesteps(),
        "parallel_interactions": parallel,
    }
    signature = inspect.signature(build(cfg.agent).func)
    if "network" in signature.parameters:
        extras["network"] = network_spec(cfg)
    extras.update({k: v for k, v in observer_specs(cfg, run).items() if v is not None})
    return build(cfg.agent)(**extras)


#: the auto network's settings, which tunings (``conf/tuning/*.yaml``) set for it
AUTO_NETWORK_KEYS = ("size", "depth", "activation", "init", "rnn")


def network_spec(cfg: DictConfig) -> Any:
    """The network group's spec; a tuning's auto-network settings are dropped for other types.

    Tunings tune the default ``network=auto``; choosing another network (``network=lstm``) on
    the command line keeps that network as written, and says which settings it ignores.
    """
    spec = optional(cfg.get("network")) or "auto"
    if isinstance(spec, dict) and spec.get("type", "auto") != "auto":
        ignored = {key: spec.pop(key) for key in AUTO_NETWORK_KEYS if key in spec}
        if ignored:
            log.warning(
                "network: %s are auto-network settings (a tuning's); the %r network ignores them",
                ignored,
                spec["type"],
            )
    return spec


def resume_agent(
    cfg: DictConfig, environment: Any, directory: Path, run: RunInfo | None = None
) -> Agent:
    """Load the latest checkpoint in ``directory`` (see ``forceexp.resume``).

    The observers configured now (saver, summarizer, recorder) replace the saved ones.
    """
    log.info("Resuming agent from <%s>", directory)
    return Agent.load(
        directory,
        environment=environment,
        torch_threads=cfg.torch_threads,
        **observer_specs(cfg, run),
    )


def budget(run_kwargs: dict[str, Any]) -> str:
    """The run's budget in words: ``100000 timesteps``, ``50 episodes`` or both."""
    parts = [
        f"{run_kwargs[key]} {key.removeprefix('num_')}"
        for key in ("num_timesteps", "num_episodes")
        if run_kwargs.get(key) is not None
    ]
    return " or ".join(parts) or "no budget"


def _solve_watch(cfg: DictConfig, environment: Any) -> ReturnThreshold | None:
    """Time-to-solve tracking from ``solve_return`` (``auto``: the env's reward threshold)."""
    threshold = cfg.get("solve_return", "auto")
    if threshold == "auto":
        threshold = environment.reward_threshold()
    if threshold is None:
        return None
    return ReturnThreshold(threshold, stop=bool(cfg.get("stop_when_solved", False)))


def _evaluation_options(cfg: DictConfig) -> tuple[dict[str, Any], int | None]:
    """``cfg.evaluation`` as a dict (without ``video``) and the seed of its first episode."""
    options = optional(cfg.get("evaluation")) or {}
    options.pop("video", None)
    seed = None if cfg.seed is None else int(cfg.seed) + 20_000  # apart from the final eval's
    return options, seed


def _periodic_evaluation(
    cfg: DictConfig, on_evaluation: Callable[[int, int, float], bool] | None = None
) -> PeriodicEvaluation | None:
    """Evaluation during training from ``cfg.evaluation`` (off while its frequency is null)."""
    options, seed = _evaluation_options(cfg)
    if options.get("frequency") is None:
        return None
    return PeriodicEvaluation(**options, seed=seed, on_evaluation=on_evaluation)


def record_evaluation(
    cfg: DictConfig, runner: Runner, env_factory: Any, periodic: PeriodicEvaluation | None
) -> dict[str, Any]:
    """Replay the evaluation of the weights the run ends with as MP4s in ``<run>/videos``.

    The same agent, episode count and episode seeds as that evaluation (the best one when
    ``keep_best`` restored it, else the last), so the videos show its episodes; the files are
    ``eval-<timesteps>-episode-<i>.mp4``. Returns those timesteps and the replay's mean return.
    """
    from forceexp.execution.evaluation import evaluate
    from forceexp.play import record_video, render_environment

    options, seed = _evaluation_options(cfg)
    restored = periodic is not None and periodic.restored and periodic.best is not None
    timesteps = periodic.best[0] if restored else runner.timesteps
    limit = cfg.runner.get("max_episode_timesteps")
    environment = render_environment(
        lambda **kwargs: create(env_factory(**kwargs), max_episode_timesteps=limit)
    )
    directory = Path(cfg.paths.output_dir) / "videos"
    record_video(environment, directory, f"eval-{timesteps}")
    try:
        episodes = int(options.get("num_episodes", 10))
        mean = evaluate(runner.agent, environment, episodes, seed=seed)["return_mean"]
    finally:
        environment.close()
    log.info("Recorded %d evaluation episodes (mean return %.2f) in %s", episodes, mean, directory)
    return {"timesteps": timesteps, "return_mean": mean}


def check_config(cfg: DictConfig) -> None:
    """Check the top-level keys and the runner's counts before anything is built.

    Raises:
        ConfigError: ``<key>: <value> is invalid; expected ...`` for ``seed``, ``device``,
            ``eval_episodes``, ``solve_return``, ``stop_when_solved``, ``runner.num_parallel``
            or ``runner.max_episode_timesteps``.
    """
    from forceexp.agents.agent import resolve_device

    check_int("seed", cfg.seed, optional=True)
    check_int("eval_episodes", cfg.eval_episodes, 1)
    if cfg.get("device") is not None:
        resolve_device(cfg.device)
    solve = cfg.get("solve_return", "auto")
    number = isinstance(solve, int | float) and not isinstance(solve, bool)
    if solve not in ("auto", None) and not number:
        raise ConfigError(message("solve_return", solve, "'auto', a number or null"))
    if not isinstance(cfg.get("stop_when_solved", False), bool):
        raise ConfigError(message("stop_when_solved", cfg.stop_when_solved, "true or false"))
    for key, minimum in (("num_parallel", 1), ("max_episode_timesteps", 1)):
        check_int(f"runner.{key}", cfg.runner.get(key), minimum, optional=True)


def hparams(cfg: DictConfig, run: RunInfo) -> dict[str, Any]:
    """TensorBoard HParams of a run: agent hyperparameters, names, seed, budget, swept keys."""
    agent = OmegaConf.to_container(cfg.agent, resolve=True)
    found: dict[str, Any] = {
        f"agent.{key}": value if isinstance(value, bool | int | float | str) else str(value)
        for key, value in agent.items()
        if not key.startswith("_") and key not in ("seed", "device")
    }
    found.update({"agent": run.agent, "env": run.env, "seed": run.seed})
    found["runner.num_timesteps"] = cfg.runner.get("num_timesteps")
    for override in run.swept:
        value = OmegaConf.select(cfg, key_of(override), default=None)
        found[key_of(override)] = value if isinstance(value, bool | int | float) else str(value)
    return found


def train(
    cfg: DictConfig, on_evaluation: Callable[[int, int, float], bool] | None = None
) -> dict[str, Any]:
    """Train, evaluate and write ``results.json`` into ``cfg.paths.output_dir``; return metrics.

    ``on_evaluation(index, timesteps, mean)`` is called after each periodic evaluation
    (``cfg.evaluation.frequency``); returning False ends training there (``forceexp.tune``
    prunes trials with it).
    """
    from forceexp.observers.tracker import track

    check_config(cfg)  # before the run is named from it
    run = describe_run(cfg)
    log.info("Run name: %s", run.name)
    with track(cfg, run) as tracker:
        return _train(cfg, tracker, run, on_evaluation)


def _train(
    cfg: DictConfig,
    tracker: Any,
    run: RunInfo,
    on_evaluation: Callable[[int, int, float], bool] | None = None,
) -> dict[str, Any]:
    """The body of ``train``; ``tracker`` watches the agent (MLflow or nothing)."""
    from forceexp.observers.summarizer import Summarizer, write_hparams

    seed_everything(cfg.seed)
    output_dir = Path(cfg.paths.output_dir)
    source, finished = resume_source(cfg, output_dir, run)
    if finished is not None:
        return finished
    log.info("Building environment <%s>", cfg.env.get("environment", cfg.env._target_))
    env_factory = build(cfg.env)
    runner_kwargs, run_kwargs = split_runner(cfg.runner)
    probe = create(env_factory, max_episode_timesteps=runner_kwargs.get("max_episode_timesteps"))
    if source is not None:
        agent = resume_agent(cfg, probe, source, run)
        if run_kwargs.get("num_timesteps") is not None:
            run_kwargs["num_timesteps"] -= agent.timesteps  # <= 0: trained already
    else:
        agent = build_agent(cfg, probe, parallel_slots(runner_kwargs), run)
    segment = Segment(run, agent, source)
    boards = [o.log_dir for o in agent.observers if isinstance(o, Summarizer)]
    solve = _solve_watch(cfg, probe)
    periodic = _periodic_evaluation(cfg, on_evaluation)
    video = bool(cfg.get("evaluation", {}).get("video", False))
    if video:
        from forceexp.play import check_recordable

        check_recordable(probe)  # before training, not after it
    probe.close()
    tracker.watch(agent)
    log.info("Building runner <%s>", runner_kwargs["_target_"])
    runner: Runner = build(runner_kwargs)(agent=agent, environment=env_factory)
    segment.watch(runner, solve, periodic)
    try:
        wall, reason = run_training(runner, run_kwargs, solve, periodic, segment.prior.timesteps)
        whole = segment.state()  # the whole run's counts, earlier segments included
        if periodic is not None and periodic.finish(runner):
            log.info("Restored the best-evaluated weights (%d timesteps)", periodic.best[0])
        recorded = record_evaluation(cfg, runner, env_factory, periodic) if video else None
        log.info("Evaluating over %d deterministic episodes", cfg.eval_episodes)
        evaluation = runner.evaluate(num_episodes=int(cfg.eval_episodes))
    finally:
        runner.close()
        agent.close()
    results = {
        "eval_return_mean": evaluation["return_mean"],
        "eval_return_std": evaluation["return_std"],
        "eval_episodes": int(cfg.eval_episodes),
        "timesteps": whole.timesteps,
        "episodes": whole.episodes,
        "updates": segment.updates + runner.updates,
        "wall_seconds": whole.wall_seconds,
        "steps_per_second": runner.timesteps / wall if wall > 0 else 0.0,  # this segment's
        "train_return_last100": (
            sum(whole.episode_returns[-100:]) / max(1, len(whole.episode_returns[-100:]))
        ),
        "train_curve": training_curve(whole.episode_returns, whole.episode_lengths),
        "solve_return": None if solve is None else solve.threshold,
        "solved_timesteps": whole.solved_timesteps,
        "solved_seconds": whole.solved_seconds,
        "stop_reason": reason,
        **({"resumed_at": whole.resumed_at} if whole.resumed_at else {}),
        **({"video": recorded} if recorded else {}),
        **_evaluation_results(periodic, solve),
    }
    write_json(output_dir / "results.json", results)
    log.info("Results: %s", json.dumps({k: v for k, v in results.items() if k != "train_curve"}))
    finals = {tags.result_tag(key): results[key] for key in tags.RESULT_TAGS}
    varying = {key_of(override) for override in run.swept}
    for board in boards:
        write_hparams(board, hparams(cfg, run), finals, runner.timesteps, varying)
    return results


def run_training(
    runner: Runner,
    run_kwargs: dict[str, Any],
    solve: ReturnThreshold | None,
    periodic: PeriodicEvaluation | None,
    before: int = 0,
) -> tuple[float, str]:
    """``runner.run`` with the callbacks; log and return its wall seconds and why it stopped.

    ``before``: timesteps of a resumed run's earlier segments (named in the stop reason).
    """
    if (run_kwargs.get("num_timesteps") or 1) <= 0:  # resumed after its last training step
        log.info("The budget was trained before this segment (%d timesteps)", before)
        return 0.0, f"budget: {before + run_kwargs['num_timesteps']} timesteps"
    start = time.perf_counter()
    if solve is not None:
        solve.start = start
    run_kwargs["callback"] = chain(solve, periodic)
    log.info("Training for %s", budget(run_kwargs))
    runner.run(**run_kwargs)
    wall = time.perf_counter() - start
    limits = run_kwargs.get("num_timesteps"), run_kwargs.get("num_episodes")
    reason = stop_reason(runner, *limits, solve, periodic, before=before)
    log.info(
        "Stopped after %d timesteps, %d episodes, %.1f s (%.0f steps/s); %s",
        *(runner.timesteps, runner.episodes, wall, runner.timesteps / max(wall, 1e-9), reason),
    )
    return wall, reason


def training_curve(
    returns: list[float], lengths: list[int], points: int = 100, window: int = 100
) -> list[list[float]]:
    """At most ``points`` ``[timesteps, mean of the last window returns]`` pairs, in order.

    Timesteps are the summed lengths of the finished episodes (with parallel environments a
    little below the runner's count at that moment). Written to ``results.json`` so learning
    curves need no tracker (``python -m forceexp.benchmark`` plots them).
    """
    if not returns:
        return []
    ends = np.cumsum(lengths)
    sums = np.cumsum(np.insert(np.asarray(returns, dtype=float), 0, 0.0))
    picks = np.unique(np.linspace(0, len(returns) - 1, min(points, len(returns))).astype(int))
    starts = np.maximum(0, picks + 1 - window)
    means = (sums[picks + 1] - sums[starts]) / (picks + 1 - starts)
    return [[int(ends[i]), float(m)] for i, m in zip(picks, means, strict=True)]


def _evaluation_results(
    periodic: PeriodicEvaluation | None, solve: ReturnThreshold | None
) -> dict[str, Any]:
    """``results.json`` entries of the evaluations during training (none when off).

    ``eval_solved_timesteps`` is the first deterministic evaluation at or above the solve
    return: ``solved_timesteps`` watches the stochastic training return, which can stay below
    it where the deterministic policy is already solved.
    """
    if periodic is None:
        return {}
    best = periodic.best or (None, None)
    return {
        "eval_solved_timesteps": None
        if solve is None
        else next((t for t, r in periodic.history if r >= solve.threshold), None),
        "evaluations": [{"timesteps": t, "return_mean": r} for t, r in periodic.history],
        "best_eval_timesteps": best[0],
        "best_eval_return_mean": best[1],
        "restored_best": periodic.restored,
    }


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Pretrain from traces (no env interaction), evaluate, save, write ``results.json``."""
    from forceexp.observers.tracker import track

    check_config(cfg)
    run = describe_run(cfg)
    with track(cfg, run) as tracker:
        return _pretrain(cfg, tracker, run)


def _pretrain(cfg: DictConfig, tracker: Any, run: RunInfo) -> dict[str, Any]:
    """The body of ``pretrain``; ``tracker`` watches the agent (MLflow or nothing)."""
    seed_everything(cfg.seed)
    output_dir = Path(cfg.paths.output_dir)
    env_factory = build(cfg.env)
    runner_kwargs, _ = split_runner(cfg.runner)
    probe = create(env_factory, max_episode_timesteps=runner_kwargs.get("max_episode_timesteps"))
    agent = build_agent(cfg, probe, 1, run)
    probe.close()
    tracker.watch(agent)
    options = OmegaConf.to_container(cfg.pretrain, resolve=True)
    log.info("Pretraining from %s (%s)", options["directory"], options.get("objective"))
    start = time.perf_counter()
    try:
        metrics = agent.pretrain(**options)
        wall = time.perf_counter() - start
        saved = agent.save(directory=str(output_dir / "checkpoints"))  # train.py +resume=<run>
        log.info("Saved pretrained agent to <%s>", saved)
        runner = Runner(
            agent=agent,
            environment=env_factory,
            max_episode_timesteps=runner_kwargs.get("max_episode_timesteps"),
            seed=cfg.seed,
        )
        evaluation = runner.evaluate(num_episodes=int(cfg.eval_episodes))
        runner.close()
    finally:
        agent.close()
    results = {
        "eval_return_mean": evaluation["return_mean"],
        "eval_return_std": evaluation["return_std"],
        "eval_episodes": int(cfg.eval_episodes),
        "pretrain_timesteps": agent.timesteps,
        "pretrain_updates": agent.updates,
        "wall_seconds": wall,
        **{f"pretrain/{key}": value for key, value in metrics.items()},
    }
    write_json(output_dir / "results.json", results)
    log.info("Results: %s", json.dumps(results))
    return results

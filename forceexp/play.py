"""Watch a trained agent: ``python -m forceexp.play <run dir or checkpoint dir>``.

Loads the latest checkpoint (as ``train.py +resume=`` finds it), builds the environment named in
the run's ``.hydra/config.yaml`` (or ``--env``), runs deterministic episodes, prints each return
and the mean, and with ``--video DIR`` records each episode as MP4 through gymnasium's
``RecordVideo`` (needs the ``video`` extra: moviepy, imageio, imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forceexp.errors import CheckpointError, ConfigError, ForceexpError

CONFIG = Path(".hydra") / "config.yaml"


def run_config(path: Path) -> Path | None:
    """The ``.hydra/config.yaml`` of a run dir, or of the run dir above a checkpoint dir."""
    for folder in (path, path.parent):
        if (folder / CONFIG).is_file():
            return folder / CONFIG
    return None


def environment_factory(path: Path, env: str | None) -> Any:
    """A zero-argument-or-kwargs factory of the run's environment (``forceexp.environments``).

    Raises:
        ConfigError: No ``--env`` and no ``.hydra/config.yaml`` in or above ``path``.
    """
    from forceexp.environments import create

    if env is not None:
        return lambda **kwargs: create(env, **kwargs)
    config = run_config(path)
    if config is None:
        raise ConfigError(
            f"play: no {CONFIG} in {path} or {path.parent}, so the environment is unknown; "
            "pass a run directory written by train.py or give --env <Gymnasium id>"
        )
    from omegaconf import OmegaConf

    from forceexp.config import build

    node = OmegaConf.load(config).env
    return build(node)


def check_recordable(environment: Any) -> Any:
    """The Gymnasium adapter inside ``environment``, once video recording is known to work.

    Raises:
        ConfigError: Not a Gymnasium environment, or moviepy (the ``video`` extra) missing.
    """
    from forceexp.environments.gym import GymEnvironment

    inner = getattr(environment, "environment", environment)
    if not isinstance(inner, GymEnvironment):
        raise ConfigError(
            f"video: records Gymnasium environments only; this run's environment is "
            f"{type(inner).__name__}"
        )
    try:
        import moviepy  # noqa: F401  (RecordVideo encodes with it)
    except ImportError:
        raise ConfigError("video: needs moviepy: pip install 'forceexp[video]'") from None
    return inner


def render_environment(factory: Any) -> Any:
    """``factory(render_mode='rgb_array')``, checked to be recordable (``check_recordable``).

    Raises:
        ConfigError: See ``check_recordable``; or the environment takes no ``render_mode``.
    """
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame-rendered envs, no display
    try:
        environment = factory(render_mode="rgb_array")
    except TypeError as exc:  # an environment that takes no render_mode
        raise ConfigError(f"video: records Gymnasium environments only ({exc})") from None
    try:
        check_recordable(environment)
    except ConfigError:
        environment.close()
        raise
    return environment


def record_video(environment: Any, directory: str | Path, prefix: str) -> None:
    """Record every episode of ``environment`` (from ``render_environment``) as MP4 files.

    The files are ``<directory>/<prefix>-episode-<i>.mp4`` (gymnasium's ``RecordVideo``).
    """
    from gymnasium.wrappers import RecordVideo

    inner = check_recordable(environment)
    inner.env = RecordVideo(
        inner.env, str(directory), episode_trigger=lambda _: True, name_prefix=prefix
    )


def play(
    path: str | Path,
    episodes: int = 1,
    video: str | Path | None = None,
    seed: int | None = None,
    env: str | None = None,
) -> list[float]:
    """Run ``episodes`` deterministic episodes of the agent saved under ``path``.

    Args:
        path: A run directory (with ``checkpoints/``) or a checkpoint directory.
        episodes: Number of episodes.
        video: Folder to write one MP4 per episode to (None: no video).
        seed: Seed of the first episode's reset (episode ``i`` uses ``seed + i``).
        env: Environment (e.g. a Gymnasium id) instead of the run's configured one.

    Returns:
        The episode returns.

    Raises:
        ConfigError: Bad arguments, unknown environment, or video without its packages.
        CheckpointError: No checkpoint under ``path``.
    """
    from forceexp.agents import Agent
    from forceexp.agents.persistence import resume_directory

    path = Path(path)
    if not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"play --episodes: {episodes!r} is invalid; expected an int >= 1")
    if not path.is_dir():
        raise CheckpointError(f"play: {path} is not a directory")
    try:
        checkpoints = resume_directory(path)
    except CheckpointError:
        raise CheckpointError(
            f"play: no checkpoint in {path} or {path / 'checkpoints'} (no checkpoint.json); "
            "train with a saver (python train.py saver=checkpoint) or agent.save(<dir>)"
        ) from None
    factory = environment_factory(path, env)
    environment = factory() if video is None else render_environment(factory)
    agent = Agent.load(checkpoints, environment=environment, saver=None, summarizer=None)
    if video is not None:
        record_video(environment, video, agent.name)
    returns = []
    try:
        for episode in range(episodes):
            returns.append(
                run_episode(agent, environment, None if seed is None else seed + episode)
            )
            print(f"episode {episode + 1}: return {returns[-1]:.2f}", flush=True)
    finally:
        environment.close()
        agent.close()
    print(f"mean return over {episodes} episodes: {sum(returns) / episodes:.2f}", flush=True)
    return returns


def run_episode(agent: Any, environment: Any, seed: int | None) -> float:
    """One deterministic, independent episode (reset with ``seed``); its return."""
    states = environment.reset(seed=seed)
    terminal, total = 0, 0.0
    while not terminal:
        actions = agent.act(states, independent=True, deterministic=True)
        states, terminal, reward = environment.execute(actions)
        total += float(reward)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry: parse arguments, play, and print errors as one line."""
    parser = argparse.ArgumentParser(prog="python -m forceexp.play", description=__doc__)
    parser.add_argument("path", help="run directory (train.py output) or checkpoint directory")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to run (default 1)")
    parser.add_argument("--video", default=None, help="folder for one MP4 per episode")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    parser.add_argument("--env", default=None, help="environment instead of the run's config")
    args = parser.parse_args(argv)
    try:
        play(args.path, args.episodes, args.video, args.seed, args.env)
    except ForceexpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

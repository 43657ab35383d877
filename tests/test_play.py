"""python -m forceexp.play: load a trained agent, run deterministic episodes, record MP4s."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forceexp.agents import Agent
from forceexp.environments import create
from forceexp.errors import CheckpointError, ConfigError
from forceexp.play import main, play

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "_target_": "forceexp.environments.create",
    "_partial_": True,
    "environment": "CartPole-v1",
    "max_episode_timesteps": 40,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as train.py leaves it: .hydra/config.yaml and a saver's checkpoints."""
    run = tmp_path_factory.mktemp("run")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"env": ENV, "seed": 0}))
    env = create("CartPole-v1", max_episode_timesteps=40)
    agent = Agent.create(
        "ppo",
        environment=env,
        network={"type": "auto", "size": 16},
        rollout_length=16,
        epochs=2,
        seed=0,
        saver={"directory": str(run / "checkpoints"), "frequency": 1},
    )
    for _ in range(4):
        states, terminal = env.reset(seed=1), 0
        while not terminal:
            states, terminal, reward = env.execute(agent.act(states))
            agent.observe(reward, terminal)
    agent.close()
    env.close()
    return run


@pytest.mark.slow
def test_play_prints_returns_and_records_decodable_video(run_dir: Path, tmp_path: Path) -> None:
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("moviepy")
    expected = play(run_dir, episodes=2, seed=5)  # in-process, no video: the same episodes
    videos = tmp_path / "videos"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = [str(run_dir), "--episodes", "2", "--video", str(videos), "--seed", "5"]
    done = subprocess.run(
        [sys.executable, "-m", "forceexp.play", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"episode {i + 1}: return {r:.2f}" for i, r in enumerate(expected)]
    assert lines[2] == f"mean return over 2 episodes: {sum(expected) / 2:.2f}"
    files = sorted(videos.glob("*.mp4"))
    assert [f.name for f in files] == ["ppo-episode-0.mp4", "ppo-episode-1.mp4"]
    reader = imageio.get_reader(files[0], format="FFMPEG")
    frames = [frame for frame in reader]
    reader.close()
    assert len(frames) >= expected[0]  # one frame per step (plus the reset frame)
    assert frames[0].ndim == 3 and frames[0].shape[2] == 3 and frames[0].std() > 0


def test_play_checkpoint_dir_finds_config_above(run_dir: Path, capsys) -> None:
    returns = play(run_dir / "checkpoints", episodes=1, seed=5)
    assert returns == play(run_dir, episodes=1, seed=5)
    assert "mean return over 1 episodes" in capsys.readouterr().out


def test_play_errors(run_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(CheckpointError, match=r"play: no checkpoint in .* \(no checkpoint.json\)"):
        play(tmp_path)
    shutil.copytree(run_dir / "checkpoints", tmp_path / "ckpt")  # no .hydra above it
    with pytest.raises(ConfigError, match=r"play: no \.hydra/config\.yaml in .*give --env"):
        play(tmp_path / "ckpt")
    assert play(tmp_path / "ckpt", env="CartPole-v1", seed=0)  # --env instead of a config
    with pytest.raises(CheckpointError, match=r"play: .*missing is not a directory"):
        play(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"play --episodes: 0 is invalid; expected an int >= 1"):
        play(run_dir, episodes=0)
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: play: no checkpoint in")


def test_play_video_needs_a_gymnasium_environment(tmp_path: Path) -> None:
    agent = Agent.create("random", environment="identity")
    agent.save(tmp_path)
    with pytest.raises(ConfigError, match="video: records Gymnasium environments only"):
        play(tmp_path, env="identity", video=tmp_path / "videos")


def test_train_records_the_final_evaluation_as_video(compose_cfg, tmp_path: Path) -> None:
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("moviepy")
    from forceexp.experiment import train

    cfg = compose_cfg(
        "runner.num_timesteps=400",
        "runner.max_episode_timesteps=30",
        "evaluation.frequency=200",
        "evaluation.num_episodes=2",
        "evaluation.keep_best=true",
        "evaluation.video=true",
    )
    results = train(cfg)
    evaluations = {e["timesteps"]: e["return_mean"] for e in results["evaluations"]}
    shown = results["best_eval_timesteps"] if results["restored_best"] else results["timesteps"]
    files = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [f.name for f in files] == [f"eval-{shown}-episode-{i}.mp4" for i in range(2)]
    reader = imageio.get_reader(files[0], format="FFMPEG")
    frames = [frame for frame in reader]  # list(reader) asks len(), which is inf
    reader.close()
    assert len(frames) >= 8 and frames[0].shape[2] == 3 and frames[0].std() > 0
    assert results["video"] == {"timesteps": shown, "return_mean": evaluations[shown]}  # replayed


def test_evaluation_video_is_refused_before_training_on_other_environments(compose_cfg):
    from forceexp.experiment import train

    cfg = compose_cfg("env=identity", "evaluation.video=true")
    with pytest.raises(ConfigError, match="video: records Gymnasium environments only"):
        train(cfg)

"""Summarizer: real TensorBoard event files read back with tensorboard's EventAccumulator."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from forceexp import Agent, Environment, Runner, tags
from forceexp.errors import ConfigError

torch.set_num_threads(1)
GUIDANCE = {"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}


def _load(directory: Path) -> EventAccumulator:
    """The events of ``directory``, or of its one ``summary-*`` run folder (a spec's default)."""
    runs = list(directory.glob("summary-*"))
    if runs:
        (directory,) = runs
    accumulator = EventAccumulator(str(directory), size_guidance=GUIDANCE)
    accumulator.Reload()
    return accumulator


def _train(summarizer: object, timesteps: int = 256) -> Agent:
    env = Environment.create("CartPole-v1", max_episode_timesteps=50)
    agent = Agent.create(
        "ppo",
        environment=env,
        rollout_length=64,
        minibatch_size=32,
        epochs=2,
        seed=0,
        device="cpu",
        summarizer=summarizer,
    )
    runner = Runner(agent=agent, environment=env)
    runner.run(num_timesteps=timesteps, use_tqdm=False)
    runner.close()
    return agent


def test_all_labels_write_their_tags_and_custom_image(tmp_path: Path) -> None:
    spec = dict(
        directory=str(tmp_path),
        labels="all",
        frequency=10,
        custom=dict(frame=dict(type="image"), note=dict(type="text"), gain=dict(type="scalar")),
    )
    agent = _train(spec)
    agent.summarize(summary="frame", value=np.random.rand(3, 16, 8))  # CHW
    agent.summarize(summary="frame", value=np.zeros((8, 16, 3), np.uint8), step=7)  # HWC
    agent.summarize(summary="note", value="hello")
    agent.summarize(summary="gain", value=2.5, step=3)
    agent.close()
    events = _load(tmp_path)
    found = events.Tags()
    scalars = set(found["scalars"])
    for tag in (
        tags.EPISODE_RETURN,
        tags.EPISODE_LENGTH,
        tags.REWARD_STEP,
        tags.LOSS_POLICY,
        tags.LOSS_VALUE,
        tags.LOSS_TOTAL,
        tags.ENTROPY,
        tags.KL_DIVERGENCE,
        tags.UPDATE_NORM,
        tags.UPDATE_NORM_CLIPPED,
        tags.LEARNING_RATE,
        "distribution/action-probabilities0",
        "gain",
    ):
        assert tag in scalars, tag
    assert found["graph"] is True
    assert len(events.Graph().node) > 0
    assert any(t.startswith("variables/") for t in found["histograms"])
    assert "frame" in found["images"]
    assert "note/text_summary" in found["tensors"]
    images = events.Images("frame")
    assert (images[0].width, images[0].height) == (8, 16)
    assert images[1].step == 7
    returns = [e.value for e in events.Scalars(tags.EPISODE_RETURN)]
    assert all(1 <= r <= 50 for r in returns)
    lengths = [e.value for e in events.Scalars(tags.EPISODE_LENGTH)]
    assert returns == lengths  # CartPole: reward 1 per step
    steps = [e.step for e in events.Scalars(tags.REWARD_STEP)]
    assert all(b - a >= 10 for a, b in itertools.pairwise(steps))
    assert events.Scalars("gain")[0].value == 2.5


def test_seed_label_list_with_old_aliases(tmp_path: Path) -> None:
    spec = dict(
        directory=str(tmp_path),
        labels=["graph", "entropy", "kl-divergence", "losses", "rewards"],
        frequency=100,
    )
    _train(spec).close()
    found = _load(tmp_path).Tags()
    scalars = set(found["scalars"])
    assert {tags.ENTROPY, tags.KL_DIVERGENCE, tags.LOSS_TOTAL, tags.EPISODE_RETURN} <= scalars
    assert tags.LEARNING_RATE not in scalars
    assert tags.UPDATE_NORM not in scalars
    assert not any(t.startswith("distribution/") for t in scalars)
    assert found["histograms"] == []
    assert found["graph"] is True


def test_directory_string_and_filename(tmp_path: Path) -> None:
    agent = Agent.create(
        "random",
        states=dict(type="float", shape=(2,)),
        actions=dict(type="int", num_values=2),
        summarizer=dict(directory=str(tmp_path), filename="run-%Y"),
    )
    agent.act(np.zeros(2, np.float32))
    agent.observe(reward=1.0, terminal=True)
    agent.close()
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("run-2")
    assert tags.EPISODE_RETURN in _load(run_dir).Tags()["scalars"]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (dict(directory="x", labels=["entropy", "los"]), "unknown label 'los'; did you mean"),
        (dict(directory="x", labels=3), "'all' or a list of labels"),
        (dict(directory="x", frequency=0), "frequency: 0 is invalid"),
        (dict(directory="x", flush=-1), "flush: -1 is invalid"),
        (dict(directory="x", bogus=1), "unknown key 'bogus'"),
        (dict(labels="all"), "a directory or dict"),
        (dict(directory="x", custom=dict(a=dict(type="audio"))), "unknown type 'audio'"),
        (dict(directory="x", custom=dict(a="scalar")), r"expected dict\(type=<type>\)"),
        (dict(directory="x", custom=["a"]), "custom: .* is invalid"),
    ],
)
def test_bad_specs_raise(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Agent.create(
            "random",
            states=dict(type="float", shape=(2,)),
            actions=dict(type="int", num_values=2),
            summarizer=spec,
        )


def test_bad_summarize_calls_raise(tmp_path: Path) -> None:
    states, actions = dict(type="float", shape=(2,)), dict(type="int", num_values=2)
    plain = Agent.create("random", states=states, actions=actions)
    with pytest.raises(ConfigError, match="the agent has no summarizer"):
        plain.summarize(summary="x", value=1.0)
    spec = dict(directory=str(tmp_path), custom=dict(img=dict(type="image"), s=dict(type="scalar")))
    agent = Agent.create("random", states=states, actions=actions, summarizer=spec)
    with pytest.raises(ConfigError, match="unknown custom summary 'im'; did you mean 'img'"):
        agent.summarize(summary="im", value=np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="an image of shape HW, HWC or CHW"):
        agent.summarize(summary="img", value=np.zeros(4))
    with pytest.raises(ConfigError, match="expected a scalar"):
        agent.summarize(summary="s", value=[1.0, 2.0])
    agent.close()


@pytest.mark.parametrize(
    ("label", "selected"),
    [
        ("reward", {tags.EPISODE_RETURN, tags.EPISODE_LENGTH, tags.REWARD_STEP, tags.EVAL_RETURN}),
        ("loss", {tags.LOSS_POLICY, tags.LOSS_VALUE, tags.CLIP_FRACTION, tags.LOSS_Q}),
        ("entropy", {tags.ENTROPY, tags.TEMPERATURE}),
        ("kl-divergence", {tags.KL_DIVERGENCE}),
        ("learning-rate", {tags.LEARNING_RATE}),
        ("update-norm", {tags.UPDATE_NORM, tags.UPDATE_NORM_CLIPPED}),
        ("exploration", {tags.EXPLORATION}),
        ("time", {tags.STEPS_PER_SECOND}),
        ("distribution", {"distribution/action-probabilities0"}),
        ("variables", {"variables/network.0.weight"}),
    ],
)
def test_tensorforce_labels_select_the_cleanrl_tags(label: str, selected: set[str]) -> None:
    assert {tag for tag in selected if tags.label_of(tag) == label} == selected
    assert label in tags.LABELS


def test_every_tag_has_a_label_and_a_group() -> None:
    names = [v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str)]
    metrics = [n for n in names if "/" in n]
    assert set(metrics) == set(tags.TAG_LABELS)  # the table covers every metric constant
    assert {m.split("/")[0] for m in metrics} == {"charts", "losses", "eval"}
    assert tags.label_of("losses/new_thing") == "loss"  # an unlisted tag goes by its group


def test_train_names_the_run_folder_and_writes_hparams(compose_cfg, tmp_path: Path) -> None:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from forceexp.experiment import train

    cfg = compose_cfg("summarizer=tensorboard", "evaluation.frequency=128")
    results = train(cfg)
    (folder,) = (tmp_path / "tensorboard").iterdir()
    assert folder.name == "ppo-CartPole-v1-s0"  # no Hydra run here: env from cfg.env
    events = _load(folder)
    scalars = set(events.Tags()["scalars"])
    assert {tags.EPISODE_RETURN, tags.LOSS_POLICY, tags.KL_DIVERGENCE, tags.ENTROPY} <= scalars
    evaluations = [(e.step, e.value) for e in events.Scalars(tags.EVAL_RETURN)]
    steps = [step for step, _ in evaluations]  # during training (every >= 128 steps), final
    assert 128 <= steps[0] < 256 and steps[1:] == [256, 256]
    assert evaluations[-1][1] == pytest.approx(results["eval_return_mean"])
    speeds = [e.value for e in events.Scalars(tags.STEPS_PER_SECOND)]
    assert all(s > 0 for s in speeds)
    assert speeds[-1] == pytest.approx(results["steps_per_second"], rel=1e-6)
    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["agent.learning_rate"].number_value == pytest.approx(cfg.agent.learning_rate)
    assert hparams["agent"].string_value == "ppo"
    assert hparams["seed"].number_value == 0
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert not any(info.differs for info in experiment.hparam_infos)  # a single run
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert metrics == {tags.EVAL_RETURN, tags.EVAL_RETURN_STD, tags.STEPS_PER_SECOND}

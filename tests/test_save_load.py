"""Save & restore: seeds, round trips per format, exact resume, corrupt files, errors, Hydra."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import forceexp
from forceexp import Agent, Runner, checkpoints
from forceexp.agents import formats, persistence
from forceexp.errors import CheckpointError, ConfigError
from forceexp.observers.saver import Saver

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"environment": "identity", "num_values": 4}
CARTPOLE = {"environment": "gym", "level": "CartPole-v1"}
SMALL = {
    "rollout_length": 16,
    "minibatch_size": 16,
    "epochs": 2,
    "device": "cpu",
    "network": {"type": "auto", "size": 16, "depth": 1},
    "baseline": None,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_agent(env=IDENTITY, **kwargs) -> Agent:
    return Agent.create("ppo", environment=env, **{**SMALL, "seed": 0, **kwargs})


def train(agent: Agent, env=IDENTITY, timesteps: int = 64, seed: int | None = None) -> Runner:
    runner = Runner(agent=agent, environment=env, seed=seed)
    runner.run(num_timesteps=timesteps, use_tqdm=False)
    runner.close()
    return runner


def weights(agent: Agent) -> dict[str, torch.Tensor]:
    return formats.flatten_weights(agent.state_dict())


def assert_same_weights(a: Agent, b: Agent) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0, msg=name)


def deterministic_acts(agent: Agent, states: np.ndarray) -> list[int]:
    return [int(agent.act(s, independent=True, deterministic=True)) for s in states]


def assert_same_acts(a: Agent, b: Agent, size: int = 4) -> None:
    states = np.random.default_rng(1).normal(size=(32, size)).astype(np.float32)
    assert deterministic_acts(a, states) == deterministic_acts(b, states)
    with torch.no_grad():
        x = {"state": torch.as_tensor(states)}
        torch.testing.assert_close(a.policy.value(x), b.policy.value(x), rtol=0, atol=0)


def counters(agent: Agent) -> tuple[int, int, int]:
    return agent.timesteps, agent.episodes, agent.updates


# ---------------------------------------------------------------------------- the seeds
def test_seed_saver_checkpoint_then_load_latest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = Agent.create(
        "ppo",
        environment=IDENTITY,
        **SMALL,
        saver=dict(directory="data/checkpoints", frequency=100),
    )
    train(agent)
    agent.close()  # the final save happens here even though 100 updates were never reached
    agent = Agent.load(directory="data/checkpoints")
    assert counters(agent) == (64, 8, 4)
    assert (tmp_path / "data/checkpoints/agent-4.pt").exists()


@pytest.mark.parametrize(("fmt", "suffix"), [("numpy", ".npz"), ("hdf5", ".h5")])
def test_seed_weights_with_append(tmp_path, monkeypatch, fmt, suffix):
    monkeypatch.chdir(tmp_path)
    agent = Agent.create(
        "ppo",
        environment=IDENTITY,
        **SMALL,
        saver=dict(directory="data/checkpoints", frequency=600),
    )
    train(agent)
    path = agent.save(directory="data/checkpoints", format=fmt, append="episodes")
    assert path == f"data/checkpoints/agent-8{suffix}"
    loaded = Agent.load(directory="data/checkpoints", format=fmt)
    assert_same_weights(agent, loaded)
    assert_same_acts(agent, loaded)
    assert counters(loaded) == counters(agent)


def test_version_matches_the_installed_metadata_and_is_stamped():
    assert forceexp.__version__ == importlib.metadata.version("forceexp")
    assert formats._meta()["forceexp_version"] == forceexp.__version__


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("fmt", ["checkpoint", "numpy", "hdf5"])
def test_round_trip_each_format(tmp_path, fmt):
    agent = make_agent(env=CARTPOLE, normalize_states=True)
    train(agent, env=CARTPOLE)
    path = Path(agent.save(tmp_path, format=fmt))
    assert path.name == f"agent{persistence.SUFFIXES[fmt]}"
    loaded = Agent.load(tmp_path, filename=path.name)
    assert_same_weights(agent, loaded)
    assert "policy/normalizers/state.mean" in weights(loaded)
    assert_same_acts(agent, loaded)
    assert loaded.spec == agent.spec
    assert not list(tmp_path.glob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0600 of a mkstemp file


def test_numpy_and_hdf5_use_readable_stable_names(tmp_path):
    import h5py

    agent = make_agent()
    agent.save(tmp_path, format="numpy")
    agent.save(tmp_path, format="hdf5")
    with np.load(tmp_path / "agent.npz", allow_pickle=False) as data:
        names = set(data.files)
        spec = json.loads(data["__spec__"].tobytes().decode())
    assert {"policy/network/mlp.0.weight", "policy/heads/action.linear.bias"} <= names
    assert {"counters/timesteps", "counters/episodes", "counters/updates"} <= names
    assert spec["format_version"] == formats.FORMAT_VERSION
    assert json.loads(spec["spec"])["agent"] == "ppo"
    with h5py.File(tmp_path / "agent.h5", "r") as handle:
        assert handle["policy/network/mlp.0.weight"].shape == (16, 4)
        assert json.loads(handle.attrs["spec"])["rollout_length"] == 16


def test_random_agent_round_trip_restores_its_generator(tmp_path):
    agent = Agent.create("random", environment=IDENTITY, seed=3)
    agent.act(np.eye(4, dtype=np.float32)[0], independent=True)
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    states = np.eye(4, dtype=np.float32)
    assert [int(agent.act(s, independent=True)) for s in states] == [
        int(loaded.act(s, independent=True)) for s in states
    ]


# ---------------------------------------------------------------------------- exact resume
def test_exact_resume_on_cartpole(tmp_path):
    agent = make_agent(env=CARTPOLE, normalize_states=True)
    train(agent, env=CARTPOLE, timesteps=64, seed=1)  # 4 updates: the rollout is empty after
    agent.save(tmp_path)
    loaded = Agent.load(tmp_path)
    assert counters(loaded) == counters(agent) == (64, counters(agent)[1], 4)
    assert_same_acts(agent, loaded)
    opt_a, opt_b = agent.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for key, state in opt_a["state"].items():
        for name, value in state.items():
            torch.testing.assert_close(value, opt_b["state"][key][name], rtol=0, atol=0)
    # the same RNG states, weights, optimizer and counters: continuing gives identical weights
    train(agent, env=CARTPOLE, timesteps=64, seed=2)
    formats.set_rng_state(formats.READERS["checkpoint"](tmp_path / "agent.pt").rng)
    train(loaded, env=CARTPOLE, timesteps=64, seed=2)
    assert counters(loaded) == counters(agent)
    assert loaded.updates == 8
    assert_same_weights(agent, loaded)


def test_killed_training_resumes_from_last_save(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from forceexp import Agent, Runner
        agent = Agent.create("ppo", environment={IDENTITY!r}, **{SMALL!r},
                             saver=dict(directory={str(tmp_path)!r}, frequency=2))
        runner = Runner(agent=agent, environment={IDENTITY!r})
        def kill(runner, parallel):
            if runner.agent.updates >= 5:
                os.kill(os.getpid(), signal.SIGKILL)
        runner.run(num_timesteps=10_000, use_tqdm=False, callback=kill)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    agent = Agent.load(tmp_path)
    assert agent.updates == 4  # saved at 2 and 4; killed at 5: at most one interval lost
    train(agent, timesteps=32)
    assert agent.updates == 6


# ---------------------------------------------------------------------------- saver
def test_max_checkpoints_prunes_old_files(tmp_path):
    agent = make_agent(saver=dict(directory=tmp_path, frequency=1, max_checkpoints=2))
    train(agent, timesteps=80)
    agent.close()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["agent-4.pt", "agent-5.pt"]
    index = json.loads((tmp_path / "checkpoint.json").read_text())
    assert index["latest"] == "agent-5.pt"
    assert [e["file"] for e in index["checkpoints"]] == ["agent-4.pt", "agent-5.pt"]


@pytest.mark.parametrize(
    ("unit", "frequency", "expected"),
    [("episodes", 3, ["agent-3.pt", "agent-6.pt", "agent-8.pt"]), ("timesteps", 40, None)],
)
def test_saver_units(tmp_path, unit, frequency, expected):
    agent = make_agent(saver=dict(directory=tmp_path, frequency=frequency, unit=unit))
    train(agent, timesteps=64)
    agent.close()
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == (expected or ["agent-40.pt", "agent-64.pt"])


def test_saver_seconds_unit_and_directory_string(tmp_path):
    agent = make_agent(saver=str(tmp_path))
    assert isinstance(agent.observers[0], Saver)
    agent.close()
    assert not list(tmp_path.glob("*.pt"))  # nothing happened: no save on close
    agent = make_agent(
        saver=dict(directory=tmp_path, frequency=1e-9, unit="seconds", max_checkpoints=None)
    )
    train(agent, timesteps=16)
    assert (tmp_path / "agent-1.pt").exists()
    assert (tmp_path / "agent-16.pt").exists()
    agent.close()


def test_loaded_agent_keeps_its_saver_and_continues_counting(tmp_path):
    agent = make_agent(saver=dict(directory=tmp_path, frequency=2))
    train(agent, timesteps=32)
    agent.close()
    loaded = Agent.load(tmp_path)
    loaded.close()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["agent-2.pt"]  # no extra save
    loaded = Agent.load(tmp_path)
    train(loaded, timesteps=32)
    loaded.close()
    assert (tmp_path / "agent-4.pt").exists()
    assert Agent.load(tmp_path, saver=None).observers == []
    loaded = Agent.load(tmp_path, environment=IDENTITY, saver=None, parallel_interactions=3)
    assert (loaded.parallel_interactions, loaded.updates) == (3, 4)


# ---------------------------------------------------------------------------- safety
def test_corrupt_latest_warns_and_falls_back(tmp_path):
    agent = make_agent(saver=dict(directory=tmp_path, frequency=1))
    train(agent, timesteps=48)
    agent.close()
    latest = tmp_path / "agent-3.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.warns(UserWarning, match=r"agent-3\.pt.*truncated or corrupt"):
        loaded = Agent.load(tmp_path, saver=None)
    assert loaded.updates == 2
    with pytest.raises(CheckpointError, match=r"agent-3\.pt: truncated or corrupt checkpoint"):
        Agent.load(tmp_path, filename="agent-3.pt")


def test_all_corrupt_gives_an_error(tmp_path):
    make_agent().save(tmp_path)
    (tmp_path / "agent.pt").write_bytes(b"garbage")
    with (
        pytest.warns(UserWarning, match="skipping"),
        pytest.raises(CheckpointError, match="no readable checkpoint"),
    ):
        Agent.load(tmp_path)


@pytest.mark.parametrize(("fmt", "kind"), [("numpy", "NumPy"), ("hdf5", "HDF5")])
def test_truncated_weight_files(tmp_path, fmt, kind):
    path = Path(make_agent().save(tmp_path, format=fmt))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=rf"{path.name}: truncated or corrupt ({kind}|file)"):
        Agent.load(tmp_path, filename=path.name)


def test_newer_format_version_is_refused(tmp_path):
    path = Path(make_agent().save(tmp_path))
    data = torch.load(path, weights_only=True)
    data["format_version"] = 99
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"format_version 99 .* Upgrade forceexp"):
        Agent.load(tmp_path, filename="agent.pt")


def test_not_a_forceexp_file(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a forceexp checkpoint"):
        Agent.load(tmp_path / "other.pt")
    torch.save({"state": {}, "counters": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="no format_version"):
        Agent.load(tmp_path / "old.pt")
    sealed = torch.load(Path(make_agent().save(tmp_path)), weights_only=True)
    data = torch.load(io.BytesIO(sealed["payload"].numpy().tobytes()), weights_only=True)
    data["spec"], data["format_version"] = "{not json", 1  # a format-1 file: no digest
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="agent spec missing or not JSON"):
        Agent.load(tmp_path, filename="bad.pt")
    (tmp_path / "agent.txt").write_text("x")
    with pytest.raises(CheckpointError, match=r"agent\.txt: unknown file type"):
        Agent.load(tmp_path, filename="agent.txt")


def test_spec_mismatch_names_variables_and_shapes(tmp_path):
    make_agent().save(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"policy/network/mlp\.0\.weight: file \(16, 4\) vs agent \(8, 4\)",
    ):
        Agent.load(tmp_path, network={"type": "auto", "size": 8, "depth": 1})
    with pytest.raises(CheckpointError, match=r"missing in file: \['policy/baseline/mlp"):
        Agent.load(tmp_path, baseline="auto")


def test_index_problems_fall_back_to_scanning(tmp_path):
    agent = make_agent()
    agent.save(tmp_path, append="timesteps")
    (tmp_path / "checkpoint.json").write_text("{broken")
    with pytest.warns(UserWarning, match="unreadable index"):
        assert Agent.load(tmp_path).timesteps == 0
    checkpoints.write_index(tmp_path, [{"file": "gone.pt", "format": "checkpoint"}])
    with (
        pytest.warns(UserWarning, match="listed in checkpoint.json but missing"),
        pytest.raises(CheckpointError, match="no readable checkpoint"),
    ):
        Agent.load(tmp_path)


def test_unsaved_spec_keys_must_be_given_again(tmp_path):
    from forceexp.core.networks import AutoNetwork
    from forceexp.specs import parse_specs

    states = parse_specs({"type": "float", "shape": (4,)}, "state")
    agent = make_agent(network=AutoNetwork(states, size=16, depth=1))
    with pytest.warns(UserWarning, match="agent spec key 'network' .* is not JSON"):
        agent.save(tmp_path)
    with pytest.raises(ConfigError, match=r"keys \['network'\] were not JSON"):
        Agent.load(tmp_path)
    loaded = Agent.load(tmp_path, network=AutoNetwork(states, size=16, depth=1))
    assert_same_acts(agent, loaded)


# ---------------------------------------------------------------------------- choosing files
def test_load_without_filename_picks_latest_and_highest(tmp_path):
    agent = make_agent()
    for timesteps in (16, 48):
        train(agent, timesteps=timesteps)
        agent.save(tmp_path, format="numpy", append="timesteps")
    assert Agent.load(tmp_path, format="numpy").timesteps == 64
    (tmp_path / "checkpoint.json").unlink()
    assert Agent.load(tmp_path).timesteps == 64  # scan: highest counter
    assert Agent.load(tmp_path, filename="agent").timesteps == 64
    assert Agent.load(tmp_path, filename="agent-16.npz").timesteps == 16
    assert Agent.load(tmp_path / "agent-16.npz").timesteps == 16


def test_mixed_formats_need_format(tmp_path):
    agent = make_agent()
    agent.save(tmp_path, format="numpy")
    agent.save(tmp_path, format="hdf5")
    (tmp_path / "checkpoint.json").unlink()
    with pytest.raises(ConfigError, match=r"holds \['hdf5', 'numpy'\] files .* pass format="):
        Agent.load(tmp_path)
    with pytest.raises(ConfigError, match=r"\['agent.npz', 'agent.h5'\] all exist; pass format="):
        Agent.load(tmp_path, filename="agent")
    assert Agent.load(tmp_path, filename="agent", format="hdf5").timesteps == 0
    with pytest.raises(ConfigError, match=r"agent\.npz is a numpy file but format='hdf5'"):
        Agent.load(tmp_path, filename="agent.npz", format="hdf5")


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (dict(directory=None), "saver.directory: None is invalid"),
        (dict(directory="d", frequency=0), "saver.frequency: 0 is invalid"),
        (dict(directory="d", unit="minutes"), "saver.unit: 'minutes' is invalid"),
        (dict(directory="d", max_checkpoints=0), "saver.max_checkpoints: 0 is invalid"),
        (dict(directory="d", format="pickle"), "saver.format: 'pickle' is invalid"),
        (dict(directory="d", filename="a/b"), "saver.filename: 'a/b' is invalid"),
        (dict(directory="d", every=3), "saver: .*unexpected keyword argument 'every'"),
        (42, "saver: 42 is invalid; expected a directory or a dict"),
    ],
)
def test_bad_saver_specs(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_agent(saver=spec)


def test_bad_save_and_load_arguments(tmp_path):
    agent = make_agent()
    with pytest.raises(ConfigError, match=r"save\.format: 'pickle' is invalid"):
        agent.save(tmp_path, format="pickle")
    with pytest.raises(ConfigError, match=r"save\.append: 'steps' is invalid"):
        agent.save(tmp_path, append="steps")
    with pytest.raises(ConfigError, match=r"load\.format: 'pickle' is invalid"):
        Agent.load(tmp_path, format="pickle")
    with pytest.raises(ConfigError, match="load: directory= is required"):
        Agent.load()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        Agent.load(tmp_path)
    with pytest.raises(CheckpointError, match="'nothing' found"):
        Agent.load(tmp_path, filename="nothing")
    agent.save(tmp_path)
    with pytest.raises(ConfigError, match=r"load\.agent: 'random' is invalid"):
        Agent.load(tmp_path, agent="random")


# ---------------------------------------------------------------------------- Hydra
@pytest.mark.parametrize("option", ["checkpoint", "numpy", "hdf5"])
def test_hydra_saver_group(tmp_path, option):
    from hydra import compose, initialize_config_dir

    from forceexp.experiment import train as train_cfg

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={tmp_path}",
                f"saver={option}",
                "env=identity",
                "runner.num_timesteps=128",
                "runner.num_parallel=2",
                "runner.use_tqdm=false",
                "agent.epochs=1",
                "eval_episodes=1",
                "saver.frequency=1",
                "saver.max_checkpoints=2",
            ],
        )
    assert cfg.saver.directory == f"{tmp_path}/checkpoints"
    train_cfg(cfg)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    suffix = persistence.SUFFIXES[option]
    state = ["run_state.json"] if option == "checkpoint" else []  # beside full checkpoints
    assert files == ["agent-1" + suffix, "agent-2" + suffix, "checkpoint.json", *state]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Agent.load(tmp_path / "checkpoints", saver=None)
    assert loaded.updates == 2


def test_resume_directory(tmp_path):
    make_agent().save(tmp_path / "checkpoints")
    assert persistence.resume_directory(tmp_path) == tmp_path / "checkpoints"
    assert persistence.resume_directory(tmp_path / "checkpoints") == tmp_path / "checkpoints"
    with pytest.raises(CheckpointError, match=r"resume: no checkpoint\.json in"):
        persistence.resume_directory(tmp_path / "elsewhere")


@pytest.mark.parametrize("name", ["agent.pt", "agent.npz", "agent.h5"])
def test_committed_fixtures_still_load(name):
    """Files written by format_version 1 (tests/fixtures/make_fixtures.py) must keep loading."""
    saved = ROOT / "tests/fixtures/saved"
    expected = json.loads((saved / "expected.json").read_text())
    agent = Agent.load(saved, filename=name)
    assert agent.timesteps == expected["timesteps"]
    probe = np.eye(3, dtype=np.float32)
    assert deterministic_acts(agent, probe) == expected["acts"]
    with torch.no_grad():
        values = agent.policy.value({"state": torch.as_tensor(probe)})
    np.testing.assert_allclose(values.numpy(), expected["values"], rtol=1e-5, atol=1e-6)


def test_train_resumes_from_a_previous_run(compose_cfg, tmp_path):
    from forceexp.experiment import train

    first = compose_cfg("saver=checkpoint", "runner.num_timesteps=512", "runner.num_parallel=2")
    train(first)
    checkpoints = tmp_path / "checkpoints"
    assert (checkpoints / "checkpoint.json").exists()
    resumed = compose_cfg(
        "saver=checkpoint",
        "runner.num_timesteps=1024",
        "runner.num_parallel=2",
        f"+resume={tmp_path}",
    )
    results = train(resumed)
    assert results["timesteps"] == 1024  # the whole run: 512 before, the remaining 512 now
    assert results["resumed_at"] == [512]

"""Policy export (ONNX, TorchScript, NumPy only) acts like ``agent.act(deterministic=True)``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from forceexp.agents import Agent
from forceexp.errors import ConfigError
from forceexp.export import export

LOADER = Path(__file__).resolve().parents[1] / "forceexp" / "export" / "numpy_policy.py"
ROWS = 64
VEC = {"type": "float", "shape": (5,)}
BOX = {"type": "float", "shape": (2,), "min_value": -2.0, "max_value": 3.0}
SMALL = {"type": "auto", "size": 16, "depth": 2}

CASES = {
    "ppo-categorical": dict(
        agent="ppo", states=VEC, actions={"type": "int", "num_values": 4}, normalize_states=True
    ),
    "ppo-int-shape": dict(
        agent="ppo", states=VEC, actions={"type": "int", "shape": (3,), "num_values": 3}
    ),
    "ppo-gaussian-clip": dict(agent="ppo", states=VEC, actions=BOX, normalize_states=True),
    "ppo-gaussian-squash": dict(agent="ppo", states=VEC, actions=BOX, bounded_actions="squash"),
    "ppo-gaussian-unbounded": dict(
        agent="ppo", states=VEC, actions={"type": "float", "shape": (3,)}
    ),
    "ppo-beta": dict(agent="ppo", states=VEC, actions=BOX, bounded_actions="beta"),
    "ppo-named": dict(
        agent="ppo",
        states={"pos": VEC, "flag": {"type": "bool", "shape": (2,)}},
        actions={"move": {"type": "int", "num_values": 3}, "push": BOX, "fire": {"type": "bool"}},
        network={"type": "auto", "size": 16, "activation": "relu"},
        normalize_states=True,
    ),
    "dqn": dict(agent="dqn", states=VEC, actions={"type": "int", "num_values": 5}),
    "dqn-bool": dict(
        agent="dqn",
        states=VEC,
        actions={"move": {"type": "int", "num_values": 3}, "fire": {"type": "bool", "shape": (2,)}},
    ),
    "dueling_dqn": dict(
        agent="dueling_dqn", states=VEC, actions={"type": "int", "shape": (2,), "num_values": 3}
    ),
    "sac": dict(
        agent="sac",
        states=VEC,
        actions={"a": BOX, "b": {"type": "float", "min_value": 0.0, "max_value": 1.0}},
    ),
    "td3": dict(agent="td3", states=VEC, actions=BOX),
    "dpg": dict(agent="dpg", states=VEC, actions=BOX),
    # the other on-policy agents share PPO's policy (one export path)
    "a2c": dict(agent="a2c", states=VEC, actions={"type": "int", "num_values": 4}),
    "vpg": dict(agent="vpg", states=VEC, actions=BOX),
    "ac": dict(agent="ac", states=VEC, actions={"type": "int", "num_values": 3}),
    "trpo": dict(agent="trpo", states=VEC, actions=BOX, normalize_states=True),
}
LAYERED = dict(
    agent="ppo",
    states=VEC,
    actions={"type": "int", "num_values": 4},
    network=[{"type": "dense", "size": 16}, {"type": "dense", "size": 16, "activation": "relu"}],
)


def make_agent(case: dict) -> Agent:
    spec = dict(case)
    if spec["agent"] != "ppo" or "network" not in spec:
        spec.setdefault("network", SMALL)
    if spec["agent"] in ("sac", "td3", "dpg"):
        spec["critic"] = SMALL
    agent = Agent.create(**spec, seed=1)
    torch.manual_seed(2)
    modules = [m for m in (getattr(agent, n, None) for n in ("policy", "q", "actor")) if m]
    with torch.no_grad():  # spread the outputs: fresh heads give near-zero logits and means
        for module in modules:
            if isinstance(module, torch.nn.Module):
                for p in module.parameters():
                    p.add_(torch.randn_like(p) * 0.5)
                for buffer_name, b in module.named_buffers():
                    if buffer_name.endswith(("mean", "var")):
                        b.copy_(torch.rand_like(b) + (0.5 if buffer_name.endswith("var") else -0.5))
    return agent


def random_inputs(agent: Agent, rows: int = ROWS) -> dict[str, np.ndarray]:
    """States (and masks of int actions) by the names ``act`` takes."""
    rng = np.random.default_rng(3)
    single = agent.state_specs.single
    out = {}
    for name, spec in agent.state_specs.items:
        key = "state" if single else name
        if spec.type == "bool":
            out[key] = rng.random((rows, *spec.shape)) < 0.5
        else:
            out[key] = (rng.standard_normal((rows, *spec.shape)) * 2).astype(np.float32)
    for name, spec in agent.action_specs.items:
        if spec.type == "int":
            mask = rng.random((rows, *spec.shape, spec.num_values)) < 0.6
            mask[..., 0] |= ~mask.any(-1)
            out["action_mask" if agent.action_specs.single else f"{name}_mask"] = mask
    return out


def expected(agent: Agent, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    states = inputs["state"] if list(inputs) == ["state"] else inputs
    actions = agent.act(states, independent=True, deterministic=True)
    return actions if isinstance(actions, dict) else {"action": actions}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        value, other = np.asarray(value), np.asarray(got[name])
        assert other.shape == value.shape, name
        assert (other.dtype == bool) == (value.dtype == bool), name
        if value.dtype.kind == "f":
            np.testing.assert_allclose(other, value, rtol=1e-4, atol=1e-4, err_msg=name)
        else:
            np.testing.assert_array_equal(other, value, err_msg=name)


def load_numpy_policy():
    spec = importlib.util.spec_from_file_location("numpy_policy_under_test", LOADER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NumpyPolicy


@pytest.mark.parametrize("case", list(CASES))
def test_numpy_policy_matches_act(case: str, tmp_path: Path) -> None:
    agent = make_agent(CASES[case])
    path = agent.save(tmp_path, format="numpy_policy")
    assert path.endswith("agent.policy.json") and (tmp_path / "agent.policy.npz").is_file()
    inputs = random_inputs(agent)
    policy = load_numpy_policy().load(path)
    got = policy.act(inputs["state"] if list(inputs) == ["state"] else inputs)
    assert_same(got if isinstance(got, dict) else {"action": got}, expected(agent, inputs))
    one = {k: v[0] for k, v in inputs.items()}  # unbatched input -> unbatched action
    got = policy.act(one["state"] if list(one) == ["state"] else one)
    want = expected(agent, one)
    got = got if isinstance(got, dict) else {"action": got}
    for name in want:
        np.testing.assert_allclose(
            np.asarray(got[name], float), np.asarray(want[name], float), 1e-4, 1e-4
        )


def _positional(agent: Agent, inputs: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    from forceexp.export.policy import DeterministicPolicy

    policy = DeterministicPolicy(agent, "test")
    names = policy.input_names + policy.mask_names
    return names, [inputs[n] for n in names]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("case", [*CASES, "layered"])
def test_torchscript_matches_act(case: str, tmp_path: Path) -> None:
    agent = make_agent(LAYERED if case == "layered" else CASES[case])
    path = agent.save(tmp_path, format="torchscript")
    assert path.endswith("agent.torchscript.pt")
    module = torch.jit.load(path)
    inputs = random_inputs(agent)
    _, arrays = _positional(agent, inputs)
    with torch.no_grad():
        outputs = module(*(torch.from_numpy(a) for a in arrays))
    want = expected(agent, inputs)
    assert_same(dict(zip(want, (o.numpy() for o in outputs), strict=True)), want)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    ["ppo-categorical", "ppo-named", "ppo-beta", "dueling_dqn", "sac", "td3", "trpo", "layered"],
)
def test_onnx_matches_act_in_onnxruntime(case: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    agent = make_agent(LAYERED if case == "layered" else CASES[case])
    path = agent.save(tmp_path, format="onnx", filename="policy")
    assert path.endswith("policy.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = random_inputs(agent)
    names, arrays = _positional(agent, inputs)
    assert [i.name for i in session.get_inputs()] == names
    outputs = session.run(None, dict(zip(names, arrays, strict=True)))
    want = expected(agent, inputs)
    assert [o.name for o in session.get_outputs()] == list(want)
    assert_same(dict(zip(want, outputs, strict=True)), want)
    few = {k: v[:3] for k, v in inputs.items()}  # another batch size: the batch axis is dynamic
    outputs = session.run(None, dict(zip(names, _positional(agent, few)[1], strict=True)))
    assert_same(dict(zip(want, outputs, strict=True)), expected(agent, few))


def test_onnx_ppo_quick(tmp_path: Path) -> None:
    """One ONNX export outside the slow set: CartPole-sized PPO, checked in onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    agent = make_agent(CASES["ppo-gaussian-clip"])
    session = ort.InferenceSession(agent.save(tmp_path, format="onnx"))
    inputs = random_inputs(agent)
    (action,) = session.run(None, {"state": inputs["state"]})
    assert_same({"action": action}, expected(agent, inputs))


def test_numpy_policy_runs_with_numpy_alone(tmp_path: Path) -> None:
    agent = make_agent(CASES["ppo-categorical"])
    deploy = tmp_path / "deploy"
    agent.save(deploy, filename="cartpole", format="numpy_policy")
    (deploy / "numpy_policy.py").write_text(LOADER.read_text())
    inputs = random_inputs(agent)
    np.save(tmp_path / "states.npy", inputs["state"])
    np.save(tmp_path / "mask.npy", inputs["action_mask"])
    script = (
        "import sys, numpy as np\n"
        "from numpy_policy import NumpyPolicy\n"
        "policy = NumpyPolicy.load('cartpole.policy.json')\n"
        f"states = np.load({str(tmp_path / 'states.npy')!r})\n"
        f"mask = np.load({str(tmp_path / 'mask.npy')!r})\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, policy.act(states, {{'action_mask': mask}}))\n"
        "assert 'torch' not in sys.modules and 'forceexp' not in sys.modules\n"
        "print('numpy only')\n"
    )
    done = subprocess.run(  # -E: no PYTHONPATH, so forceexp is not even importable
        [sys.executable, "-E", "-s", "-c", script],
        cwd=deploy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "numpy only" in done.stdout
    assert_same({"action": np.load(tmp_path / "out.npy")}, expected(agent, inputs))


def test_numpy_policy_json_is_readable_and_checked(tmp_path: Path) -> None:
    agent = make_agent(CASES["dqn"])
    path = Path(agent.save(tmp_path, format="numpy_policy", append="timesteps"))
    assert path.name == "agent-0.policy.json"
    spec = json.loads(path.read_text())
    assert spec["agent"] == "dqn" and spec["weights"] == "agent-0.policy.npz"
    assert [layer["activation"] for layer in spec["layers"]] == ["tanh", "tanh"]
    assert not (tmp_path / "checkpoint.json").exists()  # exports are not checkpoints
    weights = tmp_path / "agent-0.policy.npz"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ValueError, match="SHA-256 does not match"):
        load_numpy_policy().load(path)


# ---------------------------------------------------------------------------- refusals
def test_export_refuses_agents_without_a_policy(tmp_path: Path) -> None:
    agent = Agent.create("random", states=VEC, actions={"type": "int", "num_values": 2})
    for fmt in ("onnx", "torchscript", "numpy_policy"):
        with pytest.raises(
            ConfigError, match=rf"save\(format='{fmt}'\): cannot export agent 'random'"
        ):
            agent.save(tmp_path, format=fmt)
    assert not list(tmp_path.iterdir())


def test_export_refuses_recurrent_policies(tmp_path: Path) -> None:
    agent = Agent.create(
        "ppo",
        states=VEC,
        actions={"type": "int", "num_values": 2},
        network=[{"type": "lstm", "size": 8}],
    )
    with pytest.raises(
        ConfigError, match="cannot export agent 'ppo': its policy network is recurrent"
    ):
        agent.save(tmp_path, format="torchscript")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (LAYERED, "its network is LayeredNetwork; only the auto MLP exports to NumPy"),
        (
            {**CASES["dqn"], "network": {"type": "auto", "size": 8, "activation": "gelu"}},
            r"cannot export agent 'dqn': activation GELU \(NumPy export supports elu, relu, silu",
        ),
        (
            {**CASES["ppo-categorical"], "states": {"type": "int", "shape": (2,), "num_values": 4}},
            "state 'state' is an int state",
        ),
        (
            {
                **CASES["ppo-categorical"],
                "network": {"type": "auto", "size": 4, "depth": 1},
                "distributions": {"action": {"skip_linear": True}},
            },
            r"a categorical head uses the network output as logits \(skip_linear\)",
        ),
    ],
)
def test_numpy_policy_refuses_what_it_cannot_run(spec: dict, match: str, tmp_path: Path) -> None:
    agent = Agent.create(**spec)
    with pytest.raises(ConfigError, match=match):
        agent.save(tmp_path, format="numpy_policy")


class _Untraceable(torch.nn.Module):
    output_size = 4

    def forward(self, states: dict[str, torch.Tensor]) -> torch.Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("cannot be traced")
        return states["state"][:, :4]


def test_untraceable_network_names_agent_network_and_format(tmp_path: Path) -> None:
    agent = Agent.create(
        "ppo", states=VEC, actions={"type": "int", "num_values": 2}, network=_Untraceable()
    )
    with pytest.raises(
        ConfigError,
        match=r"save\(format='torchscript'\): cannot export agent 'ppo': its network _Untraceable "
        r"does not trace \(RuntimeError: cannot be traced\)",
    ):
        agent.save(tmp_path, format="torchscript")


def test_export_argument_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = make_agent(CASES["dqn"])
    with pytest.raises(
        ConfigError, match=r"save\.format: 'tflite' is invalid; expected one of onnx"
    ):
        export(agent, tmp_path, format="tflite")
    with pytest.raises(ConfigError, match=r"save\.append: 'steps' is invalid"):
        agent.save(tmp_path, format="onnx", append="steps")
    with pytest.raises(
        ConfigError, match=r"save\.memory: format='torchscript' exports the policy only"
    ):
        agent.save(tmp_path, format="torchscript", memory=True)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(
        ConfigError, match=r"needs the onnx packages: pip install 'forceexp\[export\]'"
    ):
        agent.save(tmp_path, format="onnx")

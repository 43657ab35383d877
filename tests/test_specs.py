import gymnasium as gym
import numpy as np
import pytest

from forceexp.environments.spaces import spec_from_space
from forceexp.errors import ConfigError
from forceexp.specs import TensorSpec, check_array, parse_spec, parse_specs


def test_single_unnamed_spec_and_num_actions_alias():
    specs = parse_specs({"type": "int", "shape": (), "num_actions": 3}, "action")
    assert specs.single and specs.names() == ["action"]
    assert specs["action"] == TensorSpec("int", (), 3)
    assert specs.to_dict() == {"type": "int", "shape": [], "num_values": 3}


def test_named_specs_keep_order_and_bounds():
    specs = parse_specs(
        {
            "b": {"type": "float", "shape": 2, "min_value": -1, "max_value": 1},
            "a": {"type": "bool"},
        },
        "state",
    )
    assert specs.names() == ["b", "a"]
    assert specs["b"].shape == (2,) and specs["b"].is_bounded
    assert specs["a"].type == "bool"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "complex"}, r"states.type: 'complex' is invalid; expected one of"),
        ({"type": "float", "shape": (0,)}, r"positive dimensions"),
        ({"type": "float", "num_values": 3}, r"only for type 'int'"),
        ({"type": "int", "num_values": 0}, r"an int >= 1"),
        ({"type": "bool", "min_value": 0, "max_value": 1}, r"no bounds on bool"),
        ({"type": "float", "min_value": 1, "max_value": 0}, r"less than max_value"),
        ({"type": "float", "size": 3}, r"unknown spec key\(s\) \['size'\]"),
    ],
)
def test_bad_specs_name_the_problem(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_specs(spec, "state")


def test_reserved_and_missing_specs_are_rejected():
    with pytest.raises(ConfigError, match="not reserved"):
        parse_specs({"reward": {"type": "float"}}, "state")
    with pytest.raises(ConfigError, match="missing"):
        parse_specs(None, "state")


def test_check_array_shape_range_and_nan():
    spec = TensorSpec("int", (2,), 3)
    assert check_array("s", spec, [0, 2], 0).dtype == np.int64
    expected = r"expected ints in \[0, 3\) of shape \(2,\)"
    with pytest.raises(
        ConfigError, match=rf"s: \[0, 1, 2\] is invalid; {expected}. Got shape \(3,\)"
    ):
        check_array("s", spec, [0, 1, 2], 0)
    with pytest.raises(ConfigError, match=rf"{expected}. Got values in \[0, 3\]"):
        check_array("s", spec, [0, 3], 0)
    with pytest.raises(ConfigError, match=r"f: \[nan\] is invalid; expected finite floats.*NaN"):
        check_array("f", TensorSpec("float", (1,)), [np.nan], 0)
    with pytest.raises(ConfigError, match=rf"{expected}. Got dtype float64"):
        check_array("s", spec, [0.5, 1.0], 0)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [("hello", "<U5"), (np.ones(4, dtype=complex), "complex128"), ([1, None], "object")],
)
def test_check_array_refuses_strings_complex_and_objects(value: object, dtype: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"states: .* is invalid; expected finite floats of shape \(4,\). Got dtype {dtype}",
    ):
        check_array("states", TensorSpec("float", (4,)), value, 0)


def test_check_array_ragged_and_large_values() -> None:
    with pytest.raises(ConfigError, match=r"expected finite floats of shape \(batch, 2\)"):
        check_array("s", TensorSpec("float", (2,)), [[1.0], [1.0, 2.0]], 1)
    with pytest.raises(ConfigError, match=r"array\(shape=\(3, 3\), dtype=float64\) is invalid"):
        check_array("s", TensorSpec("float", (4,)), np.zeros((3, 3)), 0)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            {"shape": (2,), "min_value": float("nan")},
            r"s.min_value: nan is invalid; expected a num",
        ),
        ({"shape": (2,), "max_value": "high"}, r"s.max_value: 'high' is invalid"),
        ({"shape": (2,), "min_value": [0.0, float("nan")], "max_value": 1.0}, "s.min_value"),
        ({"shape": 2.5}, r"s.shape: 2.5 is invalid; expected an int or a tuple of ints"),
        ({"shape": (2, 1.5)}, r"s.shape: \(2, 1.5\) is invalid"),
        ({"shape": "4"}, r"s.shape: '4' is invalid"),
        (
            {"type": "int", "num_values": True},
            r"s.num_values: True is invalid; expected an int >= 1",
        ),
    ],
)
def test_spec_values_are_checked(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_spec(spec, "s")


def test_gymnasium_spaces_map_onto_specs():
    box = spec_from_space(gym.spaces.Box(-1.0, 1.0, (3,)))
    assert box == {"type": "float", "shape": (3,), "min_value": -1.0, "max_value": 1.0}
    assert spec_from_space(gym.spaces.Discrete(4)) == {"type": "int", "shape": (), "num_values": 4}
    assert spec_from_space(gym.spaces.MultiBinary(5)) == {"type": "bool", "shape": (5,)}
    multi = spec_from_space(gym.spaces.MultiDiscrete([3, 3]))
    assert multi == {"type": "int", "shape": (2,), "num_values": 3}
    mixed = spec_from_space(gym.spaces.MultiDiscrete([2, 5]), "action")
    assert mixed == {
        "action_0": {"type": "int", "num_values": 2},
        "action_1": {"type": "int", "num_values": 5},
    }
    nested = spec_from_space(gym.spaces.Dict({"pos": gym.spaces.Box(-np.inf, np.inf, (2,))}))
    assert nested == {"pos": {"type": "float", "shape": (2,)}}
    with pytest.raises(ConfigError, match="a Box, Discrete"):
        spec_from_space(gym.spaces.Text(5))

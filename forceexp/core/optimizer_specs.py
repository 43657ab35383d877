"""Tensorforce's optimizer specs (names, dicts, wrapper keys) built into update steps.

``build_optimizer`` reads what Tensorforce's ``optimizer=`` takes (``core/optimizers.py`` has
the steps); ``is_default`` tells the agents when their fast Adam path still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from forceexp.core.optimizers import (
    TORCH_OPTIMIZERS,
    ClippingStep,
    DoublecheckStep,
    Evolutionary,
    LinesearchStep,
    MultiStep,
    Plus,
    SubsamplingStep,
    TorchStep,
    UpdateOptimizer,
    UpdateStep,
)
from forceexp.errors import ConfigError, check_int, message, unknown_name

#: the ``optimizer_wrapper`` keys, outermost first (Tensorforce's nesting order)
WRAPPER_KEYS = (
    "clipping_threshold",
    "multi_step",
    "subsampling_fraction",
    "linesearch_iterations",
    "doublecheck_update",
)
_MODIFIERS = (
    "clipping_step",
    "multi_step",
    "subsampling_step",
    "linesearch_step",
    "doublecheck_step",
)
_REFUSED = {
    "natural_gradient": "the natural gradient is the trpo agent's update",
    "synchronization": "synchronization is a baseline optimizer (baseline_optimizer=)",
    "global_optimizer": "there is one process here: no global model",
}


def is_default(spec: Any) -> bool:
    """Whether ``spec`` is plain Adam with at most a learning rate (the agents' fast default)."""
    if spec is None or isinstance(spec, int | float) or spec == "adam":
        return True
    if not isinstance(spec, Mapping):
        return False
    kind = spec.get("type", spec.get("optimizer", "adam"))
    if kind in ("optimizer_wrapper", "default"):
        kind = spec.get("optimizer", "adam")
    return kind == "adam" and set(spec) <= {"type", "optimizer", "learning_rate"}


def build_optimizer(
    spec: Any, params: list[nn.Parameter], path: str = "agent.optimizer"
) -> UpdateOptimizer:
    """Build a Tensorforce optimizer spec over ``params``.

    Args:
        spec: A name (``'adam'``, ``'evolutionary'``, ...) or a dict: ``type`` (or
            ``optimizer``) plus that optimizer's arguments, and any of the ``optimizer_wrapper``
            keys ``clipping_threshold``, ``multi_step``, ``subsampling_fraction``,
            ``linesearch_iterations``, ``doublecheck_update`` (nested in Tensorforce's order).
        params: The parameters it steps.
        path: Where the spec came from, for errors.

    Raises:
        ConfigError: Unknown types or keys, or values out of range, named with the path.
    """
    return UpdateOptimizer(_build(spec, list(params), path), repr(spec))


def _build(spec: Any, params: list[nn.Parameter], path: str) -> UpdateStep:
    """One spec (wrapper keys included) as an update step."""
    spec = {"type": spec} if isinstance(spec, str) else dict(_as_mapping(spec, path))
    kind = spec.pop("type", None)
    if kind in (None, "optimizer_wrapper", "default", "tf_optimizer"):
        kind = spec.pop("optimizer", "adam")
    if isinstance(kind, Mapping):  # dict(optimizer=dict(type=...), <wrapper keys>)
        inner = {**kind, **{k: v for k, v in spec.items() if k not in WRAPPER_KEYS}}
        spec = {k: v for k, v in spec.items() if k in WRAPPER_KEYS}
        return _wrap(_build(inner, params, path), spec, path)
    wrappers = {key: spec.pop(key) for key in WRAPPER_KEYS if key in spec}
    return _wrap(_base(kind, spec, params, path), wrappers, path)


def _base(kind: Any, spec: dict[str, Any], params: list[nn.Parameter], path: str) -> UpdateStep:
    """The optimizer or explicit modifier ``kind`` with its own arguments ``spec``."""
    if kind in _REFUSED:
        raise ConfigError(message(f"{path}.type", kind, "not here", _REFUSED[kind]))
    if kind == "plus":
        first = _build(_required(spec, "optimizer1", path), params, f"{path}.optimizer1")
        second = _build(_required(spec, "optimizer2", path), params, f"{path}.optimizer2")
        _no_more(spec, path)
        return Plus(first, second)
    if kind in _MODIFIERS:
        return _modifier(kind, spec, params, path)
    if kind == "evolutionary":
        rate = _required(spec, "learning_rate", path)
        _check_positive(f"{path}.learning_rate", rate)
        samples = spec.pop("num_samples", None) or 1
        check_int(f"{path}.num_samples", samples, 1)
        _no_more(spec, path)
        return Evolutionary(params, float(rate), samples)
    if kind not in TORCH_OPTIMIZERS:
        valid = [*TORCH_OPTIMIZERS, "evolutionary", "plus", *_MODIFIERS]
        raise unknown_name(f"{path}.type", kind, valid, "optimizer")
    rate, clipping = spec.pop("learning_rate", None), spec.pop("gradient_norm_clipping", None)
    for key, value in (("learning_rate", rate), ("gradient_norm_clipping", clipping)):
        if value is not None:
            _check_positive(f"{path}.{key}", value)
    return TorchStep(params, kind, rate, clipping, path, **spec)


def _modifier(kind: str, spec: dict[str, Any], params: list[nn.Parameter], path: str) -> UpdateStep:
    """An explicit ``clipping_step``/``multi_step``/... spec as the wrapper key it equals."""
    inner = _build(_required(spec, "optimizer", path), params, f"{path}.optimizer")
    if kind == "clipping_step":
        threshold = _required(spec, "threshold", path)
        mode = spec.pop("mode", "global_norm")
        if mode not in ("global_norm", "norm", "value"):
            raise ConfigError(message(f"{path}.mode", mode, "'global_norm', 'norm' or 'value'"))
        _no_more(spec, path)
        _check_positive(f"{path}.threshold", threshold)
        return ClippingStep(inner, float(threshold), mode)
    if kind == "linesearch_step":
        factor = spec.pop("backtracking_factor", 0.75)
        if not isinstance(factor, int | float) or not 0.0 < factor < 1.0:
            raise ConfigError(message(f"{path}.backtracking_factor", factor, "a float in (0, 1)"))
        iterations = _required(spec, "max_iterations", path)
        check_int(f"{path}.max_iterations", iterations, 1)
        step = LinesearchStep(inner, iterations, factor)
    else:
        key, argument = {
            "multi_step": ("multi_step", "num_steps"),
            "subsampling_step": ("subsampling_fraction", "fraction"),
            "doublecheck_step": ("doublecheck_update", None),
        }[kind]
        value = True if argument is None else _required(spec, argument, path)
        step = _wrap(inner, {key: value}, path)
    _no_more(spec, path)
    return step


def _wrap(step: UpdateStep, keys: dict[str, Any], path: str = "agent.optimizer") -> UpdateStep:
    """Apply the ``optimizer_wrapper`` keys, innermost (``doublecheck_update``) first."""
    if keys.get("doublecheck_update"):
        step = DoublecheckStep(step)
    iterations = keys.get("linesearch_iterations", 0)
    check_int(f"{path}.linesearch_iterations", iterations, 0)
    if iterations > 0:
        step = LinesearchStep(step, iterations)
    fraction = keys.get("subsampling_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or fraction <= 0:
        raise ConfigError(
            message(f"{path}.subsampling_fraction", fraction, "a float in (0, 1] or an int >= 1")
        )
    if isinstance(fraction, float) and fraction > 1.0:
        raise ConfigError(message(f"{path}.subsampling_fraction", fraction, "a float in (0, 1]"))
    if fraction != 1.0 or isinstance(fraction, int):
        step = SubsamplingStep(step, fraction)
    steps = keys.get("multi_step", 1)
    check_int(f"{path}.multi_step", steps, 1)
    if steps > 1:
        step = MultiStep(step, steps)
    if keys.get("clipping_threshold") is not None:
        _check_positive(f"{path}.clipping_threshold", keys["clipping_threshold"])
        step = ClippingStep(step, float(keys["clipping_threshold"]))
    return step


def _as_mapping(spec: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(spec, Mapping):
        raise ConfigError(message(path, spec, "an optimizer name or dict(type=..., ...)"))
    return spec


def _required(spec: dict[str, Any], key: str, path: str) -> Any:
    if key not in spec:
        raise ConfigError(f"{path}: {key}= is required")
    return spec.pop(key)


def _no_more(spec: dict[str, Any], path: str) -> None:
    if spec:
        raise ConfigError(f"{path}: unsupported keys {sorted(spec)}")


def _check_positive(path: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(message(path, value, "a number > 0"))

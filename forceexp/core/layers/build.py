"""Turn one layer spec (name, dict, import path, class or function) into a shape-checked Layer."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer, float_spec
from forceexp.errors import ConfigError
from forceexp.registry import import_object, resolve
from forceexp.specs import NUMPY_DTYPES, TensorSpec

Registered = dict[str, tuple[TensorSpec, str]]
Named = dict[str, Layer]  # layer name -> the built layer (for ``reuse``)


def build_layer(
    spec: Any,
    input_spec: TensorSpec | None,
    path: str,
    registered: Registered,
    named: Named | None = None,
) -> Layer:
    """Build one layer from ``spec`` for a running tensor of ``input_spec``.

    Args:
        spec: ``'flatten'``, ``dict(type='dense', size=32)``, ``dict(type='pkg.mod.Class', ...)``
            (a user ``nn.Module`` or ``Layer``), an ``nn.Module`` class, or a plain function on
            tensors (a ``function`` layer); ``'pkg.mod.fn'`` imports one. A ``name`` key makes
            the layer reusable by ``reuse``.
        input_spec: Spec of the running tensor (None at the start of a multi-state network).
        path: Config path used in errors, e.g. ``network[2][0]``.
        registered: Build-time table of named tensors (states and registered names).
        named: Build-time table of named layers (None: names are accepted and ignored).

    Raises:
        ConfigError: Unknown type (with the valid names), bad arguments, or shape mismatch.
    """
    name = spec.get("name") if isinstance(spec, dict) else None
    if isinstance(spec, dict):
        spec = {key: value for key, value in spec.items() if key != "name"}
    if not (isinstance(spec, str | dict) or callable(spec)):
        raise ConfigError(
            f"{path}: {spec!r} is invalid; expected a layer name, a dict with 'type', a class "
            "or a function"
        )
    if isinstance(spec, dict) and "type" not in spec:
        raise ConfigError(f"{path}: layer spec {spec!r} has no 'type' key")
    kind, kwargs = resolve(spec, LAYERS, path)
    layer = _construct(kind, kwargs, input_spec, path, f"{path}.type", registered, named)
    if name is not None and named is not None:
        if name in named:
            raise ConfigError(f"{path}.name: layer name {name!r} is used twice")
        named[name] = layer
    return layer


def _construct(
    kind: Any,
    kwargs: dict[str, Any],
    input_spec: TensorSpec | None,
    path: str,
    kind_path: str,
    registered: Registered,
    named: Named | None,
) -> Layer:
    if not inspect.isclass(kind):
        if not callable(kind):
            raise ConfigError(f"{kind_path}: {kind!r} is not a layer class or function")
        _check_kwargs(Function, {"function": kind, **kwargs}, path)
        return Function(input_spec, path, function=kind, **kwargs)
    if not issubclass(kind, nn.Module):
        builtin = kind.__module__ == "builtins"
        shown = repr(kind) if builtin else repr(f"{kind.__module__}.{kind.__qualname__}")
        raise ConfigError(f"{kind_path}: {shown} is not an nn.Module class")
    if not issubclass(kind, Layer):
        return CustomLayer(input_spec, path, module=kind, kwargs=kwargs)
    _check_kwargs(kind, kwargs, path)
    if kind.uses_registry:
        kwargs["registered"] = registered
    if kind.uses_named:
        kwargs["named"] = {} if named is None else named
    return kind(input_spec, path, **kwargs)


def _check_kwargs(cls: type[Layer], kwargs: dict[str, Any], path: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    hidden = ("self", "input_spec", "path", "registered", "named")
    valid = [p for p in params if p not in hidden]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"{path}.{key}: unknown argument of layer {cls.__name__}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )


def probe_output(
    fn: Callable[[torch.Tensor], torch.Tensor], spec: TensorSpec, path: str, what: str
) -> TensorSpec:
    """The float output spec of ``fn`` found with one forward pass on a batch of two zeros."""
    dtype = (
        torch.float32 if spec.type == "float" else torch.as_tensor(NUMPY_DTYPES[spec.type](0)).dtype
    )
    try:
        with torch.no_grad():
            out = fn(torch.zeros((2, *spec.shape), dtype=dtype))
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != 2:
            raise TypeError(f"returned {type(out).__name__} without the batch axis of 2 rows")
    except Exception as exc:
        raise ConfigError(f"{path}: {what} failed on input shape {spec.shape}: {exc}") from exc
    return float_spec(tuple(out.shape[1:]))


class CustomLayer(Layer):
    """Wrap a user ``nn.Module`` class; its output shape is found with one dummy forward pass.

    The class is built with ``kwargs`` (plus ``input_shape`` when its ``__init__`` takes it)
    and must map ``(B, *input_shape)`` to a float tensor ``(B, *output_shape)``.

    Args:
        input_spec: The running tensor's spec.
        path: Config path of the layer.
        module: The ``nn.Module`` subclass.
        kwargs: Its constructor arguments.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        module: type[nn.Module],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input(module.__name__)
        if "input_shape" in inspect.signature(module.__init__).parameters:
            kwargs = {**kwargs, "input_shape": spec.shape}
        what = f"custom layer {module.__name__}"
        try:
            self.module = module(**kwargs)
        except Exception as exc:
            raise ConfigError(f"{path}: {what} failed on input shape {spec.shape}: {exc}") from exc
        self.output_spec = probe_output(self.module, spec, path, what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the wrapped module."""
        return self.module(x)


@LAYERS.register("function")
class Function(Layer):
    """Apply a Python function on tensors, ``(B, *S) -> (B, *S')``; ``S'`` is found at build time.

    Args:
        input_spec: The running tensor's spec.
        path: Config path of the layer.
        function: A callable on a ``(B, *S)`` tensor, or an import path ``'pkg.mod.fn'``
            (e.g. ``'torch.tanh'``). String expressions are not evaluated.
        output_spec: Optional expected output, ``dict(shape=...)`` (and ``type='float'``);
            checked against the shape found by one forward pass.
    """

    def __init__(
        self,
        input_spec: TensorSpec | None,
        path: str,
        function: Callable[[torch.Tensor], torch.Tensor] | str | None = None,
        output_spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(input_spec, path)
        spec = self.require_input("function")
        if isinstance(function, str):
            if "." not in function:
                raise ConfigError(
                    f"{path}.function: {function!r} is invalid; expected a callable or an "
                    "import path 'package.module.function' (expressions are not evaluated)"
                )
            function = import_object(function, f"{path}.function")
        if not callable(function):
            raise ConfigError(f"{path}.function: {function!r} is invalid; expected a callable")
        self.function = function
        name = getattr(function, "__name__", type(function).__name__)
        self.output_spec = probe_output(function, spec, path, f"function {name}")
        if output_spec is not None:
            expected = tuple(output_spec.get("shape", self.output_spec.shape))
            if expected != self.output_spec.shape or output_spec.get("type", "float") != "float":
                raise ConfigError(
                    f"{path}.output_spec: {output_spec!r} does not match the function's output "
                    f"(float, shape {self.output_spec.shape})"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``function(x)`` as float."""
        return self.function(x).float()

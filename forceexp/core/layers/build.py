"""Turn one layer spec (a name, a dict with ``type``, or a class) into a shape-checked Layer."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import nn

from forceexp.core.layers.base import LAYERS, Layer, float_spec
from forceexp.errors import ConfigError
from forceexp.specs import NUMPY_DTYPES, TensorSpec

Registered = dict[str, tuple[TensorSpec, str]]


def layer_type(spec: Any, path: str) -> tuple[Any, dict[str, Any]]:
    """Split a layer spec into its ``type`` (name or class) and keyword arguments."""
    if isinstance(spec, str) or inspect.isclass(spec):
        return spec, {}
    if isinstance(spec, dict):
        kwargs = dict(spec)
        if "type" not in kwargs:
            raise ConfigError(f"{path}: layer spec {spec!r} has no 'type' key")
        kwargs.pop("name", None)  # accepted for Tensorforce compatibility; paths name layers
        return kwargs.pop("type"), kwargs
    raise ConfigError(
        f"{path}: {spec!r} is invalid; expected a layer name, a dict with 'type', or a class"
    )


def import_module_class(path: str, target: str) -> type[nn.Module]:
    """Import ``package.module.Class`` (a user layer); it must be an ``nn.Module`` subclass."""
    module_name, _, attr = target.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{path}.type: cannot import custom layer {target!r} ({exc})") from exc
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        raise ConfigError(f"{path}.type: {target!r} is not an nn.Module class")
    return obj


def build_layer(
    spec: Any, input_spec: TensorSpec | None, path: str, registered: Registered
) -> Layer:
    """Build one layer from ``spec`` for a running tensor of ``input_spec``.

    Args:
        spec: ``'flatten'``, ``dict(type='dense', size=32)``, ``dict(type='pkg.mod.Class', ...)``
            (a user ``nn.Module``), or an ``nn.Module`` class.
        input_spec: Spec of the running tensor (None at the start of a multi-state network).
        path: Config path used in errors, e.g. ``network[2][0]``.
        registered: Build-time table of named tensors (states and registered names).

    Raises:
        ConfigError: Unknown type (with the valid names), bad arguments, or shape mismatch.
    """
    kind, kwargs = layer_type(spec, path)
    if isinstance(kind, str) and "." in kind:
        kind = import_module_class(path, kind)
    if inspect.isclass(kind) and not issubclass(kind, Layer):
        if not issubclass(kind, nn.Module):
            raise ConfigError(f"{path}.type: {kind!r} is not an nn.Module class")
        return CustomLayer(input_spec, path, module=kind, kwargs=kwargs)
    cls = kind if inspect.isclass(kind) else LAYERS.get(kind, f"{path}.type")
    _check_kwargs(cls, kwargs, path)
    if cls.uses_registry:
        kwargs["registered"] = registered
    return cls(input_spec, path, **kwargs)


def _check_kwargs(cls: type[Layer], kwargs: dict[str, Any], path: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "input_spec", "path", "registered")]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"{path}.{key}: unknown argument of layer {cls.__name__}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )


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
        try:
            self.module = module(**kwargs)
            dtype = (
                torch.float32
                if spec.type == "float"
                else torch.as_tensor(NUMPY_DTYPES[spec.type](0)).dtype
            )
            with torch.no_grad():
                out = self.module(torch.zeros((2, *spec.shape), dtype=dtype))
        except Exception as exc:
            raise ConfigError(
                f"{path}: custom layer {module.__name__} failed on input shape {spec.shape}: {exc}"
            ) from exc
        self.output_spec = float_spec(tuple(out.shape[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the wrapped module."""
        return self.module(x)

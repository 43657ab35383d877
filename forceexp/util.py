"""Tensorforce's ``util`` dtype helpers, for environment code written to its interface."""

from __future__ import annotations

from forceexp.errors import ConfigError, message
from forceexp.specs import NUMPY_DTYPES

PYTHON_DTYPES = {"float": float, "int": int, "bool": bool}


def py_dtype(dtype: str) -> type:
    """The Python type of a single scalar action of spec type ``dtype`` ('bool'/'int'/'float')."""
    if dtype not in PYTHON_DTYPES:
        raise ConfigError(message("dtype", dtype, f"one of {sorted(PYTHON_DTYPES)}"))
    return PYTHON_DTYPES[dtype]


def np_dtype(dtype: str) -> type:
    """The NumPy dtype of arrays of spec type ``dtype`` (float32, int64, bool_)."""
    if dtype not in NUMPY_DTYPES:
        raise ConfigError(message("dtype", dtype, f"one of {sorted(NUMPY_DTYPES)}"))
    return NUMPY_DTYPES[dtype]

"""Builds rclpy messages for the shared conversion functions in ``messages.convert``."""

from __future__ import annotations

import array
import importlib
from functools import lru_cache
from typing import Any

import numpy as np

# numpy dtype -> array.array typecode: rclpy takes primitive arrays as array.array, which
# it copies in one go instead of checking every element of a Python sequence.
_TYPECODES = {np.dtype(np.float32): "f", np.dtype(np.float64): "d", np.dtype(np.uint16): "H",
              np.dtype(np.int16): "h", np.dtype(np.uint8): "B", np.dtype(np.int32): "i",
              np.dtype(np.uint32): "I", np.dtype(np.int64): "q", np.dtype(np.uint64): "Q"}


@lru_cache(maxsize=None)
def message_class(type_name: str) -> type:
    """``pkg/msg/Name`` -> the generated rclpy class."""
    package, _, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class RclpyFactory:
    def new(self, type_name: str, **fields: Any) -> Any:
        return message_class(type_name)(**fields)

    def array(self, values: np.ndarray) -> array.array:
        values = np.ascontiguousarray(values)
        return array.array(_TYPECODES[values.dtype], values.tobytes())

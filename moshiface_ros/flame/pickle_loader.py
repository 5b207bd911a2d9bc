"""Reads FLAME's pickles without chumpy and without running anything they name.

FLAME ships as a Python 2 pickle whose arrays are ``chumpy.ch.Ch`` objects (chumpy does not
install on current Pythons) and whose ``J_regressor`` is a ``scipy.sparse`` matrix. A plain
``pickle.load`` would import chumpy and, worse, call whatever global a tampered file names
(``os.system`` ...). This unpickler resolves only the globals needed to rebuild numpy arrays,
the scipy sparse matrices FLAME uses and chumpy ``Ch`` arrays (rebuilt as numpy arrays from
their stored value); any other global is refused with a one-line error naming it.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import MoshifaceError


class _ChumpyArray:
    """Stands in for ``chumpy.ch.Ch``: keeps the pickled state, whose ``x`` is the value."""

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def value(self) -> np.ndarray:
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        if not isinstance(state, dict) or "x" not in state:
            raise MoshifaceError("a chumpy array in the pickle has no stored value 'x'")
        return np.asarray(_plain(state["x"]))


class _SparseMatrix:
    """Stands in for a scipy sparse CSC/CSR matrix: keeps the pickled fields."""

    format = ""

    def __init__(self, *args: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}
        self.state = dict(state) if isinstance(state, dict) else {}

    def value(self) -> Any:
        import scipy.sparse

        s = self.state
        shape = s.get("_shape", s.get("shape"))
        try:
            parts = (np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"]))
            matrix = scipy.sparse.csc_matrix if self.format == "csc" else scipy.sparse.csr_matrix
            return matrix(parts, shape=tuple(int(n) for n in shape))
        except (KeyError, TypeError, ValueError) as exc:
            raise MoshifaceError(f"a sparse {self.format} matrix in the pickle is incomplete ({exc})") from exc


class _Csc(_SparseMatrix):
    format = "csc"


class _Csr(_SparseMatrix):
    format = "csr"


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to the classes this module allows."""
    if cls not in _ALLOWED_CLASSES or base not in (object, np.ndarray):
        raise MoshifaceError(f"the pickle rebuilds a {cls!r} object, which is not allowed")
    return copyreg._reconstructor(cls, base, state)


_NUMPY = {
    "_reconstruct": np.core.multiarray._reconstruct,
    "scalar": np.core.multiarray.scalar,
}
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,  # how protocol 2 stores bytes on Python 3
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("chumpy.ch", "Ch"): _ChumpyArray,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name, _value in _NUMPY.items():
        _ALLOWED[(_module, _name)] = _value
for _module in ("scipy.sparse.csc", "scipy.sparse._csc"):
    _ALLOWED[(_module, "csc_matrix")] = _Csc
for _module in ("scipy.sparse.csr", "scipy.sparse._csr"):
    _ALLOWED[(_module, "csr_matrix")] = _Csr
_ALLOWED_CLASSES = (np.ndarray, _ChumpyArray, _Csc, _Csr, object)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals FLAME's files need."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise MoshifaceError(
                f"refusing to load the pickle: it names the global {module}.{name}, and only numpy "
                "arrays, scipy sparse matrices and chumpy arrays are allowed") from None


def _plain(obj: Any) -> Any:
    """Replaces the stand-in objects by numpy arrays / scipy matrices, recursively."""
    if isinstance(obj, (_ChumpyArray, _SparseMatrix)):
        return obj.value()
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(value) for value in obj)
    return obj


def restricted_load(file: BinaryIO, what: str = "the pickle") -> Any:
    """Unpickles ``file`` with :class:`RestrictedUnpickler` (Python 2 pickles read as latin-1)."""
    try:
        return _plain(RestrictedUnpickler(file, encoding="latin1").load())
    except MoshifaceError as exc:
        raise MoshifaceError(f"{what}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError) as exc:
        raise MoshifaceError(f"{what} is not a readable pickle ({type(exc).__name__}: {exc})") from None


def load_pickle(path: Path | str) -> Any:
    """Reads a pickle file through the restricted unpickler; every problem is one MoshifaceError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MoshifaceError(f"{path} does not exist") from None
    except OSError as exc:
        raise MoshifaceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return restricted_load(io.BytesIO(data), str(path))

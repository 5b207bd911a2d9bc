"""Reads FLAME's pickles without chumpy and without running anything they name.

FLAME ships as a Python 2 pickle whose arrays are ``chumpy.ch.Ch`` objects (chumpy does not
install on current Pythons) and whose ``J_regressor`` is a ``scipy.sparse`` matrix. A plain
``pickle.load`` would import chumpy and, worse, call whatever global a tampered file names
(``os.system`` ...). This unpickler resolves only the globals needed to rebuild numpy arrays,
the scipy sparse matrices FLAME uses and chumpy ``Ch`` arrays (rebuilt as numpy arrays from
their stored value); any other global is refused with a one-line error naming it.

Refusing code is not enough: a few hundred bytes of pickle can claim gigabytes (a memo
index of 2**30 makes the C unpickler grow its memo table to it; a string length beyond
the end of the file is allocated before it is read), and shared or cyclic containers
turn a walk over the result into an exponential tree or endless recursion. So before
anything is built, the opcodes are scanned (``pickletools.genops`` reads them without
executing anything) and the file is refused past fixed limits on its size, the number of
opcodes, memo indices and nesting; afterwards, the stand-ins are replaced by a walk that
keeps shared objects shared, refuses cycles and stops at a depth no FLAME file has.
Every failure is one ``MoshifaceError`` line.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import MoshifaceError


MAX_BYTES = 1 << 30  # FLAME's pickles are ~50-100 MB
MAX_OPCODES = 1_000_000  # FLAME's hold a few thousand
MAX_MEMO_INDEX = 1_000_000
MAX_DEPTH = 32  # of nested containers; FLAME's is under 6

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}


def _scan(data: bytes) -> None:
    """Checks the opcodes against the limits without building anything (genops verifies
    that every length claimed is present in the file)."""
    if len(data) > MAX_BYTES:
        raise MoshifaceError(f"it is {len(data):,} bytes, more than a FLAME file can be ({MAX_BYTES:,})")
    depth, memo = 0, 0
    try:
        for count, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if count >= MAX_OPCODES:
                raise MoshifaceError(f"it has more than {MAX_OPCODES:,} opcodes")
            if op.name in _MEMO_PUTS or op.name in _MEMO_GETS:
                if not isinstance(arg, int) or not 0 <= arg <= MAX_MEMO_INDEX:
                    raise MoshifaceError(f"it uses the memo index {arg}, beyond {MAX_MEMO_INDEX:,}")
            elif op.name == "MEMOIZE":
                memo += 1
                if memo > MAX_MEMO_INDEX:
                    raise MoshifaceError(f"it memoizes more than {MAX_MEMO_INDEX:,} objects")
            depth += (op.name == "MARK") - (op.name in _MARK_CONSUMERS)
            if depth > MAX_DEPTH:
                raise MoshifaceError(f"it nests deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        raise MoshifaceError(f"it is not a readable pickle ({exc})") from None


_MARK_CONSUMERS = {"TUPLE", "LIST", "DICT", "APPENDS", "SETITEMS", "POP_MARK", "FROZENSET", "ADDITEMS",
                   "INST", "OBJ"}


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
        return np.asarray(state["x"])


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


def _plain(obj: Any, done: dict[int, Any] | None = None, active: set[int] | None = None,
           depth: int = 0) -> Any:
    """Replaces the stand-in objects by numpy arrays / scipy matrices. A shared object is
    converted once and stays shared (``done``); a cycle (``active``) or nesting deeper than
    ``MAX_DEPTH`` is refused, so the walk is linear in the pickle's size."""
    done = {} if done is None else done
    active = set() if active is None else active
    if not isinstance(obj, (_ChumpyArray, _SparseMatrix, dict, list, tuple)):
        return obj
    key = id(obj)
    if key in done:
        return done[key]
    if key in active:
        raise MoshifaceError("it contains a cyclic structure, which FLAME files never have")
    if depth > MAX_DEPTH:
        raise MoshifaceError(f"it nests deeper than {MAX_DEPTH} levels")
    active.add(key)
    try:
        if isinstance(obj, (_ChumpyArray, _SparseMatrix)):
            obj.state = _plain(obj.state, done, active, depth + 1)
            result = obj.value()
        elif isinstance(obj, dict):
            result = {k: _plain(v, done, active, depth + 1) for k, v in obj.items()}
        else:
            result = type(obj)(_plain(v, done, active, depth + 1) for v in obj)
    finally:
        active.discard(key)
    done[key] = result
    return result


def restricted_load(file: BinaryIO, what: str = "the pickle") -> Any:
    """Unpickles ``file`` with :class:`RestrictedUnpickler` (Python 2 pickles read as latin-1)
    after checking it against the limits; every failure is one MoshifaceError."""
    try:
        data = file.read(MAX_BYTES + 1)
        _scan(data)
        return _plain(RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load())
    except MoshifaceError as exc:
        raise MoshifaceError(f"{what}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, RecursionError, MemoryError, OverflowError) as exc:
        raise MoshifaceError(f"{what} is not a readable pickle ({type(exc).__name__}: "
                             f"{_short(exc)})") from None


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


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

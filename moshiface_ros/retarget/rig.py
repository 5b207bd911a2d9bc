"""A blendshape rig on the FLAME topology: names and per-vertex displacement fields.

A rig file is an ``.npz`` with

* ``names``: K strings (ARKit-52 names for an ARKit head, any names otherwise),
* ``deltas``: K x V x 3 float, each blendshape's displacement from the neutral face at
  weight 1, in metres, on the same topology (and axes) as the robot's face frames,
* optionally ``neutral`` (V x 3) and ``faces`` (F x 3 vertex indices): the mesh the
  deltas were made on, used for features, rviz and previews when given.

Making such a rig is the one piece of work a virtual head needs: transfer the head's
own blendshapes onto FLAME (e.g. with a wrap/deformation transfer tool) and save them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MoshifaceError
from ..fileio import atomic_path


@dataclass
class Rig:
    names: list[str]
    deltas: np.ndarray  # K x V x 3
    neutral: np.ndarray | None = None
    faces: np.ndarray | None = None

    @property
    def vertices(self) -> int:
        return int(self.deltas.shape[1])

    def synthesise(self, weights: np.ndarray) -> np.ndarray:
        """The displacement (V x 3) of a weight vector: what the solver inverts."""
        return np.tensordot(np.asarray(weights, np.float64), self.deltas, axes=1).astype(np.float32)


def load_rig(path: Path | str) -> Rig:
    """Reads a rig ``.npz``; every problem is one ``MoshifaceError`` naming file and key."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError as exc:
        raise MoshifaceError(f"rig file {path} does not exist") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MoshifaceError(f"rig file {path} is not a readable .npz ({exc})") from exc
    for key in ("names", "deltas"):
        if key not in arrays:
            raise MoshifaceError(f"rig file {path} has no '{key}' array (it needs names and deltas)")
    names = [str(n) for n in np.asarray(arrays["names"]).reshape(-1)]
    deltas = np.asarray(arrays["deltas"])
    if deltas.ndim != 3 or deltas.shape[2] != 3 or deltas.shape[0] != len(names):
        raise MoshifaceError(f"rig file {path}: 'deltas' must be K x V x 3 with K = {len(names)} names, "
                             f"got shape {deltas.shape}")
    if len(set(names)) != len(names) or not all(names):
        raise MoshifaceError(f"rig file {path}: 'names' must be unique and non-empty")
    deltas = deltas.astype(np.float32)
    if not np.isfinite(deltas).all():
        raise MoshifaceError(f"rig file {path}: 'deltas' contains NaN or infinite values")
    rig = Rig(names, deltas)
    if "neutral" in arrays:
        rig.neutral = _mesh(arrays["neutral"], rig.vertices, path)
    if "faces" in arrays:
        rig.faces = _faces(arrays["faces"], rig.vertices, path)
    return rig


def _mesh(array: np.ndarray, vertices: int, path: Path) -> np.ndarray:
    mesh = np.asarray(array, np.float32)
    if mesh.shape != (vertices, 3) or not np.isfinite(mesh).all():
        raise MoshifaceError(f"{path}: 'neutral' must be a finite {vertices} x 3 array, got {mesh.shape}")
    return mesh


def _faces(array: np.ndarray, vertices: int, path: Path) -> np.ndarray:
    faces = np.asarray(array)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise MoshifaceError(f"{path}: 'faces' must be F x 3 integer vertex indices, got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= vertices):
        raise MoshifaceError(f"{path}: 'faces' has indices outside 0..{vertices - 1}")
    return faces.astype(np.int64)


def save_rig(rig: Rig, path: Path | str) -> Path:
    """Writes ``rig`` as ``.npz`` (to a temporary name first, then renamed)."""
    path = Path(path)
    arrays = {"names": np.asarray(rig.names), "deltas": np.asarray(rig.deltas, np.float32)}
    if rig.neutral is not None:
        arrays["neutral"] = np.asarray(rig.neutral, np.float32)
    if rig.faces is not None:
        arrays["faces"] = np.asarray(rig.faces, np.int64)
    with atomic_path(path) as tmp, tmp.open("wb") as file:  # a file object: np.savez adds no suffix
        np.savez(file, **arrays)
    return path


def load_mesh(path: Path | str, vertices: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A neutral mesh from ``.npy`` (V x 3) or ``.npz`` (``neutral`` [+ ``faces``]);
    returns (neutral, faces or None)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            neutral, faces = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as data:
                if "neutral" not in data.files:
                    raise MoshifaceError(f"mesh file {path} has no 'neutral' array")
                neutral = data["neutral"]
                faces = data["faces"] if "faces" in data.files else None
    except FileNotFoundError as exc:
        raise MoshifaceError(f"mesh file {path} does not exist") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MoshifaceError(f"mesh file {path} is not a readable .npy/.npz ({exc})") from exc
    neutral = np.asarray(neutral)
    count = vertices if vertices is not None else (neutral.shape[0] if neutral.ndim == 2 else -1)
    neutral = _mesh(neutral, count, path)
    return neutral, (None if faces is None else _faces(faces, count, path))

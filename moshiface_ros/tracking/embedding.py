"""Where MediaPipe's landmarks sit on a FLAME-topology mesh: per landmark a triangle and
barycentric coordinates, stored as a small ``.npz`` file.

Format (numpy ``.npz``): ``landmark_ids`` (L,) MediaPipe landmark index of each row;
``triangles`` (L,) index into the model's faces ``f``; ``barycentric`` (L, 3) weights of the
triangle's three vertices (summing to 1); ``num_vertices`` () the vertex count of the
topology it was built for (5,023 for FLAME; teeth vertices come after and are not used);
``source`` () a description. A landmark's 3D position on any mesh of that topology is
``sum_k barycentric[l, k] * vertices[f[triangles[l], k]]``.

``build_embedding`` makes one from a model: it aligns the package's reference face
(MediaPipe's layout measured on a real photo, see ``reference.py``) to the model's
template, first by the nose tip at metric scale, then by iterative closest points with a
similarity transform, and projects each landmark onto the nearest triangle (eyeballs
excluded). ``moshiface flame embedding --flame FLAME.pkl --out FILE`` runs it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MoshifaceError
from ..flame.model import FlameModel
from ..flame.teeth import TeethAnchors
from . import reference as ref
from .geometry import MeshProjector, similarity


@dataclass
class LandmarkEmbedding:
    landmark_ids: np.ndarray   # (L,)
    triangles: np.ndarray      # (L,)
    barycentric: np.ndarray    # (L, 3)
    num_vertices: int
    source: str = ""

    def __post_init__(self) -> None:
        self.landmark_ids = np.asarray(self.landmark_ids, dtype=np.int64).reshape(-1)
        self.triangles = np.asarray(self.triangles, dtype=np.int64).reshape(-1)
        self.barycentric = np.asarray(self.barycentric, dtype=np.float64).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.landmark_ids)

    def check(self, model: FlameModel, what: str = "the landmark embedding") -> None:
        """One-line error unless this embedding belongs to ``model``'s topology."""
        base = model.num_vertices - model.teeth_vertices
        if base != self.num_vertices:
            raise MoshifaceError(f"{what} was built for a {self.num_vertices}-vertex mesh, the FLAME model has "
                                 f"{base}: build one for this model with `moshiface flame embedding`")
        if self.triangles.max(initial=-1) >= len(model.faces):
            raise MoshifaceError(f"{what} names triangles the FLAME model does not have")

    def vertex_ids(self, model: FlameModel) -> np.ndarray:
        return model.faces[self.triangles]

    def points(self, model: FlameModel, vertices: np.ndarray) -> np.ndarray:
        """(L, 3) landmark positions on a mesh with ``model``'s topology."""
        return np.einsum("lk,lkc->lc", self.barycentric, vertices[self.vertex_ids(model)])

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, landmark_ids=self.landmark_ids, triangles=self.triangles, barycentric=self.barycentric,
                 num_vertices=np.int64(self.num_vertices), source=np.str_(self.source))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path | str) -> LandmarkEmbedding:
        path = Path(path)
        if not path.is_file():
            raise MoshifaceError(f"the landmark embedding {path} does not exist: build it from your FLAME model "
                                 f"with `moshiface flame embedding --flame FLAME.pkl --out {path}`")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in ("landmark_ids", "triangles", "barycentric", "num_vertices")}
                source = str(data["source"]) if "source" in data else ""
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise MoshifaceError(f"{path} is not a landmark embedding (.npz with landmark_ids, triangles, "
                                 f"barycentric, num_vertices): {exc}") from None
        emb = cls(fields["landmark_ids"], fields["triangles"], fields["barycentric"], int(fields["num_vertices"]),
                  source)
        if not (len(emb.landmark_ids) == len(emb.triangles) == len(emb.barycentric)) or len(emb) == 0:
            raise MoshifaceError(f"{path}: landmark_ids, triangles and barycentric must have the same non-zero length")
        if not np.all(np.isfinite(emb.barycentric)) or np.abs(emb.barycentric.sum(1) - 1).max() > 1e-3:
            raise MoshifaceError(f"{path}: barycentric coordinates must be finite and sum to 1")
        return emb


def _eyeball_vertices(model: FlameModel) -> np.ndarray:
    return model.weights[:, 3:5].sum(1) > 0.5


def build_embedding(model: FlameModel, iterations: int = 30, landmarks: int = 468) -> LandmarkEmbedding:
    """Aligns the reference face to ``model``'s template and projects it onto the surface."""
    points, _ = ref.load_reference()
    points = points[:landmarks]
    base = model.num_vertices - model.teeth_vertices
    faces = model.faces[(model.faces < base).all(1)]
    keep = ~_eyeball_vertices(model)[:base][faces].any(1)
    surface = np.flatnonzero((model.faces < base).all(1))[keep]
    projector = MeshProjector(model.v_template[:base], model.faces[surface])
    template = model.v_template[:base]
    nose = template[np.argmax(np.where(_eyeball_vertices(model)[:base], -np.inf, template[:, 2]))]
    s, R, t = 1.0, np.eye(3), nose - points[ref.NOSE_TIP]
    for _ in range(iterations):
        moved = s * points @ R.T + t
        _, _, closest = projector.project(moved)
        distance = np.linalg.norm(closest - moved, axis=1)
        weights = 1.0 / (1.0 + (distance / (np.median(distance) + 1e-6)) ** 2)
        s, R, t = similarity(points, closest, weights)
        s = float(np.clip(s, 0.7, 1.4))
    triangles, bary, _ = projector.project(s * points @ R.T + t)
    return LandmarkEmbedding(np.arange(landmarks), surface[triangles], bary, base,
                             f"built from {model.source or 'a FLAME model'} (reference face, scale {s:.3f})")


def teeth_anchors(model: FlameModel, embedding: LandmarkEmbedding) -> TeethAnchors:
    """The inner lip midpoints and mouth corners on ``model``'s template, for ``flame.teeth.add_teeth``."""
    position = {int(i): p for i, p in zip(embedding.landmark_ids, embedding.points(model, model.v_template))}
    needed = (ref.UPPER_LIP_INNER, ref.LOWER_LIP_INNER, *ref.MOUTH_CORNERS_INNER)
    if any(i not in position for i in needed):
        raise MoshifaceError("the landmark embedding lacks the inner lip landmarks that place the teeth")
    return TeethAnchors(position[ref.UPPER_LIP_INNER], position[ref.LOWER_LIP_INNER],
                        position[ref.MOUTH_CORNERS_INNER[0]], position[ref.MOUTH_CORNERS_INNER[1]])

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
excluded). The reference's lips are parted, a model's lips at rest are not: MediaPipe's
inner-lip landmarks sit where the lips meet, so where the model has a mouth opening (a rim
of edges with one triangle), those landmarks are put on its rim instead, the upper ones on
the upper lip's edge and the lower ones on the lower lip's. Otherwise a closed mouth would
read as a mouth pressed shut and an open one as less open than it is.
``moshiface flame embedding --flame FLAME.pkl --out FILE`` runs it.
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


# MediaPipe's inner lip contour: upper lip, lower lip, mouth corners.
INNER_LIP_UPPER = (191, 80, 81, 82, 13, 312, 311, 310, 415)
INNER_LIP_LOWER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
INNER_LIP_CORNERS = (78, 308)
RIM_REACH = 0.008  # m: a rim farther than this from the aligned landmark is not the mouth's


def _rim_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges with a single triangle: (edges E x 2, their triangle, the triangle's third vertex)."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    triangle = np.tile(np.arange(len(faces)), 3)
    third = np.concatenate([faces[:, 2], faces[:, 0], faces[:, 1]])
    _, inverse, counts = np.unique(np.sort(edges, 1), axis=0, return_inverse=True, return_counts=True)
    single = counts[inverse.reshape(-1)] == 1
    return edges[single], triangle[single], third[single]


def _snap_inner_lips(template: np.ndarray, faces: np.ndarray, aligned: np.ndarray,
                     triangles: np.ndarray, bary: np.ndarray) -> None:
    """Moves the inner-lip landmarks (in place) onto the mouth opening's rim, when there is one."""
    edges, triangle, third = _rim_edges(faces)
    if not len(edges):
        return
    a, b = template[edges[:, 0]], template[edges[:, 1]]
    above = template[third, 1] > (a[:, 1] + b[:, 1]) / 2
    d = b - a
    for ids, side in ((INNER_LIP_UPPER, above), (INNER_LIP_LOWER, ~above),
                      (INNER_LIP_CORNERS, np.ones(len(edges), dtype=bool))):
        for landmark in ids:
            if landmark >= len(aligned):
                continue
            t = np.clip(((aligned[landmark] - a) * d).sum(1) / np.maximum((d * d).sum(1), 1e-30), 0, 1)
            distance = np.where(side, np.linalg.norm(a + t[:, None] * d - aligned[landmark], axis=1), np.inf)
            k = int(np.argmin(distance))
            if distance[k] > RIM_REACH:
                continue
            corners = faces[triangle[k]]
            triangles[landmark] = triangle[k]
            bary[landmark] = (1 - t[k]) * (corners == edges[k, 0]) + t[k] * (corners == edges[k, 1])


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
    aligned = s * points @ R.T + t
    triangles, bary, _ = projector.project(aligned)
    _snap_inner_lips(template, model.faces[surface], aligned, triangles, bary)
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

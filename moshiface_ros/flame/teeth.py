"""VHAP's teeth extension: FLAME's 5,023 vertices + 120 teeth vertices = 5,143.

FLAME has no teeth, so an open mouth shows the back of the head. VHAP (and the Moshi-Face
data) add an upper and a lower row of teeth: each row is 4 rings of 15 vertices along the
dental arch (gum line, front face, biting edge, inner face), joined by 3 strips of 14 quads,
so 120 vertices and 168 triangles in all. The upper row moves with the neck joint (the
skull), the lower row with the jaw; the teeth have no expression blendshapes and no pose
correctives, and follow identity changes rigidly with the lip point they hang from.

The arch is placed from four points on the template: the inner lip midpoints (upper,
lower) and the inner mouth corners; ``tracking.embedding.teeth_anchors`` reads them off a
landmark embedding, so any FLAME-topology model with an embedding can get teeth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import MoshifaceError
from .model import FlameModel

RING = 15
RINGS_PER_ROW = 4
TEETH_VERTICES = 2 * RINGS_PER_ROW * RING  # 120
TEETH_FACES = 2 * (RINGS_PER_ROW - 1) * (RING - 1) * 2  # 168
NECK, JAW = 1, 2

# Per ring: (vertical offset from the lip midpoint towards the gum in m, arch scale, set-back in m)
_UPPER_RINGS = ((0.0090, 1.00, 0.003), (0.0030, 1.00, 0.000), (-0.0010, 0.98, 0.001), (0.0060, 0.80, 0.006))


@dataclass
class TeethAnchors:
    """Points on the template (m): inner lip midpoints and inner mouth corners."""

    upper_lip: np.ndarray
    lower_lip: np.ndarray
    right_corner: np.ndarray
    left_corner: np.ndarray


def _row(anchors: TeethAnchors, lip: np.ndarray, direction: float) -> np.ndarray:
    """4 x 15 x 3 vertices of one row; ``direction`` +1 for the upper row, -1 for the lower."""
    mouth = (anchors.upper_lip + anchors.lower_lip) / 2
    half_width = 0.45 * np.linalg.norm(anchors.left_corner - anchors.right_corner)
    depth = 1.6 * half_width  # the dental arch reaches back about as far as it is wide
    alpha = np.linspace(-np.pi / 2, np.pi / 2, RING)
    rings = []
    for rise, scale, back in _UPPER_RINGS:
        x = mouth[0] + scale * half_width * np.sin(alpha)
        z = lip[2] - 0.002 - back - scale * depth * (1 - np.cos(alpha))
        y = np.full(RING, mouth[1] + direction * (rise + 0.5 * abs(anchors.upper_lip[1] - anchors.lower_lip[1])))
        rings.append(np.stack([x, y, z], axis=1))
    return np.stack(rings)


def _strip_faces(start: int, flip: bool) -> np.ndarray:
    faces = []
    for r in range(RINGS_PER_ROW - 1):
        for k in range(RING - 1):
            a, b = start + r * RING + k, start + r * RING + k + 1
            c, d = a + RING, b + RING
            faces += [(a, c, b), (b, c, d)] if not flip else [(a, b, c), (b, d, c)]
    return np.array(faces, dtype=np.int64)


def add_teeth(model: FlameModel, anchors: TeethAnchors) -> FlameModel:
    """A new model with the 120 teeth vertices and 168 faces appended."""
    if model.teeth_vertices:
        raise MoshifaceError("the model already has teeth")
    V = model.num_vertices
    upper = _row(anchors, anchors.upper_lip, +1.0).reshape(-1, 3)
    lower = _row(anchors, anchors.lower_lip, -1.0).reshape(-1, 3)
    teeth = np.concatenate([upper, lower])
    n = len(upper)
    # Identity: each row moves rigidly with the template vertex nearest its lip point.
    nearest = [int(np.argmin(np.linalg.norm(model.v_template - p, axis=1)))
               for p in (anchors.upper_lip, anchors.lower_lip)]
    shape_rows = np.concatenate([np.repeat(model.shapedirs[nearest[0]][None], n, 0),
                                 np.repeat(model.shapedirs[nearest[1]][None], n, 0)])
    weights = np.zeros((TEETH_VERTICES, model.weights.shape[1]))
    weights[:n, NECK] = 1.0
    weights[n:, JAW] = 1.0
    faces = np.concatenate([_strip_faces(V, flip=False), _strip_faces(V + n, flip=True)])
    return replace(
        model,
        v_template=np.concatenate([model.v_template, teeth]),
        faces=np.concatenate([model.faces, faces]),
        shapedirs=np.concatenate([model.shapedirs, shape_rows.astype(np.float32)]),
        exprdirs=np.concatenate([model.exprdirs, np.zeros((TEETH_VERTICES, 3, model.num_expression), np.float32)]),
        posedirs=np.concatenate([model.posedirs, np.zeros((TEETH_VERTICES, 3, model.posedirs.shape[2]), np.float32)]),
        J_regressor=np.concatenate([model.J_regressor, np.zeros((model.J_regressor.shape[0], TEETH_VERTICES))], 1),
        weights=np.concatenate([model.weights, weights]),
        teeth_vertices=TEETH_VERTICES,
    )

"""The synthetic head's mesh: one skin grid with three slits, two eyeballs, a mouth lining.

Topology (5,023 vertices like FLAME, 9,864 triangles against FLAME's 9,976):

- the skin: a top vertex and ``RINGS`` rings of ``COLUMNS`` vertices, ring 0 near the top
  and the last ring the open rim of the neck. Rings and columns are spaced densely on the
  face and pass exactly through the eye corners and the mouth corners;
- three slits cut along a ring between two corner columns: the mouth and the two eye
  openings. Inside a slit each grid vertex exists twice: the grid vertex belongs to the
  triangles above (upper lip, upper eyelid), a copy appended after the grid to the triangles
  below (lower lip, lower eyelid). The lips meet at rest and part when the jaw turns; the
  eye slits are held open in the template and close under the blink expressions;
- two eyeballs (UV spheres, their poles on the z axis: the front pole is the pupil), separate
  closed meshes so the eye joints can turn them;
- a dark lining behind the lips, seen through the open mouth.

Vertex order: top, grid (ring-major), mouth copies, left eye copies, right eye copies, left
eyeball, right eyeball, lining.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .synthetic_surface import surface, symmetric_reference, to_angles

COLUMNS = 72
# Column anchors per side: midline, inner eye corner, mouth corner, outer eye corner, the side,
# the back; and the number of column steps between consecutive anchors.
COLUMN_STEPS = (5, 3, 5, 12, 11)
# Ring anchors: top, hairline, eye line, mouth line, under the chin, neck rim; ring steps between.
RING_STEPS = (11, 16, 16, 12, 6)
RINGS = sum(RING_STEPS)
EYE_RINGS, EYE_COLUMNS, EYE_RADIUS = 15, 16, 0.0120
LID_GAP = 0.0012                     # m, eyelid skin in front of the eyeball
LINING_COLUMNS, LINING_ROWS = 13, 9
MOUTH_Y = -0.0337                    # m, where the lips meet (between the reference's outer lips)
NUM_VERTICES = 5023


@dataclass(frozen=True)
class Slit:
    """A cut along ring ``ring`` between columns ``start`` and ``stop`` (the shared corners)."""

    ring: int
    start: int
    stop: int
    upper: np.ndarray  # grid vertex ids of the inner columns (upper side)
    lower: np.ndarray  # their copies (lower side)


@dataclass(frozen=True)
class HeadMesh:
    vertices: np.ndarray              # V x 3 neutral template
    faces: np.ndarray                 # F x 3
    mouth: Slit
    eye_slits: dict[str, Slit]        # "left" (+x), "right"
    eyeballs: dict[str, np.ndarray]   # vertex ids
    eye_centers: dict[str, np.ndarray]
    lining: np.ndarray                # vertex ids
    n_skin: int                       # top + grid + copies: the skin's vertices come first

    def grid(self, ring: int, column: int) -> int:
        return 1 + ring * COLUMNS + column % COLUMNS


def _anchored(anchors: list[float], steps: tuple[int, ...]) -> np.ndarray:
    """Monotone smooth spacing through ``anchors`` with ``steps`` intervals between them."""
    from scipy.interpolate import PchipInterpolator

    knots = np.concatenate([[0], np.cumsum(steps)])
    return PchipInterpolator(knots, anchors)(np.arange(knots[-1] + 1))


def _layout() -> tuple[np.ndarray, np.ndarray]:
    """Column azimuths (COLUMNS,) and ring polar angles (RINGS,), through the face's anchors."""
    ref = symmetric_reference()
    az = to_angles(ref[[133, 61, 33]])[:, 0]  # inner eye corner, mouth corner, outer eye corner (right)
    a_in, a_mouth, a_out = np.abs(az)
    right = _anchored([0.0, a_in, a_mouth, a_out, 1.25, np.pi], COLUMN_STEPS)
    azimuth = np.concatenate([right[:-1], -right[:0:-1]])  # 0 .. pi, then -pi .. 0 (exclusive)
    eye_y = (ref[33, 1] + ref[133, 1]) / 2
    eye_line = to_angles(np.array([[ref[468, 0], eye_y, ref[[159, 145], 2].mean()]]))[0, 1]
    mouth_line = to_angles(np.array([[0.0, MOUTH_Y, ref[[13, 14], 2].mean()]]))[0, 1]
    polar = _anchored([0.0, np.radians(50), eye_line, mouth_line, np.radians(140), np.radians(162)], RING_STEPS)
    return azimuth, polar[1:]


def _slits(azimuth: np.ndarray) -> dict[str, tuple[int, int]]:
    """Corner columns of each slit, in increasing column order (cyclic)."""
    s = np.cumsum(COLUMN_STEPS)
    return {"mouth": (COLUMNS - s[1], s[1]), "left": (s[0], s[2]), "right": (COLUMNS - s[2], COLUMNS - s[0])}


def _inner_columns(start: int, stop: int) -> np.ndarray:
    return np.arange(start + 1, stop + (COLUMNS if stop < start else 0)) % COLUMNS


def _eye_opening(t: np.ndarray, up: bool) -> np.ndarray:
    """Metres the upper (``up``) or lower lid rim lies from the slit line at ``t`` in -1..1."""
    ref = symmetric_reference()
    line = (ref[33, 1] + ref[133, 1]) / 2
    height = 0.9 * ((ref[159, 1] - line) if up else (line - ref[145, 1]))
    return height * np.clip(1 - t * t, 0, None) ** 0.8


def _open_eyes(angles: np.ndarray, rings: np.ndarray, lower: np.ndarray, polar: np.ndarray,
               azimuth: np.ndarray, closed: tuple[str, ...] = ()) -> np.ndarray:
    """Opens the eye slits in the template: the lid rims move apart, the skin around follows.

    A vertex above the slit (or on it, upper side) moves up by the upper rim's height times a
    falloff reaching 3x that height, below likewise down; slopes stay under 1, so no fold.
    A ``closed`` eye's upper rim goes down to its lower rim instead (the blink's target)."""
    out = angles.copy()
    eye_ring = sum(RING_STEPS[:2]) - 1
    corners = _slits(azimuth)
    for name in ("left", "right"):
        a, b = azimuth[corners[name][0]], azimuth[corners[name][1]]
        t = 2 * (angles[:, 0] - a) / (b - a) - 1
        t = t if name == "left" else -t  # -1 at the inner corner
        above = (rings < eye_ring) | ((rings == eye_ring) & ~lower)
        up = -_eye_opening(t, False) if name in closed else _eye_opening(t, True)
        height = np.where(above, up, _eye_opening(t, False))
        reach = 3.0 * _eye_opening(np.zeros(1), True)[0]
        distance = np.abs(angles[:, 1] - polar[eye_ring]) * 0.09
        push = height * np.clip(1 - distance / reach, 0, 1) ** 2
        out[:, 1] += np.where(above, -1.0, 1.0) * push / 0.09
    return out


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k / 4


def _eye_centers(skin: np.ndarray) -> dict[str, np.ndarray]:
    """Eyeball centres: behind the iris landmarks, the front of the ball just ahead of the skin line."""
    ref = symmetric_reference()
    centers = {}
    for name, iris in (("left", 473), ("right", 468)):
        x, y = ref[iris, 0], (ref[33, 1] + ref[133, 1]) / 2 + 0.001
        near = np.argsort(np.hypot(skin[:, 0] - x, skin[:, 1] - y) + 1e3 * (skin[:, 2] < -0.05))[:6]
        centers[name] = np.array([x, y, skin[near, 2].mean() - EYE_RADIUS + 0.0015])
    return centers


def _shape_skin(skin: np.ndarray, centers: dict[str, np.ndarray]) -> np.ndarray:
    """Lids wrapped over the eyeballs; the lips rolled in a little where they meet."""
    out = skin.copy()
    lid = EYE_RADIUS + LID_GAP
    for c in centers.values():
        d2 = (out[:, 0] - c[0]) ** 2 + (out[:, 1] - c[1]) ** 2
        sphere = c[2] + np.sqrt(np.maximum(lid * lid - d2, 0.0))
        zone = (d2 < (1.6 * lid) ** 2) & (out[:, 2] > c[2])
        out[zone, 2] = _smax(out[zone, 2], np.where(d2[zone] < lid * lid, sphere[zone], -1.0), 0.002)
    ref = symmetric_reference()
    half = abs(ref[61, 0])
    roll = np.exp(-((out[:, 1] - MOUTH_Y) / 0.003) ** 2) * np.clip(1 - (np.abs(out[:, 0]) / half) ** 4, 0, 1)
    out[:, 2] -= 0.0015 * roll * (out[:, 2] > -0.02)
    return out


def _eyeball(center: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere with its poles on the z axis (the front pole is the pupil); rings are
    densest at the front, where the pupil and the iris are drawn."""
    polar = np.pi * (np.arange(1, EYE_RINGS + 1) / (EYE_RINGS + 1)) ** 1.5
    az = (np.arange(EYE_COLUMNS) + 0.5) * 2 * np.pi / EYE_COLUMNS  # no vertex on the vertical axis
    p, a = np.meshgrid(polar, az, indexing="ij")
    ring = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], axis=-1).reshape(-1, 3)
    vertices = center + EYE_RADIUS * np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]])
    front, back = start, start + 1 + EYE_RINGS * EYE_COLUMNS
    last = start + 1 + (EYE_RINGS - 1) * EYE_COLUMNS
    faces = []
    for k in range(EYE_COLUMNS):
        k1 = (k + 1) % EYE_COLUMNS
        faces += [(front, start + 1 + k, start + 1 + k1), (back, last + k1, last + k)]
    for r in range(EYE_RINGS - 1):
        for k in range(EYE_COLUMNS):
            a = start + 1 + r * EYE_COLUMNS + k
            b = start + 1 + r * EYE_COLUMNS + (k + 1) % EYE_COLUMNS
            faces += [(a, a + EYE_COLUMNS, b), (b, a + EYE_COLUMNS, b + EYE_COLUMNS)]
    return vertices, np.array(faces, dtype=np.int64)


def _lining(start: int) -> tuple[np.ndarray, np.ndarray]:
    """A curved sheet facing forward behind the lips: what an open mouth shows."""
    ref = symmetric_reference()
    half = abs(ref[61, 0]) + 0.002
    front = ref[[13, 14], 2].mean()
    x = np.linspace(-half, half, LINING_COLUMNS)
    y = np.linspace(MOUTH_Y + 0.012, MOUTH_Y - 0.022, LINING_ROWS)
    X, Y = np.meshgrid(x, y)
    Z = front - 0.014 - 0.012 * (X / half) ** 2
    vertices = np.stack([X, Y, Z], axis=-1).reshape(-1, 3)
    faces = []
    for r in range(LINING_ROWS - 1):
        for c in range(LINING_COLUMNS - 1):
            a = start + r * LINING_COLUMNS + c
            faces += [(a, a + LINING_COLUMNS, a + 1), (a + 1, a + LINING_COLUMNS, a + LINING_COLUMNS + 1)]
    return vertices, np.array(faces, dtype=np.int64)


def _skin_faces(slits: dict[str, Slit]) -> np.ndarray:
    """The top fan and the grid quads; quads just below a slit use its lower copies."""
    def grid(r: int, c: int) -> int:
        return 1 + r * COLUMNS + c % COLUMNS

    below = {}
    for slit in slits.values():
        for up, low in zip(slit.upper, slit.lower):
            below[int(up)] = int(low)
    faces = [(0, grid(0, k), grid(0, k + 1)) for k in range(COLUMNS)]
    for r in range(RINGS - 1):
        for k in range(COLUMNS):
            a, b, c, d = grid(r, k), grid(r, k + 1), grid(r + 1, k), grid(r + 1, k + 1)
            a, b = below.get(a, a), below.get(b, b)
            faces += [(a, c, b), (b, c, d)]
    return np.array(faces, dtype=np.int64)


def _skin(azimuth: np.ndarray, polar: np.ndarray, closed: tuple[str, ...] = ()) -> tuple[np.ndarray, dict[str, Slit]]:
    """Skin vertices (top, grid, slit copies) and the three slits."""
    corners = _slits(azimuth)
    rings = {"mouth": sum(RING_STEPS[:3]) - 1, "left": sum(RING_STEPS[:2]) - 1, "right": sum(RING_STEPS[:2]) - 1}
    slits, start = {}, 1 + RINGS * COLUMNS
    for name in ("mouth", "left", "right"):
        inner = _inner_columns(*corners[name])
        upper = 1 + rings[name] * COLUMNS + inner
        slits[name] = Slit(rings[name], corners[name][0], corners[name][1], upper,
                           np.arange(start, start + len(inner)))
        start += len(inner)
    R, C = np.meshgrid(np.arange(RINGS), np.arange(COLUMNS), indexing="ij")
    ring_of = np.concatenate([[-1], R.reshape(-1)] + [np.full(len(s.upper), s.ring) for s in slits.values()])
    column_of = np.concatenate([[0], C.reshape(-1)] + [(s.upper - 1) % COLUMNS for s in slits.values()])
    lower = np.zeros(len(ring_of), dtype=bool)
    lower[1 + RINGS * COLUMNS:] = True
    angles = np.stack([azimuth[column_of], np.where(ring_of < 0, 0.0, polar[np.maximum(ring_of, 0)])], axis=1)
    angles = _open_eyes(angles, ring_of, lower, polar, azimuth, closed)
    skin = surface(angles[1:])
    top = surface(np.array([[0.0, 0.0]]))
    return np.concatenate([top, skin]), slits


@lru_cache(maxsize=1)
def head_mesh() -> HeadMesh:
    """The neutral head (cached: every model built from it shares these arrays read-only)."""
    azimuth, polar = _layout()
    skin, slits = _skin(azimuth, polar)
    centers = _eye_centers(skin)
    skin = _shape_skin(skin, centers)
    parts, faces, eyeballs = [skin], [_skin_faces(slits)], {}
    start = len(skin)
    for name in ("left", "right"):
        v, f = _eyeball(centers[name], start)
        eyeballs[name] = np.arange(start, start + len(v))
        parts.append(v)
        faces.append(f)
        start += len(v)
    v, f = _lining(start)
    parts.append(v)
    faces.append(f)
    vertices = np.concatenate(parts)
    assert len(vertices) == NUM_VERTICES, len(vertices)
    vertices.flags.writeable = False
    return HeadMesh(vertices, np.concatenate(faces), slits["mouth"], {"left": slits["left"], "right": slits["right"]},
                    eyeballs, centers, np.arange(start, start + len(v)), len(skin))


def closed_eye_skin(eye: str) -> np.ndarray:
    """The skin (n_skin x 3) with the ``eye`` ("left" or "right") shut: the blink's target."""
    azimuth, polar = _layout()
    skin, _ = _skin(azimuth, polar, (eye,))
    return _shape_skin(skin, head_mesh().eye_centers)

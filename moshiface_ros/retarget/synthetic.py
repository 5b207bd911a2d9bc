"""A stand-in face on FLAME's vertex counts, with its own regions and an ARKit-like rig.

FLAME's template, masks and any rig built on them are under FLAME's licence and cannot
ship, yet retargeting needs a face to be tested and demonstrated on. This module builds
one from a formula: a 64 x 78 grid over the front of an ellipsoidal head (4,992
vertices) with a nose, plus 31 tongue vertices inside the mouth (5,023 in all, FLAME's
count) and, for VHAP's topology, 120 teeth vertices in 8 rings of 15 (5,143). Its
regions carry FLAME_masks.pkl's names (``lips``, ``left_eye_region``, ...), and its rig
has one displacement field per ARKit-52 blendshape: a smooth, local bump where that
muscle acts, moving the way the shape's name says, each with a small seeded variation
so that no two shapes are linearly dependent.

Axes are FLAME's: x to the face's left, y up, z out of the face, metres. The face is
not anyone's and is not FLAME: it only has the same vertex counts, region names and
the right magnitudes (a jaw that opens 15 mm, lids that close 8 mm), so the solver,
the features and the actuators can be tested end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..regions import Regions
from .arkit import ARKIT_52
from .rig import Rig

ROWS, COLS = 64, 78
GRID_VERTICES = ROWS * COLS  # 4992
TONGUE_VERTICES = 31
TEETH_VERTICES = 120  # 8 rings of 15, as VHAP adds to FLAME 2023
FLAME_VERTICES = GRID_VERTICES + TONGUE_VERTICES  # 5023
FLAME_TEETH_VERTICES = FLAME_VERTICES + TEETH_VERTICES  # 5143

HALF_WIDTH, HALF_HEIGHT, DEPTH = 0.08, 0.115, 0.095
MOUTH = np.array([0.0, -0.05])
MOUTH_HALF_WIDTH = 0.026
EYE_X, EYE_Y = 0.033, 0.03
BROW_Y = 0.052


@dataclass
class SyntheticFace:
    """A neutral mesh, its triangles, its regions and an ARKit-named rig on it."""

    neutral: np.ndarray  # V x 3
    faces: np.ndarray  # F x 3
    regions: Regions
    rig: Rig


def _surface(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = HALF_WIDTH * u, HALF_HEIGHT * v
    z = DEPTH * np.sqrt(np.maximum(1.0 - 0.85 * u**2 - 0.35 * v**2, 0.02))
    z += 0.02 * np.exp(-(x / 0.012) ** 2 - ((y - 0.005) / 0.025) ** 2)  # nose
    z -= 0.004 * np.exp(-((np.abs(x) - EYE_X) / 0.012) ** 2 - ((y - EYE_Y) / 0.008) ** 2)  # eye sockets
    return np.stack([x, y, z], axis=-1)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.linspace(-1.0, 1.0, COLS), np.linspace(-1.0, 1.0, ROWS))
    vertices = _surface(u.ravel(), v.ravel())
    r, c = np.meshgrid(np.arange(ROWS - 1), np.arange(COLS - 1), indexing="ij")
    a = (r * COLS + c).ravel()
    b, d, e = a + 1, a + COLS, a + COLS + 1
    # Counter-clockwise seen from +z, so normals point out of the face.
    faces = np.concatenate([np.stack([a, b, e], 1), np.stack([a, e, d], 1)])
    return vertices, faces.astype(np.int64)


def _inner_mouth(count: int, depth: float, half_width: float, y: float, rng_phase: float) -> np.ndarray:
    t = np.linspace(-1.0, 1.0, count)
    return np.stack([half_width * t, np.full(count, y) + 0.001 * np.sin(7 * t + rng_phase),
                     np.full(count, depth) - 0.004 * t**2], axis=1)


def _teeth() -> np.ndarray:
    """8 rings of 15: 4 upper (y above the mouth line), 4 lower."""
    rings = []
    for ring in range(8):
        upper = ring < 4
        y = MOUTH[1] + (0.004 + 0.002 * (ring % 4)) * (1 if upper else -1)
        angle = np.linspace(-1.1, 1.1, 15)
        x = 0.022 * np.sin(angle)
        z = DEPTH * 0.93 - 0.012 * (1 - np.cos(angle)) - 0.001 * (ring % 4)
        rings.append(np.stack([x, np.full(15, y), z], axis=1))
    return np.concatenate(rings)


def synthetic_topology(vertices: int = FLAME_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """The neutral mesh (V x 3) and triangles of the stand-in face, V = 5023 or 5143."""
    if vertices not in (FLAME_VERTICES, FLAME_TEETH_VERTICES):
        raise ValueError(f"the synthetic face has {FLAME_VERTICES} or {FLAME_TEETH_VERTICES} vertices, not {vertices}")
    grid, faces = _grid()
    tongue = _inner_mouth(TONGUE_VERTICES, DEPTH * 0.85, 0.015, MOUTH[1] - 0.004, 0.3)
    parts = [grid, tongue] + ([_teeth()] if vertices == FLAME_TEETH_VERTICES else [])
    return np.concatenate(parts).astype(np.float32), faces


def _ellipse(points: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((points[:, 0] - cx) / rx) ** 2 + ((points[:, 1] - cy) / ry) ** 2 < 1.0


def synthetic_regions(neutral: np.ndarray) -> Regions:
    """FLAME_masks.pkl-named regions of the stand-in face (grid vertices only)."""
    grid = neutral[:GRID_VERTICES]
    x, y = grid[:, 0], grid[:, 1]
    left = _ellipse(grid, EYE_X, EYE_Y, 0.022, 0.015)
    right = _ellipse(grid, -EYE_X, EYE_Y, 0.022, 0.015)
    sets = {
        "lips": _ellipse(grid, MOUTH[0], MOUTH[1], 0.031, 0.012),
        "left_eye_region": left,
        "right_eye_region": right,
        "eye_region": left | right | _ellipse(grid, 0.0, EYE_Y, 0.012, 0.01),
        "forehead": (y > 0.044) & (np.abs(x) < 0.062) & ~(left | right),
        "nose": _ellipse(grid, 0.0, 0.002, 0.015, 0.03),
        "face": (np.abs(x) < 0.068) & (y > -0.105) & (y < 0.1),
        "boundary": (np.abs(x) > 0.075) | (np.abs(y) > 0.11),
    }
    return Regions(len(neutral), {name: np.flatnonzero(mask) for name, mask in sets.items()},
                   "synthetic stand-in face (moshiface_ros.retarget.synthetic)")


def _bump(points: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((points[:, 0] - cx) / sx) ** 2 + ((points[:, 1] - cy) / sy) ** 2))


def _below_mouth(points: np.ndarray) -> np.ndarray:
    """The jaw's share of each vertex: 0 above the mouth line, 1 from 8 mm below it,
    fading out towards the sides of the face."""
    drop = np.clip((MOUTH[1] - points[:, 1]) / 0.008, 0.0, 1.0)
    return drop * np.exp(-0.5 * (points[:, 0] / 0.045) ** 2)


# name -> (centre x (mirrored for Right), centre y, sigma x, sigma y, displacement (dx, dy, dz)
# in metres at the centre, dx mirrored for Right). Left is +x.
_BUMPS: dict[str, tuple[float, float, float, float, tuple[float, float, float]]] = {
    "eyeBlink": (EYE_X, EYE_Y + 0.006, 0.011, 0.004, (0.0, -0.008, 0.0)),
    "eyeLookDown": (EYE_X, EYE_Y - 0.001, 0.006, 0.005, (0.0, -0.002, -0.0005)),
    "eyeLookIn": (EYE_X - 0.002, EYE_Y, 0.006, 0.005, (-0.002, 0.0, 0.0003)),
    "eyeLookOut": (EYE_X + 0.002, EYE_Y, 0.006, 0.005, (0.002, 0.0, -0.0003)),
    "eyeLookUp": (EYE_X, EYE_Y + 0.001, 0.006, 0.005, (0.0, 0.002, 0.0005)),
    "eyeSquint": (EYE_X, EYE_Y - 0.007, 0.011, 0.004, (0.0, 0.003, 0.0005)),
    "eyeWide": (EYE_X, EYE_Y + 0.009, 0.011, 0.004, (0.0, 0.003, 0.0)),
    "mouthSmile": (MOUTH_HALF_WIDTH, MOUTH[1], 0.009, 0.008, (0.003, 0.004, -0.001)),
    "mouthFrown": (MOUTH_HALF_WIDTH, MOUTH[1] - 0.002, 0.009, 0.008, (0.0, -0.003, 0.0)),
    "mouthDimple": (MOUTH_HALF_WIDTH + 0.004, MOUTH[1], 0.007, 0.007, (0.003, 0.0, -0.002)),
    "mouthStretch": (MOUTH_HALF_WIDTH, MOUTH[1] - 0.003, 0.01, 0.01, (0.005, -0.001, 0.0)),
    "mouthPress": (0.012, MOUTH[1], 0.01, 0.004, (0.0, 0.0, -0.0015)),
    "mouthLowerDown": (0.01, MOUTH[1] - 0.006, 0.009, 0.004, (0.0, -0.004, 0.0)),
    "mouthUpperUp": (0.01, MOUTH[1] + 0.006, 0.009, 0.004, (0.0, 0.004, 0.0005)),
    "browDown": (EYE_X - 0.004, BROW_Y, 0.012, 0.006, (-0.002, -0.004, 0.0)),
    "browOuterUp": (EYE_X + 0.012, BROW_Y + 0.002, 0.01, 0.007, (0.0, 0.006, 0.0)),
    "cheekSquint": (0.04, 0.008, 0.01, 0.008, (0.0, 0.003, 0.001)),
    "noseSneer": (0.01, 0.012, 0.006, 0.008, (0.0, 0.003, 0.001)),
    # centred shapes
    "mouthClose": (0.0, MOUTH[1], 0.02, 0.005, (0.0, 0.0, 0.0)),  # filled in _special
    "mouthFunnel": (0.0, MOUTH[1], 0.02, 0.009, (0.0, 0.0, 0.004)),
    "mouthPucker": (0.0, MOUTH[1], 0.022, 0.01, (0.0, 0.0, 0.005)),
    "mouthLeft": (0.0, MOUTH[1], 0.025, 0.01, (0.005, 0.0, 0.0)),
    "mouthRight": (0.0, MOUTH[1], 0.025, 0.01, (-0.005, 0.0, 0.0)),
    "mouthRollLower": (0.0, MOUTH[1] - 0.005, 0.02, 0.004, (0.0, 0.001, -0.003)),
    "mouthRollUpper": (0.0, MOUTH[1] + 0.005, 0.02, 0.004, (0.0, -0.001, -0.003)),
    "mouthShrugLower": (0.0, MOUTH[1] - 0.012, 0.02, 0.01, (0.0, 0.003, 0.001)),
    "mouthShrugUpper": (0.0, MOUTH[1] + 0.006, 0.02, 0.004, (0.0, 0.002, 0.001)),
    "browInnerUp": (0.0, BROW_Y, 0.016, 0.008, (0.0, 0.006, 0.0)),
    "cheekPuff": (0.045, -0.03, 0.015, 0.015, (0.002, 0.0, 0.006)),
    "tongueOut": (0.0, MOUTH[1] - 0.005, 0.012, 0.004, (0.0, 0.0, 0.004)),
}


def _shape(name: str, points: np.ndarray, neutral_count: int) -> np.ndarray:
    side = 1.0
    base = name
    for suffix, sign in (("Left", 1.0), ("Right", -1.0)):
        if name.endswith(suffix) and name[: -len(suffix)] in _BUMPS:
            base, side = name[: -len(suffix)], sign
    if base.startswith("jaw"):
        return _jaw(base, points)
    cx, cy, sx, sy, (dx, dy, dz) = _BUMPS[base]
    weight = _bump(points, side * cx, cy, sx, sy)
    if base in ("cheekPuff",):  # both cheeks in one shape
        weight = weight + _bump(points, -cx, cy, sx, sy)
        return weight[:, None] * np.stack([np.sign(points[:, 0]) * dx, np.zeros(len(points)),
                                           np.full(len(points), dz)], 1)
    delta = weight[:, None] * np.array([side * dx, dy, dz])
    if base == "mouthClose":  # lips meet: upper lip down, lower lip up
        delta[:, 1] = -0.002 * weight * np.tanh((points[:, 1] - MOUTH[1]) / 0.003)
    if base == "mouthPucker":  # corners move to the centre
        delta[:, 0] = -0.25 * weight * (points[:, 0] - MOUTH[0])
    return delta


def _jaw(base: str, points: np.ndarray) -> np.ndarray:
    share = _below_mouth(points)
    direction = {"jawOpen": (0.0, -0.015, -0.003), "jawForward": (0.0, 0.0, 0.004),
                 "jawLeft": (0.006, 0.0, 0.0), "jawRight": (-0.006, 0.0, 0.0)}[base]
    return share[:, None] * np.array(direction)


def _variation(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative ripple (within +-25 %) that makes every shape unique."""
    k = rng.normal(0.0, 60.0, size=(3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    return 1.0 + 0.25 * np.sin(points[:, :2] @ k.T + phase)


def synthetic_rig(neutral: np.ndarray, seed: int = 0) -> Rig:
    """ARKit-52 displacement fields on the stand-in face (teeth and tongue follow the jaw,
    the tongue also ``tongueOut``)."""
    rng = np.random.default_rng(seed)
    count = len(neutral)
    surface = neutral[:GRID_VERTICES].astype(np.float64)
    deltas = np.zeros((len(ARKIT_52), count, 3), np.float64)
    tongue = slice(GRID_VERTICES, FLAME_VERTICES)
    lower_teeth = slice(FLAME_VERTICES + 60, FLAME_VERTICES + 120) if count == FLAME_TEETH_VERTICES else None
    for k, name in enumerate(ARKIT_52):
        delta = _shape(name, surface, count)
        deltas[k, :GRID_VERTICES] = delta * _variation(surface, rng)
        if name.startswith("jaw"):
            moved = _jaw(name, np.array([[0.0, MOUTH[1] - 0.02, 0.0]]))[0]
            deltas[k, tongue] = moved
            if lower_teeth is not None:
                deltas[k, lower_teeth] = moved
        if name == "tongueOut":
            deltas[k, tongue] = (0.0, 0.0, 0.02)
    return Rig(list(ARKIT_52), deltas.astype(np.float32), neutral=neutral.astype(np.float32))


def synthetic_face(vertices: int = FLAME_VERTICES, seed: int = 0) -> SyntheticFace:
    """The stand-in face with ``vertices`` = 5023 (FLAME) or 5143 (FLAME + teeth)."""
    neutral, faces = synthetic_topology(vertices)
    rig = synthetic_rig(neutral, seed)
    rig.faces = faces
    return SyntheticFace(neutral, faces, synthetic_regions(neutral), rig)

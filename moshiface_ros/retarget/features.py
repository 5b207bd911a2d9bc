"""Interpretable features measured on the face mesh, and their calibrated ARKit weights.

For a head without a FLAME-space rig (most physical heads), the face is reduced to a
few numbers a robot builder can reason about: how far the jaw opened, how much each lip
corner rose, how wide the mouth is, ... Each is a mean displacement of a small vertex
set, so all the linear ones together are one small matrix product per frame. The sets
come from the topology's named regions (FLAME_masks.pkl names, see ``regions.py``) and
are picked geometrically on the neutral mesh (lip corners = the extreme-x lip vertices,
chin = face vertices just below the lips, ...), or given explicitly in the head file.

Head motion is removed first: a rigid fit (Kabsch) of the rigid vertices (forehead and
nose) gives the head's rotation, and the mesh is un-rotated before the expression
features are measured, so turning the head does not read as a smile.

Units: metres (displacement from neutral) for the expression features, radians for the
head and eye angles (FLAME axes: x to the face's left, y up, z out of the face; yaw is a
right-handed rotation about y, pitch about x (positive looks down), roll about z; the
head rotation is ``R = Ry(yaw) Rx(pitch) Rz(roll)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MoshifaceError
from ..regions import Regions

# Linear features, in order: name -> (sets with coefficients, axis) is built in _linear_rows.
LINEAR_FEATURES: tuple[str, ...] = (
    "jaw_open", "lip_corner_raise_left", "lip_corner_raise_right", "mouth_width", "lip_pucker",
    "upper_lip_raise", "lower_lip_raise", "brow_raise_left", "brow_raise_right", "brow_inner_raise",
    "eyelid_closure_left", "eyelid_closure_right",
)
ANGLE_FEATURES: tuple[str, ...] = (
    "head_yaw", "head_pitch", "head_roll",
    "eye_yaw_left", "eye_pitch_left", "eye_yaw_right", "eye_pitch_right",
)
FEATURE_NAMES: tuple[str, ...] = LINEAR_FEATURES + ANGLE_FEATURES

# The vertex sets the features are measured on; each can be given in the head file.
VERTEX_SETS: tuple[str, ...] = (
    "lip_corner_left", "lip_corner_right", "upper_lip", "lower_lip", "lip_centre", "chin",
    "brow_left", "brow_right", "brow_inner", "upper_lid_left", "lower_lid_left",
    "upper_lid_right", "lower_lid_right", "rigid",
)

# Feature -> ARKit weight: (feature, blendshape, value at weight 0, value at weight 1);
# the weight is linear in between and clamped to [0, 1]. Metres and radians, measured on
# the synthetic face's ARKit shapes at weight 1 (see synthetic.py), which has FLAME-like
# magnitudes; calibrate a real head with `features: ranges:` in its head file.
DEFAULT_RANGES: tuple[tuple[str, str, float, float], ...] = (
    ("jaw_open", "jawOpen", 0.0, 0.012),
    ("lip_corner_raise_left", "mouthSmileLeft", 0.0, 0.003),
    ("lip_corner_raise_left", "mouthFrownLeft", 0.0, -0.002),
    ("lip_corner_raise_right", "mouthSmileRight", 0.0, 0.003),
    ("lip_corner_raise_right", "mouthFrownRight", 0.0, -0.002),
    ("mouth_width", "mouthStretchLeft", 0.0, 0.0035),
    ("mouth_width", "mouthStretchRight", 0.0, 0.0035),
    ("lip_pucker", "mouthPucker", 0.0, 0.002),
    ("upper_lip_raise", "mouthUpperUpLeft", 0.0, 0.0015),
    ("upper_lip_raise", "mouthUpperUpRight", 0.0, 0.0015),
    ("lower_lip_raise", "mouthLowerDownLeft", 0.0, -0.002),
    ("lower_lip_raise", "mouthLowerDownRight", 0.0, -0.002),
    ("brow_raise_left", "browOuterUpLeft", 0.0, 0.002),
    ("brow_raise_left", "browDownLeft", 0.0, -0.001),
    ("brow_raise_right", "browOuterUpRight", 0.0, 0.002),
    ("brow_raise_right", "browDownRight", 0.0, -0.001),
    ("brow_inner_raise", "browInnerUp", 0.0, 0.003),
    ("eyelid_closure_left", "eyeBlinkLeft", 0.0, 0.0045),
    ("eyelid_closure_left", "eyeWideLeft", 0.0, -0.0013),
    ("eyelid_closure_right", "eyeBlinkRight", 0.0, 0.0045),
    ("eyelid_closure_right", "eyeWideRight", 0.0, -0.0013),
    ("eye_yaw_left", "eyeLookOutLeft", 0.0, 0.5),
    ("eye_yaw_left", "eyeLookInLeft", 0.0, -0.5),
    ("eye_yaw_right", "eyeLookInRight", 0.0, 0.5),
    ("eye_yaw_right", "eyeLookOutRight", 0.0, -0.5),
    ("eye_pitch_left", "eyeLookDownLeft", 0.0, 0.4),
    ("eye_pitch_left", "eyeLookUpLeft", 0.0, -0.4),
    ("eye_pitch_right", "eyeLookDownRight", 0.0, 0.4),
    ("eye_pitch_right", "eyeLookUpRight", 0.0, -0.4),
)

# A feature's full scale, for driving actuators directly by features (value / scale,
# clamped to [-1, 1]).
DEFAULT_SCALES: dict[str, float] = {
    "jaw_open": 0.012, "lip_corner_raise_left": 0.003, "lip_corner_raise_right": 0.003,
    "mouth_width": 0.0035, "lip_pucker": 0.002, "upper_lip_raise": 0.0015, "lower_lip_raise": 0.002,
    "brow_raise_left": 0.002, "brow_raise_right": 0.002, "brow_inner_raise": 0.003,
    "eyelid_closure_left": 0.0045, "eyelid_closure_right": 0.0045,
    "head_yaw": 0.6, "head_pitch": 0.4, "head_roll": 0.4,
    "eye_yaw_left": 0.5, "eye_pitch_left": 0.4, "eye_yaw_right": 0.5, "eye_pitch_right": 0.4,
}


@dataclass
class FeatureConfig:
    """What the head file's ``features:`` section may set."""

    vertices: dict[str, list[int]] = field(default_factory=dict)  # VERTEX_SETS overrides
    ranges: list[tuple[str, str, float, float]] = field(default_factory=lambda: list(DEFAULT_RANGES))
    scales: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SCALES))


# -- rotations -------------------------------------------------------------------------


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrix of an axis-angle vector (radians)."""
    v = np.asarray(axis_angle, np.float64).reshape(3)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def euler_from_matrix(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) with ``r = Ry(yaw) Rx(pitch) Rz(roll)``."""
    pitch = float(np.arcsin(np.clip(-r[1, 2], -1.0, 1.0)))
    return float(np.arctan2(r[0, 2], r[2, 2])), pitch, float(np.arctan2(r[1, 0], r[1, 1]))


def matrix_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising |R source + t - target| over rotations (no reflection)."""
    cs, ct = source.mean(0), target.mean(0)
    h = (source - cs).T @ (target - ct)
    u, _, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return r, ct - r @ cs


# -- vertex sets -----------------------------------------------------------------------


def _extreme(indices: np.ndarray, values: np.ndarray, count: int, largest: bool) -> np.ndarray:
    order = np.argsort(values[indices])
    return np.sort(indices[order[-count:]] if largest else indices[order[:count]])


def default_vertex_sets(neutral: np.ndarray, regions: Regions, path: str = "the regions file") -> dict[str, np.ndarray]:
    """The feature vertex sets picked geometrically within FLAME_masks-named regions."""
    x, y = neutral[:, 0], neutral[:, 1]
    lips = regions.get("lips", path)
    cx, cy = float(x[lips].mean()), float(y[lips].mean())
    half = float(x[lips].max() - x[lips].min()) / 2 or 1e-3
    k = max(3, len(lips) // 20)
    centre = lips[np.abs(x[lips] - cx) < 0.3 * half]
    sets = {
        "lip_corner_left": _extreme(lips, x, k, largest=True),
        "lip_corner_right": _extreme(lips, x, k, largest=False),
        "upper_lip": centre[y[centre] > cy],
        "lower_lip": centre[y[centre] < cy],
        "lip_centre": centre,
    }
    face = regions.sets.get("face")
    candidates = face if face is not None and face.size else np.arange(len(neutral))
    bottom = float(y[lips].min())
    sets["chin"] = candidates[(np.abs(x[candidates] - cx) < half) & (y[candidates] < bottom - 0.1 * half)
                              & (y[candidates] > bottom - 1.5 * half)]
    forehead = regions.get("forehead", path)
    low = forehead[y[forehead] <= np.quantile(y[forehead], 0.35)]
    fx = x[forehead]
    width = float(fx.max() - fx.min()) / 2 or 1e-3
    sets["brow_left"] = low[x[low] > cx + 0.25 * width]
    sets["brow_right"] = low[x[low] < cx - 0.25 * width]
    sets["brow_inner"] = low[np.abs(x[low] - cx) <= 0.25 * width]
    for side in ("left", "right"):
        eye = regions.get(f"{side}_eye_region", path)
        ex, ey = float(x[eye].mean()), float(y[eye].mean())
        ew = float(x[eye].max() - x[eye].min()) / 2 or 1e-3
        near = eye[np.abs(x[eye] - ex) < 0.5 * ew]
        sets[f"upper_lid_{side}"] = near[y[near] > ey]
        sets[f"lower_lid_{side}"] = near[y[near] < ey]
    # Rigid: the top of the forehead (above the brows) and the bridge of the nose.
    rigid = forehead[y[forehead] >= np.quantile(y[forehead], 0.5)]
    nose = regions.sets.get("nose")
    if rigid.size < 10 and nose is not None and nose.size:
        rigid = np.union1d(rigid, nose[y[nose] >= np.quantile(y[nose], 0.6)])
    sets["rigid"] = rigid
    for name, indices in sets.items():
        if indices.size == 0:
            raise MoshifaceError(f"cannot pick the {name!r} vertices from {path}'s regions; "
                                 f"give them in the head file under features.vertices.{name}")
    return sets


def _mean_row(vertices: int, indices: np.ndarray, axis: int, sign: float = 1.0) -> np.ndarray:
    row = np.zeros((vertices, 3))
    row[indices, axis] = sign / len(indices)
    return row.reshape(-1)


def _linear_rows(vertices: int, s: dict[str, np.ndarray]) -> np.ndarray:
    X, Y, Z = 0, 1, 2
    m = lambda name, axis, sign=1.0: _mean_row(vertices, s[name], axis, sign)
    rows = {
        "jaw_open": m("chin", Y, -1.0),
        "lip_corner_raise_left": m("lip_corner_left", Y),
        "lip_corner_raise_right": m("lip_corner_right", Y),
        "mouth_width": m("lip_corner_left", X) - m("lip_corner_right", X),
        "lip_pucker": m("lip_centre", Z) - 0.5 * (m("lip_corner_left", Z) + m("lip_corner_right", Z)),
        "upper_lip_raise": m("upper_lip", Y),
        "lower_lip_raise": m("lower_lip", Y) - m("chin", Y),
        "brow_raise_left": m("brow_left", Y),
        "brow_raise_right": m("brow_right", Y),
        "brow_inner_raise": m("brow_inner", Y),
        "eyelid_closure_left": m("lower_lid_left", Y) - m("upper_lid_left", Y),
        "eyelid_closure_right": m("lower_lid_right", Y) - m("upper_lid_right", Y),
    }
    return np.stack([rows[name] for name in LINEAR_FEATURES])


class FeatureExtractor:
    """Features of one frame: ``measure(displacement, global_pose, eye_pose)``."""

    def __init__(self, neutral: np.ndarray, sets: dict[str, np.ndarray]) -> None:
        self.neutral = np.asarray(neutral, np.float64)
        self.sets = sets
        self._rows = _linear_rows(len(self.neutral), sets).astype(np.float32)
        self._rigid = sets["rigid"]
        self._rigid_neutral = self.neutral[self._rigid]

    @classmethod
    def from_regions(cls, neutral: np.ndarray, regions: Regions, overrides: dict[str, list[int]] | None = None,
                     path: str = "the regions file") -> FeatureExtractor:
        regions.check_vertices(len(neutral), path)
        need_defaults = not set(VERTEX_SETS) <= set(overrides or {})
        sets = default_vertex_sets(neutral, regions, path) if need_defaults else {}
        for name, indices in (overrides or {}).items():
            array = np.asarray(indices, np.int64).reshape(-1)
            if array.size == 0 or array.min() < 0 or array.max() >= len(neutral):
                raise MoshifaceError(f"features.vertices.{name}: indices must be non-empty and in 0..{len(neutral) - 1}")
            sets[name] = np.unique(array)
        return cls(neutral, sets)

    def head_rotation(self, displacement: np.ndarray) -> np.ndarray:
        """The head's rotation in this frame, from the rigid vertices."""
        r, _ = kabsch(self._rigid_neutral, self._rigid_neutral + displacement[self._rigid])
        return r

    def expression_displacement(self, displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(displacement with the head's rigid motion removed, rotation that was removed)."""
        d = np.asarray(displacement, np.float64)
        r, t = kabsch(self._rigid_neutral, self._rigid_neutral + d[self._rigid])
        if np.allclose(r, np.eye(3), atol=1e-7) and np.allclose(t, 0.0, atol=1e-7):
            return d, np.eye(3)  # no head motion (to rounding): leave the frame as it is
        return (self.neutral + d - t) @ r - self.neutral, r

    def measure(self, displacement: np.ndarray, global_pose: np.ndarray | None = None,
                eye_pose: np.ndarray | None = None) -> np.ndarray:
        """All FEATURE_NAMES for one frame (V x 3 displacement from the neutral)."""
        local, r = self.expression_displacement(displacement)
        return self.measure_local(local, r, global_pose, eye_pose)

    def measure_local(self, local: np.ndarray, r: np.ndarray, global_pose: np.ndarray | None = None,
                      eye_pose: np.ndarray | None = None) -> np.ndarray:
        """Features from an already un-rotated displacement and the rotation removed."""
        linear = self._rows @ np.asarray(local, np.float32).reshape(-1)
        if _usable(global_pose, 3):
            r = rodrigues(np.asarray(global_pose, np.float64))
        angles = np.array(euler_from_matrix(r), np.float64)
        eyes = np.zeros(4)
        if _usable(eye_pose, 6):  # a non-finite pose counts as not sent: no NaN reaches a weight
            pose = np.asarray(eye_pose, np.float64).reshape(2, 3)
            for i in range(2):
                yaw, pitch, _ = euler_from_matrix(rodrigues(pose[i]))
                eyes[2 * i: 2 * i + 2] = yaw, pitch
        features = np.concatenate([linear.astype(np.float64), angles, eyes])
        return np.where(np.isfinite(features), features, 0.0)


def _usable(pose: np.ndarray | None, size: int) -> bool:
    """A pose vector of the expected size whose values are all finite and bounded (a
    rotation vector beyond 1,000 rad is no pose)."""
    if pose is None or np.size(pose) != size:
        return False
    values = np.asarray(pose, np.float64)
    return bool(np.isfinite(values).all() and np.abs(values).max() <= 1e3)


class FeatureMapping:
    """Features -> weights of named blendshapes by calibrated ranges."""

    def __init__(self, ranges: list[tuple[str, str, float, float]], names: list[str] | None = None) -> None:
        index = {name: i for i, name in enumerate(FEATURE_NAMES)}
        self.names = list(names) if names is not None else list(dict.fromkeys(r[1] for r in ranges))
        out = {name: i for i, name in enumerate(self.names)}
        used = [(index[f], out[b], lo, hi) for f, b, lo, hi in ranges if b in out]
        self._feature = np.array([u[0] for u in used], np.int64)
        self._target = np.array([u[1] for u in used], np.int64)
        self._lo = np.array([u[2] for u in used])
        self._span = np.array([u[3] - u[2] for u in used])

    def weights(self, features: np.ndarray) -> np.ndarray:
        values = np.clip((features[self._feature] - self._lo) / self._span, 0.0, 1.0)
        out = np.zeros(len(self.names))
        np.maximum.at(out, self._target, values)
        return out.astype(np.float32)

"""The synthetic head as a retargeting topology, with FLAME_masks-named regions and an
ARKit-52 rig derived from the head itself.

FLAME's template, masks and any rig built on them cannot ship, yet retargeting needs a
face to be tested and demonstrated on, and it should be the face every other stage uses:
``topology: synthetic`` in a head file is the package's synthetic head
(``flame.motion_head``, 5,023 vertices, or 5,143 with VHAP's teeth). Its regions carry
FLAME_masks.pkl's names (``lips``, ``left_eye_region``, ``forehead``, ...) next to the
head's own (``upper_lip``, ``brows``, ...), so the servo head's features find the lips,
lids and brows on it.

The ARKit virtual head's 52 blendshapes are made from the head's own motion: ``jawOpen``
is the jaw joint rotated, ``eyeBlinkLeft`` the head's ``blink_left``, ``mouthSmileLeft``
its ``smile`` restricted to the face's left half, the gaze shapes rotate the eyeballs,
and shapes the head has no component for (``mouthLeft``, ``cheekPuff``, ...) are local
displacements placed by its regions. Each carries a small seeded ripple so no two are
linearly dependent, and shapes that a feature reads are scaled so that, at weight 1, the
feature reads its default range (``features.DEFAULT_RANGES``): the head then speaks the
same units as the servo head's calibration.

Axes are FLAME's: x to the face's left, y up, z out of the face, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import FLAME_VERTICES as _FLAME, VHAP_VERTICES as _VHAP
from ..flame.model import FlameParams
from ..flame.motion_head import MotionHead, motion_head
from ..flame.synthetic_expressions import EXPRESSION, JAW_JOINT
from ..regions import Regions
from .arkit import ARKIT_52
from .features import DEFAULT_RANGES, FEATURE_NAMES, FeatureExtractor, default_vertex_sets
from .rig import Rig

FLAME_VERTICES = _FLAME  # 5023
FLAME_TEETH_VERTICES = _VHAP  # 5143


@dataclass
class SyntheticFace:
    """A neutral mesh, its triangles, its regions and an ARKit-named rig on it."""

    neutral: np.ndarray  # V x 3
    faces: np.ndarray  # F x 3
    regions: Regions
    rig: Rig


def synthetic_topology(vertices: int = FLAME_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """The head's neutral mesh (V x 3 float32) and triangles, V = 5023 or 5143."""
    if vertices not in (FLAME_VERTICES, FLAME_TEETH_VERTICES):
        raise ValueError(f"the synthetic head has {FLAME_VERTICES} or {FLAME_TEETH_VERTICES} vertices, not {vertices}")
    head = motion_head(vertices)
    return head.neutral.astype(np.float32), np.array(head.faces, np.int64)


def synthetic_regions(vertices: int = FLAME_VERTICES) -> Regions:
    """The head's regions plus their FLAME_masks.pkl names (``left_eye_region``, ...), with a
    ``forehead`` that, as FLAME's, reaches well above the brows (the features hold its upper
    half still to measure the head's rotation)."""
    head = motion_head(vertices)
    sets = dict(head.regions.sets)
    v = head.neutral
    left, right = sets.get("eye_left", sets.get("left_eye_region")), sets.get("eye_right", sets.get("right_eye_region"))
    brows = sets.get("brows", sets.get("forehead"))
    brow_top, half = float(v[brows, 1].max()), float(np.abs(v[brows, 0]).max())
    front = v[:, 2] > float(v[brows, 2].min())
    above = np.flatnonzero((v[:, 1] > brow_top + 0.006) & (v[:, 1] < brow_top + 0.045) & (np.abs(v[:, 0]) < half)
                           & front)
    above = np.setdiff1d(above, np.concatenate([sets.get(n, np.zeros(0, np.int64)) for n in ("eyes", "eyeball_left",
                                                                                           "eyeball_right")]))
    sets.update(forehead=np.union1d(brows, above))
    for name, value in (("left_eye_region", left), ("right_eye_region", right),
                        ("eye_region", np.union1d(left, right))):
        sets.setdefault(name, value)
    return Regions(vertices, sets, f"synthetic head ({head.model.source})")


class _Places:
    """Where the face's parts are on the neutral mesh, for placing local shapes."""

    def __init__(self, head: MotionHead, regions: Regions) -> None:
        v = head.neutral
        lips = regions.get("lips")
        self.mouth = v[lips, :2].mean(0)
        self.corner = float(v[lips, 0].max() - self.mouth[0])
        self.upper = float(v[regions.get("upper_lip"), 1].mean())
        self.lower = float(v[regions.get("lower_lip"), 1].mean())
        self.eye = {side: v[regions.get(f"{side}_eye_region"), :2].mean(0) for side in ("left", "right")}
        nose = regions.get("nose")
        self.nose_tip = v[nose[np.argmin(v[nose, 1])], :2]
        self.points = v
        brow_top = float(v[regions.get("brows"), 1].max())
        # The brows' own band: brow shapes end 4 mm above them, so the forehead above (which
        # the features hold still to measure head motion) stays still.
        self.brow_band = np.clip((brow_top + 0.004 - v[:, 1]) / 0.004, 0.0, 1.0)[:, None]


def _bump(points: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((points[:, 0] - cx) / sx) ** 2 + ((points[:, 1] - cy) / sy) ** 2))


def _side(points: np.ndarray, centre: float, sign: float) -> np.ndarray:
    """1 on one half of the face (sign +1: the face's left, +x), 0 on the other."""
    return 1.0 / (1.0 + np.exp(-np.clip(sign * (points[:, 0] - centre) / 0.004, -50, 50)))


def _own_shapes(head: MotionHead) -> dict[str, np.ndarray]:
    """The head's own motion at full strength: expressions, jaw, eye rotations (V x 3 each)."""
    model, neutral = head.model, head.neutral
    out = {name: model.exprdirs[:, :, index].astype(np.float64) for name, index in EXPRESSION.items()}

    def posed(**pose: list[float]) -> np.ndarray:
        return head.pose(FlameParams(**pose)) - neutral

    out["jaw_open"] = posed(jaw_pose=[0.2, 0.0, 0.0])
    out["jaw_yaw"] = posed(jaw_pose=[0.0, 0.08, 0.0])
    out["jaw_forward"] = model.weights[:, JAW_JOINT][:, None] * np.array([0.0, 0.0, 0.004])
    for side, offset in (("left", 0), ("right", 3)):
        for axis, name in ((0, "pitch"), (1, "yaw")):
            pose = np.zeros(6)
            pose[offset + axis] = 0.3
            out[f"eye_{side}_{name}"] = posed(eye_pose=pose.tolist())
    return out


def _local(name: str, p: _Places, s: float) -> np.ndarray:
    """Shapes placed by the regions: ``s`` is +1 for a Left shape, -1 for Right."""
    pts, (mx, my) = p.points, p.mouth
    move = lambda weight, d: weight[:, None] * np.asarray(d, np.float64)
    ex, ey = p.eye["left" if s > 0 else "right"]
    return {
        "mouthLeft": lambda: move(_bump(pts, mx, my, 0.025, 0.012), (0.005, 0.0, 0.0)),
        "mouthRight": lambda: move(_bump(pts, mx, my, 0.025, 0.012), (-0.005, 0.0, 0.0)),
        "mouthDimple": lambda: move(_bump(pts, mx + s * (p.corner + 0.004), my, 0.007, 0.007), (0.003 * s, 0.0, -0.002)),
        "mouthRollLower": lambda: move(_bump(pts, mx, p.lower, 0.02, 0.004), (0.0, 0.001, -0.003)),
        "mouthRollUpper": lambda: move(_bump(pts, mx, p.upper, 0.02, 0.004), (0.0, -0.001, -0.003)),
        "mouthShrugLower": lambda: move(_bump(pts, mx, p.lower - 0.012, 0.02, 0.01), (0.0, 0.003, 0.001)),
        "mouthShrugUpper": lambda: move(_bump(pts, mx, p.upper + 0.004, 0.02, 0.004), (0.0, 0.002, 0.001)),
        "mouthLowerDown": lambda: move(_bump(pts, mx + s * 0.01, p.lower, 0.009, 0.004), (0.0, -0.004, 0.0)),
        "mouthUpperUp": lambda: move(_bump(pts, mx + s * 0.01, p.upper, 0.009, 0.004), (0.0, 0.004, 0.0005)),
        "eyeSquint": lambda: move(_bump(pts, ex, ey - 0.008, 0.011, 0.004), (0.0, 0.003, 0.0005)),
        "eyeWide": lambda: move(_bump(pts, ex, ey + 0.008, 0.011, 0.004), (0.0, 0.003, 0.0)),
        "noseSneer": lambda: move(_bump(pts, p.nose_tip[0] + s * 0.01, p.nose_tip[1] + 0.006, 0.006, 0.008),
                                  (0.0, 0.003, 0.001)),
        "cheekPuff": lambda: (_bump(pts, mx + 0.045, my + 0.015, 0.014, 0.015)
                              + _bump(pts, mx - 0.045, my + 0.015, 0.014, 0.015))[:, None]
        * np.stack([np.sign(pts[:, 0] - mx) * 0.002, np.zeros(len(pts)), np.full(len(pts), 0.005)], 1),
    }[name]()


def _shape(name: str, own: dict[str, np.ndarray], p: _Places) -> np.ndarray:
    base, s = name, 0.0
    for suffix, sign in (("Left", 1.0), ("Right", -1.0)):
        if name.endswith(suffix):
            base, s = name[: -len(suffix)], sign
    side = _side(p.points, p.mouth[0], s)[:, None] if s else 1.0
    lips = _bump(p.points, p.mouth[0], p.mouth[1], 0.03, 0.015)[:, None]
    centre = _bump(p.points, p.mouth[0], 0.0, 0.015, 10.0)[:, None]
    eye = "left" if s > 0 else "right"
    derived = {
        "jawOpen": lambda: own["jaw_open"], "jawForward": lambda: own["jaw_forward"],
        "jawLeft": lambda: own["jaw_yaw"], "jawRight": lambda: -own["jaw_yaw"],
        "mouthClose": lambda: lips * np.stack([np.zeros(len(p.points)), -0.002 * np.tanh(
            (p.points[:, 1] - p.mouth[1]) / 0.003), np.zeros(len(p.points))], 1),  # the lips meet
        "mouthPress": lambda: side * own["lip_press"],
        "mouthPucker": lambda: own["lip_round"] + lips * np.stack(
            [-0.2 * (p.points[:, 0] - p.mouth[0]), np.zeros(len(p.points)), np.zeros(len(p.points))], 1),
        "mouthFunnel": lambda: 0.6 * own["lip_round"] + lips * np.stack(
            [np.zeros(len(p.points)), 0.0015 * np.tanh((p.points[:, 1] - p.mouth[1]) / 0.004),
             np.full(len(p.points), 0.001)], 1),
        "mouthSmile": lambda: side * own["smile"], "mouthFrown": lambda: side * own["frown"],
        "mouthStretch": lambda: side * own["lip_spread"],
        "eyeBlink": lambda: own[f"blink_{eye}"],
        "eyeLookDown": lambda: own[f"eye_{eye}_pitch"], "eyeLookUp": lambda: -own[f"eye_{eye}_pitch"],
        "eyeLookOut": lambda: s * own[f"eye_{eye}_yaw"], "eyeLookIn": lambda: -s * own[f"eye_{eye}_yaw"],
        "browDown": lambda: side * p.brow_band * own["brow_lower"],
        "browInnerUp": lambda: centre * p.brow_band * own["brow_raise"],
        "browOuterUp": lambda: side * (1.0 - centre) * p.brow_band * own["brow_raise"],
        "cheekSquint": lambda: side * own["cheek_raise"],
        # no tongue on the head: the tongue pushes the middle of the lower lip out and down
        "tongueOut": lambda: _bump(p.points, p.mouth[0], p.mouth[1] - 0.002, 0.007, 0.003)[:, None]
        * np.array([0.0, -0.002, 0.005]),
    }
    for key in (name, base):  # jawLeft is its own shape, mouthSmileLeft a side of mouthSmile
        if key in derived:
            return np.asarray(derived[key](), np.float64)
    return _local(name if name in ("mouthLeft", "mouthRight") else base, p, s)


def _variation(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative ripple (within +-15 %) that makes every shape unique."""
    k = rng.normal(0.0, 60.0, size=(3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    return 1.0 + 0.15 * np.sin(points[:, :2] @ k.T + phase).mean(1, keepdims=True) * 3 ** 0.5


def _calibrate(deltas: np.ndarray, neutral: np.ndarray, regions: Regions) -> None:
    """Scales each shape a mesh feature reads so that, at weight 1, it reads its default range."""
    extractor = FeatureExtractor(neutral, default_vertex_sets(neutral, regions, "the synthetic head's regions"))
    linear = {name for name in FEATURE_NAMES if not name.startswith(("head_", "eye_yaw", "eye_pitch"))}
    for feature, shape, _, target in DEFAULT_RANGES:
        if feature not in linear or shape not in ARKIT_52:
            continue
        k = ARKIT_52.index(shape)
        measured = extractor.measure_local(deltas[k], np.eye(3))[FEATURE_NAMES.index(feature)]
        if measured * target > 0:
            deltas[k] *= target / measured


def synthetic_rig(head: MotionHead, regions: Regions, seed: int = 0) -> Rig:
    """ARKit-52 displacement fields derived from the head (see the module doc)."""
    rng = np.random.default_rng(seed)
    places = _Places(head, regions)
    own = _own_shapes(head)
    deltas = np.zeros((len(ARKIT_52), head.vertices, 3))
    for k, name in enumerate(ARKIT_52):
        deltas[k] = _shape(name, own, places) * _variation(head.neutral, rng)
    _calibrate(deltas, head.neutral, regions)
    return Rig(list(ARKIT_52), deltas.astype(np.float32), neutral=head.neutral.astype(np.float32),
               faces=np.array(head.faces, np.int64))


def synthetic_face(vertices: int = FLAME_VERTICES, seed: int = 0) -> SyntheticFace:
    """The synthetic head with ``vertices`` = 5023 (FLAME) or 5143 (FLAME + teeth), its
    FLAME_masks-named regions and its ARKit-52 rig."""
    neutral, faces = synthetic_topology(vertices)
    regions = synthetic_regions(vertices)
    rig = synthetic_rig(motion_head(vertices), regions, seed)
    return SyntheticFace(neutral, faces, regions, rig)

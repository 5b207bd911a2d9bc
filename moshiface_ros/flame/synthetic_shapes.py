"""How the synthetic head moves: skinning weights, joints, blendshapes and pose correctives.

FLAME's conventions: five joints (root at the base of the neck, neck at the top of it, jaw at
the hinge in front of the ears, one per eyeball centre), LBS weights summing to one, 300
identity and 100 expression components that are zero at the neutral face, and 36 pose
correctives driven by (R - I) of the four non-root joints.

The jaw's weights are 1 on the lower lip, the chin and the lower face in front of the hinge,
0 on the upper lip and above; the lower lip's rim tapers toward the mouth corners, so an open
mouth has a lens shape. The first ten expression components are the actions named in
``synthetic_expressions``, written as smooth local displacement fields (1.0 = the full
action); the rest, like the identity components, are smooth random fields scaled like a PCA
spectrum.
"""

from __future__ import annotations

import numpy as np

from .synthetic_expressions import EXPRESSION_NAMES
from .synthetic_geometry import COLUMNS, MOUTH_Y, RINGS, HeadMesh, closed_eye_skin
from .synthetic_surface import symmetric_reference

HINGE = np.array([0.0, -0.004, -0.072])  # m, the jaw joint


def _smooth(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def jaw_weights(mesh: HeadMesh) -> np.ndarray:
    """Per-vertex jaw weight: the lower face in front of the hinge, the lower lip, half the lining."""
    v = mesh.vertices
    V = len(v)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    corner = abs(symmetric_reference()[61, 0])
    side = np.maximum(np.abs(x) - 0.5 * corner, 0.0)
    line = MOUTH_Y - 0.15 * side                            # from the mouth back along the jaw line
    soft = 0.003 + 0.25 * side                               # a wider fade over the cheeks
    w = _smooth((line - y) / soft)
    w *= _smooth((z - HINGE[2] + 0.02) / 0.03)             # fading out behind the hinge
    w *= _smooth((y - (-0.125)) / 0.03)                      # the throat stays with the neck
    lateral = 0.35 + 0.65 * (1 - _smooth((np.abs(x) - 0.45 * corner) / (0.55 * corner)))
    near = np.exp(-np.maximum(MOUTH_Y - y, 0.0) / 0.008)
    w *= 1 - near * (1 - lateral)                            # the lower lip tapers toward the corners
    ring = (np.arange(V) - 1) // COLUMNS
    w[(np.arange(V) >= 1) & (np.arange(V) < 1 + RINGS * COLUMNS) & (ring < mesh.mouth.ring)] = 0.0
    w[0] = 0.0
    w[mesh.mouth.upper] = 0.0
    w[mesh.mouth.lower] = lateral[mesh.mouth.lower]
    for ids in mesh.eyeballs.values():
        w[ids] = 0.0
    lining = mesh.lining
    w[lining] = _smooth((MOUTH_Y + 0.004 - y[lining]) / 0.012)
    return w


def skinning(mesh: HeadMesh) -> tuple[np.ndarray, np.ndarray]:
    """(weights V x 5, J_regressor 5 x V)."""
    v = mesh.vertices
    V = len(v)
    rim = 1 + (RINGS - 1) * COLUMNS + np.arange(COLUMNS)
    neck_ring = 1 + (RINGS - 4) * COLUMNS + np.arange(COLUMNS)
    root = _smooth((v[rim, 1].mean() + 0.05 - v[:, 1]) / 0.04) * (np.arange(V) < mesh.n_skin)
    weights = np.zeros((V, 5))
    weights[:, 2] = jaw_weights(mesh) * (1 - root)
    weights[:, 0] = root
    weights[:, 1] = 1 - weights[:, 0] - weights[:, 2]
    regressor = np.zeros((5, V))
    regressor[0, rim] = 1.0 / COLUMNS
    regressor[1, neck_ring] = 1.0 / COLUMNS
    for sign in (-1.0, 1.0):
        target = HINGE + [sign * 0.065, 0.0, 0.0]
        skin = v[:mesh.n_skin]
        nearest = np.argsort(np.linalg.norm(skin - target, axis=1))[:4]
        regressor[2, nearest] = 1.0 / 8
    for j, name in ((3, "left"), (4, "right")):
        ids = mesh.eyeballs[name]
        weights[ids] = np.eye(5)[j]
        regressor[j, ids] = 1.0 / len(ids)
    return weights, regressor


def _bump(points: np.ndarray, center: np.ndarray, sigma: float | np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * (((points - center) / sigma) ** 2).sum(1))


def _sides(points: np.ndarray, index: int, sigma: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bumps around a landmark and its mirror image, and the side sign (+1 left) of each point."""
    c = symmetric_reference()[index]
    mirror = c * [-1.0, 1.0, 1.0]
    return _bump(points, c, sigma) + _bump(points, mirror, sigma), np.sign(points[:, 0])


def _mouth_actions(p: np.ndarray, mesh: HeadMesh) -> list[np.ndarray]:
    """lip_round, lip_spread, smile, frown, lip_press (each V x 3 on the skin)."""
    ref = symmetric_reference()
    mouth = np.array([0.0, MOUTH_Y, ref[[0, 17], 2].mean()])
    lips = _bump(p, mouth, np.array([0.022, 0.014, 0.02]))
    corners, sign = _sides(p, 61, 0.011)
    cheeks, _ = _sides(p, 205, 0.014)
    out = [np.zeros_like(p) for _ in range(5)]
    out[0][:, 0] = -0.35 * p[:, 0] * lips
    out[0][:, 1] = -0.25 * (p[:, 1] - MOUTH_Y) * lips
    out[0][:, 2] = 0.005 * lips
    out[1][:, 0] = 0.006 * sign * corners
    out[1][:, 2] = -0.002 * corners
    out[2] += np.stack([0.003 * sign, np.full(len(p), 0.005), np.full(len(p), -0.002)], 1) * corners[:, None]
    out[2][:, 1] += 0.002 * cheeks
    out[2][:, 2] += 0.0015 * cheeks
    out[3][:, 1] = -0.004 * corners
    out[3][:, 2] = -0.001 * corners
    rolled = np.exp(-((p[:, 1] - MOUTH_Y) / 0.006) ** 2) * lips  # the red of the lips rolls in
    out[4][:, 2] = -0.003 * rolled
    out[4][:, 1] = -0.0006 * np.sign(p[:, 1] - MOUTH_Y) * rolled
    return out


def _upper_face_actions(p: np.ndarray, mesh: HeadMesh) -> list[np.ndarray]:
    """blink_left, blink_right, brow_raise, brow_lower, cheek_raise (each V x 3 on the skin)."""
    n = len(p)
    out = [np.zeros_like(p) for _ in range(5)]
    for k, eye in enumerate(("left", "right")):
        out[k] = closed_eye_skin(eye) - p
        out[k][np.abs(out[k]).max(1) < 1e-7] = 0.0
    ref = symmetric_reference()
    eye_line = (ref[33, 1] + ref[133, 1]) / 2
    above_eyes = _smooth((p[:, 1] - eye_line - 0.006) / 0.01)
    brows = (_sides(p, 105, np.array([0.03, 0.025, 0.05]))[0]) * above_eyes
    out[2][:, 1] = 0.006 * np.minimum(brows, 1.0)
    inner, sign = _sides(p, 107, np.array([0.02, 0.015, 0.05]))
    out[3][:, 1] = -0.004 * np.minimum(brows, 1.0)
    out[3][:, 0] = -0.002 * sign * inner * above_eyes
    cheeks, _ = _sides(p, 205, 0.015)
    lower_lid = np.zeros(n)
    for slit in mesh.eye_slits.values():
        center = p[slit.lower].mean(0)
        lower_lid += _bump(p, center, np.array([0.012, 0.004, 0.02])) * (p[:, 1] < center[1] + 0.001)
    out[4][:, 1] = 0.003 * cheeks + 0.0012 * lower_lid
    out[4][:, 2] = 0.002 * cheeks
    return out


def named_expressions(mesh: HeadMesh) -> np.ndarray:
    """The named actions (V x 3 x 10), in ``EXPRESSION_NAMES`` order; they move only the skin."""
    p = np.asarray(mesh.vertices[:mesh.n_skin])
    fields = _mouth_actions(p, mesh) + _upper_face_actions(p, mesh)
    assert len(fields) == len(EXPRESSION_NAMES)
    out = np.zeros((len(mesh.vertices), 3, len(fields)))
    out[:mesh.n_skin] = np.stack(fields, axis=2)
    return out

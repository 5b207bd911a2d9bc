"""A synthetic head with FLAME's format and dimensions, for tests and FLAME-less demos.

FLAME cannot ship, yet every part of the package must be exercised on FLAME-shaped data.
This builds a model with exactly FLAME's sizes (5,023 vertices, 9,976 triangles, 300
identity + 100 expression components, 36 pose correctives, 5 joints with FLAME's
kinematic tree) and writes it as a FLAME-format pickle. It is not FLAME: its triangles are
laid out differently, so a FLAME embedding or FLAME masks do not apply to it.

Topology: a head surface (a top vertex + 74 rings of 60 vertices, open at the neck) and
two eyeballs (17 rings of 17 vertices + 2 poles each):
vertices 1 + 74*60 + 2*(17*17 + 2) = 5,023; triangles 60 + 73*60*2 + 2*2*17*17 = 9,976.

Geometry: an ellipsoid whose front is bent through the reference face (MediaPipe's
landmark layout measured on a real photo, ``reference_face``), so that face landmarks
and a landmark embedding mean something on it; a neck tube below. Bases are spatially
smooth random fields (identity over the whole head, expression on the face only, pose
correctives near the neck and jaw), orthogonal and scaled like PCA components.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .model import FlameModel
from .reference_face import load_reference

COLUMNS, HEAD_RINGS, NECK_RINGS = 60, 62, 12
EYE_RINGS = EYE_COLUMNS = 17
EYE_RADIUS = 0.0115
NUM_SHAPE, NUM_EXPRESSION, NUM_POSE = 300, 100, 36


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(t, -50, 50)))


class _Head:
    """The ellipsoid + face height field the head surface is sampled from."""

    def __init__(self, face: np.ndarray) -> None:
        from scipy.interpolate import RBFInterpolator

        self.center = np.array([0.0, 0.005, -0.085])
        self.axes = np.array([0.080, 0.110, 0.105])
        angles = self.angles(face)
        offsets = np.linalg.norm(face - self.center, axis=1) - self.radius(angles)
        self._offset = RBFInterpolator(angles, offsets, kernel="thin_plate_spline", smoothing=1e-6)
        self._face_angles = angles

    def angles(self, points: np.ndarray) -> np.ndarray:
        d = points - self.center
        azimuth = np.arctan2(d[:, 0], d[:, 2])
        polar = np.arccos(np.clip(d[:, 1] / np.linalg.norm(d, axis=1), -1, 1))
        return np.stack([azimuth, polar], axis=1)

    def radius(self, angles: np.ndarray) -> np.ndarray:
        az, po = angles[:, 0], angles[:, 1]
        u = np.stack([np.sin(po) * np.sin(az), np.cos(po), np.sin(po) * np.cos(az)], axis=1)
        return 1.0 / np.sqrt(((u / self.axes) ** 2).sum(1))

    def faceness(self, angles: np.ndarray) -> np.ndarray:
        """1 inside the face landmarks' region, fading to 0 about 0.2 rad outside it."""
        from scipy.spatial import cKDTree

        distance, _ = cKDTree(self._face_angles).query(angles)
        return 1.0 - _smoothstep((distance - 0.04) / 0.2)

    def surface(self, angles: np.ndarray) -> np.ndarray:
        az, po = angles[:, 0], angles[:, 1]
        r = self.radius(angles) + self.faceness(angles) * self._offset(angles)
        u = np.stack([np.sin(po) * np.sin(az), np.cos(po), np.sin(po) * np.cos(az)], axis=1)
        return self.center + r[:, None] * u


def _head_vertices(head: _Head) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (1 + 74*60) and ring/column grid of the head, denser on the face."""
    u = np.linspace(-np.pi, np.pi, COLUMNS, endpoint=False)
    azimuth = u - 0.6 * np.sin(u)  # columns 2.5x denser at the front (u = 0) than at the back
    t = np.linspace(0, 1, HEAD_RINGS + 1)[1:]
    polar = np.radians(158) * (t - 0.12 * np.sin(2 * np.pi * t) / (2 * np.pi) * 2.5)  # denser mid-face
    grid = np.stack(np.meshgrid(azimuth, polar), axis=-1).reshape(-1, 2)
    rings = head.surface(grid).reshape(HEAD_RINGS, COLUMNS, 3)
    # Neck: from the last head ring down to a circle 9 cm lower.
    last = rings[-1]
    neck_center = np.array([0.0, last[:, 1].mean() - 0.09, head.center[2] - 0.01])
    circle = neck_center + 0.052 * np.stack([np.sin(azimuth), np.zeros(COLUMNS), np.cos(azimuth)], axis=1)
    s = np.linspace(0, 1, NECK_RINGS + 1)[1:, None, None]
    neck = (1 - s) * last[None] + s * circle[None]
    top = head.surface(np.array([[0.0, 0.0]]))
    return np.concatenate([top, rings.reshape(-1, 3), neck.reshape(-1, 3)]), azimuth


def _head_faces() -> np.ndarray:
    rings = HEAD_RINGS + NECK_RINGS
    faces = []
    for k in range(COLUMNS):  # the top fan, outward normals (counter-clockwise seen from outside)
        faces.append((0, 1 + k, 1 + (k + 1) % COLUMNS))
    for r in range(rings - 1):
        for k in range(COLUMNS):
            a = 1 + r * COLUMNS + k
            b = 1 + r * COLUMNS + (k + 1) % COLUMNS
            faces += [(a, a + COLUMNS, b), (b, a + COLUMNS, b + COLUMNS)]
    return np.array(faces, dtype=np.int64)


def _eyeball(center: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere with its poles on the z axis (the front pole is the pupil)."""
    polar = np.linspace(0, np.pi, EYE_RINGS + 2)[1:-1]
    az = np.linspace(0, 2 * np.pi, EYE_COLUMNS, endpoint=False)
    p, a = np.meshgrid(polar, az, indexing="ij")
    ring = np.stack([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)], axis=-1).reshape(-1, 3)
    vertices = center + EYE_RADIUS * np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]])
    front, back = start, start + 1 + EYE_RINGS * EYE_COLUMNS
    faces = []
    for k in range(EYE_COLUMNS):
        k1 = (k + 1) % EYE_COLUMNS
        faces.append((front, start + 1 + k, start + 1 + k1))
        last = start + 1 + (EYE_RINGS - 1) * EYE_COLUMNS
        faces.append((back, last + k1, last + k))
    for r in range(EYE_RINGS - 1):
        for k in range(EYE_COLUMNS):
            a = start + 1 + r * EYE_COLUMNS + k
            b = start + 1 + r * EYE_COLUMNS + (k + 1) % EYE_COLUMNS
            faces += [(a, a + EYE_COLUMNS, b), (b, a + EYE_COLUMNS, b + EYE_COLUMNS)]
    return vertices, np.array(faces, dtype=np.int64)


def _random_fields(points: np.ndarray, rng: np.random.Generator, count: int,
                   wavelengths: tuple[float, float], waves: int = 6) -> np.ndarray:
    """(P, 3, count) smooth random vector fields: sums of plane waves."""
    out = np.zeros((len(points), 3, count))
    for k in range(count):
        for c in range(3):
            direction = rng.normal(size=(waves, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            length = rng.uniform(*wavelengths, size=(waves, 1))
            phase = rng.uniform(0, 2 * np.pi, size=waves)
            out[:, c, k] = (np.cos(points @ (2 * np.pi * direction / length).T + phase) * rng.normal(size=waves)).sum(1)
    return out


def _pca_like(fields: np.ndarray, rows: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Orthogonalises ``fields`` over the vertices ``rows`` and scales component k to ``rms[k]`` m
    RMS displacement there; other vertices get the same linear map."""
    P, _, n = fields.shape
    flat = fields.reshape(P * 3, n)
    sel = (rows[:, None] * 3 + np.arange(3)).reshape(-1)
    _, R = np.linalg.qr(flat[sel])
    mapped = np.linalg.solve(R.T, flat.T).T  # flat @ R^-1
    return (mapped * rms * np.sqrt(len(sel))).reshape(P, 3, n)


@dataclass
class _Mesh:
    """The synthetic head's vertices and where its parts lie in them."""

    v_template: np.ndarray  # V x 3: head (top, rings, neck), left eyeball, right eyeball
    faces: np.ndarray
    n_head: int  # head vertices come first
    left_rows: np.ndarray  # the eyeballs' vertex indices
    right_rows: np.ndarray
    eye_centers: dict[str, np.ndarray]


def _mesh(head: _Head, reference: np.ndarray, groups: dict[str, np.ndarray]) -> _Mesh:
    head_vertices, _ = _head_vertices(head)
    n_head = len(head_vertices)
    eye_centers = {}
    for side in ("left", "right"):
        eye = reference[groups[f"{side}_eye"]]
        eye_centers[side] = eye.mean(0) - np.array([0, 0.001, EYE_RADIUS + 0.001])
    left, left_faces = _eyeball(eye_centers["left"], n_head)
    right, right_faces = _eyeball(eye_centers["right"], n_head + len(left))
    v_template = np.concatenate([head_vertices, left, right])
    faces = np.concatenate([_head_faces(), left_faces, right_faces])
    V = len(v_template)
    return _Mesh(v_template, faces, n_head, np.arange(n_head, n_head + len(left)),
                 np.arange(n_head + len(left), V), eye_centers)


def _skinning(mesh: _Mesh, head: _Head, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skinning weights (V x 5) and joint regressor (5 x V): root at the base of the neck,
    neck for the skull, jaw below the lips; also returns each vertex's faceness."""
    v_template, n_head = mesh.v_template, mesh.n_head
    V = len(v_template)
    lip_split = (reference[13, 1] + reference[14, 1]) / 2
    chin_y = reference[152, 1]
    hinge = np.array([0.0, lip_split + 0.025, head.center[2] + 0.005])
    y, z = v_template[:, 1], v_template[:, 2]
    neck_base_y = v_template[n_head - COLUMNS:n_head, 1].mean()
    weights = np.zeros((V, 5))
    faceness = head.faceness(head.angles(v_template))
    jaw = (_sigmoid((lip_split - y) / 0.0025) * _sigmoid((y - (chin_y - 0.03)) / 0.006)
           * _sigmoid((z - hinge[2] - 0.03) / 0.012) * np.maximum(faceness, 0.3))
    root = _sigmoid((neck_base_y + 0.04 - y) / 0.01)
    weights[:, 2] = jaw * (1 - root)
    weights[:, 0] = root
    weights[:, 1] = 1 - weights[:, 0] - weights[:, 2]
    weights[mesh.left_rows] = [0, 0, 0, 1, 0]
    weights[mesh.right_rows] = [0, 0, 0, 0, 1]

    J_regressor = np.zeros((5, V))
    J_regressor[0, n_head - COLUMNS:n_head] = 1.0 / COLUMNS
    neck_ring = slice(1 + (HEAD_RINGS - 4) * COLUMNS, 1 + (HEAD_RINGS - 3) * COLUMNS)
    J_regressor[1, neck_ring] = 1.0 / COLUMNS
    for side in (-1, 1):
        target = hinge + np.array([side * 0.07, 0, 0])
        nearest = np.argsort(np.linalg.norm(v_template[:n_head] - target, axis=1))[:4]
        J_regressor[2, nearest] = 1.0 / 8
    J_regressor[3, mesh.left_rows] = 1.0 / len(mesh.left_rows)
    J_regressor[4, mesh.right_rows] = 1.0 / len(mesh.right_rows)
    return weights, J_regressor, faceness


def _shape_bases(mesh: _Mesh, faceness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Identity then expression components (V x 3 x 400). Eyeballs move rigidly with their
    centre's displacement; expressions do not move them."""
    n_head = mesh.n_head
    head_vertices = mesh.v_template[:n_head]
    points = np.concatenate([head_vertices, mesh.eye_centers["left"][None], mesh.eye_centers["right"][None]])
    identity = _random_fields(points, rng, NUM_SHAPE, (0.15, 0.6))
    identity = _pca_like(identity, np.arange(n_head), 0.006 * (1 + np.arange(NUM_SHAPE)) ** -0.8)
    face_weight = np.concatenate([faceness[:n_head], [1.0, 1.0]])[:, None, None]
    expression = _random_fields(points, rng, NUM_EXPRESSION, (0.04, 0.15)) * face_weight
    expression[n_head:] = 0.0
    face_rows = np.flatnonzero(faceness[:n_head] > 0.5)
    expression = _pca_like(expression, face_rows, 0.003 * (1 + np.arange(NUM_EXPRESSION)) ** -0.5)

    shapedirs = np.zeros((len(mesh.v_template), 3, NUM_SHAPE + NUM_EXPRESSION))
    shapedirs[:n_head, :, :NUM_SHAPE] = identity[:n_head]
    shapedirs[mesh.left_rows, :, :NUM_SHAPE] = identity[n_head]
    shapedirs[mesh.right_rows, :, :NUM_SHAPE] = identity[n_head + 1]
    shapedirs[:n_head, :, NUM_SHAPE:] = expression[:n_head]
    return shapedirs


def _pose_bases(mesh: _Mesh, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pose correctives (V x 3 x 36) near the neck (neck joint) and the jaw."""
    n_head = mesh.n_head
    y = mesh.v_template[:, 1]
    posedirs = np.zeros((len(mesh.v_template), 3, NUM_POSE))
    pose_fields = _random_fields(mesh.v_template[:n_head], rng, 18, (0.05, 0.2))
    neck_region = (1 - weights[:n_head, 0]) * weights[:n_head, 1] * _sigmoid((0.0 - y[:n_head]) / 0.02)
    posedirs[:n_head, :, 0:9] = 0.002 * pose_fields[:, :, :9] * neck_region[:, None, None]
    posedirs[:n_head, :, 9:18] = 0.002 * pose_fields[:, :, 9:] * weights[:n_head, 2][:, None, None]
    return posedirs


def build_synthetic_flame(seed: int = 0) -> FlameModel:
    """A FLAME-format model (see the module doc); same ``seed``, same model."""
    rng = np.random.default_rng(seed)
    reference, groups = load_reference()
    head = _Head(reference[:468])
    mesh = _mesh(head, reference, groups)
    weights, J_regressor, faceness = _skinning(mesh, head, reference)
    shapedirs = _shape_bases(mesh, faceness, rng)
    posedirs = _pose_bases(mesh, weights, rng)
    arrays = {"v_template": mesh.v_template, "f": mesh.faces, "shapedirs": shapedirs, "posedirs": posedirs,
              "J_regressor": J_regressor, "weights": weights,
              "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)}
    return FlameModel.from_arrays(arrays, source=f"synthetic FLAME-format model (seed {seed})")


def synthetic_masks(model: FlameModel) -> dict[str, np.ndarray]:
    """FLAME_masks.pkl-style regions of the synthetic model (vertex index arrays by name),
    found from the reference face the model is shaped after."""
    from scipy.spatial import cKDTree

    reference, groups = load_reference()
    head = model.v_template[:1 + (HEAD_RINGS + NECK_RINGS) * COLUMNS]
    tree = cKDTree(head)

    def near(points: np.ndarray, radius: float) -> np.ndarray:
        return np.unique(np.concatenate([np.asarray(i, dtype=np.int64) for i in tree.query_ball_point(points, radius)]))

    return {
        "lips": near(reference[groups["lips"]], 0.004),
        "left_eye_region": near(reference[groups["left_eye"]], 0.008),
        "right_eye_region": near(reference[groups["right_eye"]], 0.008),
        "nose": near(reference[groups["nose"]], 0.006),
        "forehead": near(reference[[10, 67, 297, 109, 338, 108, 337]], 0.015),
        "face": near(reference[:468], 0.006),
    }


def write_flame_pickle(model: FlameModel, path: Path | str) -> Path:
    """Writes ``model`` as FLAME's pickle does: a dict of numpy arrays, J_regressor as a
    scipy CSC matrix, protocol 2 (temp file, then rename)."""
    import scipy.sparse

    arrays = model.to_arrays()
    arrays["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    arrays["bs_style"] = "lbs"
    arrays["bs_type"] = "lrotmin"
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(arrays, f, protocol=2)
    return path

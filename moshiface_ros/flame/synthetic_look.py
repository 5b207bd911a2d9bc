"""What the synthetic head looks like and where its parts are: per-vertex albedo, named regions.

Colour is what lets a person (and MediaPipe) read the shape as a face: skin, red lips, dark
brows and hair, lash lines on the lid rims, white eyeballs with an iris and a pupil, a dark
mouth lining, light teeth. The named regions are vertex index sets for the metrics and the
retargeting features (LVE needs ``lips``; the lip features need ``upper_lip``/``lower_lip``;
the lid and brow features the eye and brow regions); FLAME_masks.pkl's names for the same
parts (``left_eye_region``, ``forehead``, ...) are included so FLAME-minded code finds them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .synthetic_geometry import MOUTH_Y, HeadMesh, head_mesh
from .synthetic_surface import symmetric_reference, to_angles

SKIN = (0.87, 0.68, 0.58)
LIPS = (0.74, 0.40, 0.40)
HAIR = (0.23, 0.16, 0.11)
BROWS = (0.26, 0.18, 0.13)
LASHES = (0.20, 0.14, 0.12)
SCLERA = (0.94, 0.93, 0.90)
IRIS = (0.36, 0.46, 0.62)
PUPIL = (0.04, 0.04, 0.05)
LINING = (0.30, 0.08, 0.09)
TEETH = (0.95, 0.93, 0.86)
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
BROW_LINES = ((46, 53, 52, 65, 55), (70, 63, 105, 66, 107), (276, 283, 282, 295, 285), (300, 293, 334, 296, 336))


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which 2D points lie inside the closed polygon."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        at = x1 + (y - y1) * (x2 - x1) / np.where(y2 == y1, 1e-12, y2 - y1)
        inside ^= crosses & (x < at)
    return inside


def _segment_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """2D distance of each point to a polyline."""
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:]):
        d = b - a
        t = np.clip(((points - a) @ d) / (d @ d), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * d), axis=1))
    return best


@lru_cache(maxsize=1)
def _parts() -> dict[str, np.ndarray]:
    """Masks over the 5,023 vertices: lips, brows, lashes, skin (booleans); hair, lip and brow
    colour (0..1, soft at their borders)."""
    mesh = head_mesh()
    v = np.asarray(mesh.vertices)
    ref = symmetric_reference()
    skin = np.arange(len(v)) < mesh.n_skin
    front = skin & (v[:, 2] > -0.035)
    outline = ref[list(OUTER_LIP) + [OUTER_LIP[0]], :2]
    inside = front & _inside_polygon(v[:, :2], outline[:-1])
    edge = np.clip(0.5 + np.where(inside, 1, -1) * _segment_distance(v[:, :2], outline) / 0.003, 0, 1)
    lip_colour = front * edge * edge * (3 - 2 * edge)  # the red fades over about 3 mm at the border
    lips = inside
    brow = np.min([_segment_distance(v[:, :2], ref[list(line), :2]) for line in BROW_LINES], axis=0)
    b = np.clip((0.0045 - brow) / 0.002, 0.0, 1.0) * (front & (v[:, 2] > -0.03))
    brow_colour = b * b * (3 - 2 * b)  # hair thins out over the brow's last 2 mm
    brows = brow_colour > 0.5
    angles = to_angles(v)
    front_line, back_line = np.radians(40), np.radians(118)
    hairline = front_line + (back_line - front_line) * (1 - np.cos(angles[:, 0])) / 2
    t = np.clip((hairline - angles[:, 1]) / 0.06 + 0.5, 0.0, 1.0)
    hair = skin * t * t * (3 - 2 * t)  # a soft hairline: how much of the vertex's colour is hair
    lashes = np.zeros(len(v), dtype=bool)
    for slit in mesh.eye_slits.values():
        lashes[slit.upper] = lashes[slit.lower] = True
    return {"lips": lips, "lip_colour": lip_colour, "brow_colour": brow_colour, "brows": brows, "hair": hair, "lashes": lashes, "skin": skin}


def _eyeball_colours(mesh: HeadMesh, albedo: np.ndarray) -> None:
    for name, ids in mesh.eyeballs.items():
        d = np.asarray(mesh.vertices[ids]) - mesh.eye_centers[name]
        angle = np.degrees(np.arccos(np.clip(d[:, 2] / np.linalg.norm(d, axis=1), -1, 1)))
        albedo[ids] = np.where(angle[:, None] < 9, PUPIL, np.where(angle[:, None] < 30, IRIS, SCLERA))


def synthetic_albedo(vertices: int = 5023) -> np.ndarray:
    """Per-vertex RGB albedo in 0..1 (V x 3 float32) for 5,023 vertices, or 5,143 with teeth."""
    if vertices not in (5023, 5143):
        raise ValueError(f"the synthetic head has 5023 or 5143 vertices, not {vertices}")
    mesh = head_mesh()
    parts = _parts()
    albedo = np.tile(np.array(SKIN), (5023, 1))
    albedo += parts["hair"][:, None] * (np.array(HAIR) - albedo)
    albedo += parts["lip_colour"][:, None] * (np.array(LIPS) - albedo)
    albedo += parts["brow_colour"][:, None] * (np.array(BROWS) - albedo)
    albedo[parts["lashes"]] = LASHES
    _eyeball_colours(mesh, albedo)
    albedo[mesh.lining] = LINING
    if vertices == 5143:
        albedo = np.concatenate([albedo, np.tile(np.array(TEETH), (120, 1))])
    return albedo.astype(np.float32)


def region_sets(jaw_weight: np.ndarray) -> dict[str, np.ndarray]:
    """Named vertex index sets on the 5,023 vertices (see the module doc)."""
    from scipy.spatial import cKDTree

    mesh = head_mesh()
    v = np.asarray(mesh.vertices)
    ref = symmetric_reference()
    parts = _parts()
    lips = np.flatnonzero(parts["lips"])
    lower_side = np.isin(lips, mesh.mouth.lower) | ((v[lips, 1] < MOUTH_Y) & ~np.isin(lips, mesh.mouth.upper))
    skin_tree = cKDTree(v[:mesh.n_skin])
    sets = {"lips": lips, "upper_lip": lips[~lower_side], "lower_lip": lips[lower_side],
            "brows": np.flatnonzero(parts["brows"]), "jaw": np.flatnonzero(jaw_weight > 0.5)}
    for name, c in mesh.eye_centers.items():
        near = np.array(skin_tree.query_ball_point(c + [0, 0, 0.008], 0.017), dtype=np.int64)
        sets[f"eye_{name}"] = np.sort(near[v[near, 2] > c[2]])
        sets[f"eyeball_{name}"] = np.asarray(mesh.eyeballs[name])
    sets["eyes"] = np.union1d(sets["eye_left"], sets["eye_right"])
    nose = [1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440]
    sets["nose"] = np.unique(np.concatenate([np.array(i, dtype=np.int64) for i in
                                             skin_tree.query_ball_point(ref[nose], 0.006)]))
    face = cKDTree(ref[:468]).query(v[:mesh.n_skin])[0] < 0.006
    sets["face"] = np.flatnonzero(face & (parts["hair"][:mesh.n_skin] < 0.5))
    forehead = sets["face"][(v[sets["face"], 1] > v[sets["brows"], 1].max()) & (np.abs(v[sets["face"], 0]) < 0.04)]
    sets.update(left_eye_region=sets["eye_left"], right_eye_region=sets["eye_right"], eye_region=sets["eyes"],
                forehead=np.union1d(sets["brows"], forehead))
    return sets

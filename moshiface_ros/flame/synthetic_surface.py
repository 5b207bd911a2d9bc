"""The synthetic head's skin as a function of direction: a skull with a neck, and a face relief.

The head is star-shaped around ``CENTER``: along each direction (azimuth about the vertical
axis, polar angle from the top) the skin lies at one distance. That distance is the base
shape's (an ellipsoidal skull smoothly joined to a neck cylinder) plus, on the face, a relief
interpolated through the reference face: MediaPipe's landmark layout measured on a real
photo (``reference_face``), made left-right symmetric. Shaping the face after MediaPipe's
own layout is what lets MediaPipe find a face on a picture of the head, and what makes a
landmark embedding built on it meaningful.

The reference was measured on a smiling face with parted lips; the inner-lip landmarks are
left out of the relief, so the lips are shaped by their outer contour and meet at rest.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .reference_face import load_reference

CENTER = np.array([0.0, 0.02, -0.09])      # m, the point every direction is taken from
SKULL_AXES = np.array([0.076, 0.112, 0.100])
NECK_AXIS_Z, NECK_RADII, NECK_TOP = -0.095, np.array([0.052, 0.058]), -0.035
BLEND = 0.025                               # m, how smoothly the neck joins the skull
INNER_LIP_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_LOWER = (95, 88, 178, 87, 14, 317, 402, 318, 324)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k / 4


def _inside(points: np.ndarray) -> np.ndarray:
    """Approximate signed distance (m) to the base shape, negative inside."""
    p = points - CENTER
    skull = (np.linalg.norm(p / SKULL_AXES, axis=-1) - 1.0) * SKULL_AXES.min()
    q = np.stack([points[..., 0] / NECK_RADII[0], (points[..., 2] - NECK_AXIS_Z) / NECK_RADII[1]], axis=-1)
    tube = (np.linalg.norm(q, axis=-1) - 1.0) * NECK_RADII.min()
    neck = np.maximum(tube, points[..., 1] - NECK_TOP)
    return _smin(skull, neck, BLEND)


def directions(angles: np.ndarray) -> np.ndarray:
    """Unit vectors (N x 3) of (azimuth, polar) pairs: azimuth 0 faces +z, +pi/2 the subject's left (+x)."""
    az, po = angles[..., 0], angles[..., 1]
    return np.stack([np.sin(po) * np.sin(az), np.cos(po), np.sin(po) * np.cos(az)], axis=-1)


def to_angles(points: np.ndarray) -> np.ndarray:
    d = points - CENTER
    r = np.linalg.norm(d, axis=-1)
    return np.stack([np.arctan2(d[..., 0], d[..., 2]), np.arccos(np.clip(d[..., 1] / r, -1, 1))], axis=-1)


def base_radius(angles: np.ndarray) -> np.ndarray:
    """Distance from ``CENTER`` to the base shape's surface along each direction (bisection)."""
    u = directions(angles)
    lo, hi = np.full(len(u), 0.005), np.full(len(u), 0.45)
    for _ in range(40):
        mid = (lo + hi) / 2
        outside = _inside(CENTER + mid[:, None] * u) > 0
        hi = np.where(outside, mid, hi)
        lo = np.where(outside, lo, mid)
    return (lo + hi) / 2


@lru_cache(maxsize=1)
def symmetric_reference() -> np.ndarray:
    """The reference landmarks (478 x 3) averaged with their mirror images: a symmetric face."""
    from scipy.spatial import cKDTree

    points, _ = load_reference()
    mirrored = points * [-1.0, 1.0, 1.0]
    out = points.copy()
    for block in (slice(0, 468), slice(468, 478)):
        p, m = points[block], mirrored[block]
        _, partner = cKDTree(p).query(m)
        out[block] = (p + m[partner]) / 2
        out[block][partner == np.arange(len(p)), 0] = 0.0
    return out


class FaceRelief:
    """The face's offset from the base shape, as a smooth function of direction."""

    def __init__(self) -> None:
        from scipy.interpolate import RBFInterpolator
        from scipy.spatial import cKDTree

        reference = symmetric_reference()[:468]
        keep = np.setdiff1d(np.arange(468), INNER_LIP_UPPER + INNER_LIP_LOWER)
        angles = to_angles(reference[keep])
        offsets = np.linalg.norm(reference[keep] - CENTER, axis=1) - base_radius(angles)
        self._offset = RBFInterpolator(angles, offsets, kernel="thin_plate_spline", smoothing=3e-4)
        self._tree = cKDTree(angles)

    def faceness(self, angles: np.ndarray) -> np.ndarray:
        """1 among the face landmarks, fading to 0 about 0.35 rad outside them."""
        distance, _ = self._tree.query(angles)
        t = np.clip((distance - 0.03) / 0.35, 0.0, 1.0)
        return 1.0 - t * t * (3 - 2 * t)

    def offset(self, angles: np.ndarray) -> np.ndarray:
        return self.faceness(angles) * self._offset(angles)


@lru_cache(maxsize=1)
def face_relief() -> FaceRelief:
    return FaceRelief()


def surface(angles: np.ndarray) -> np.ndarray:
    """Skin points (N x 3) in the given directions."""
    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 2)
    r = base_radius(angles) + face_relief().offset(angles)
    return CENTER + r[:, None] * directions(angles)

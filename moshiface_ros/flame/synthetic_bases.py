"""The synthetic head's statistical components: identity, the expression tail, pose correctives.

FLAME's components come from PCA over scans; here the first identity components are
designed (eye spacing, lower face length, nose size, jaw width, mouth width) and the rest are
spatially smooth random vector fields (sums of plane waves; left-right symmetric for
identity, as faces mostly are), orthogonalised over the skin and scaled like a PCA spectrum
(the first components largest, about 3 mm RMS in all at one standard deviation), so identity and expression spaces behave like FLAME's for fitting and learning: smooth,
independent, decreasing in size. Eyeballs follow identity
rigidly (by their centre's displacement) and never follow expressions, so they stay round.
"""

from __future__ import annotations

import numpy as np

from .synthetic_geometry import HeadMesh
from .synthetic_surface import face_relief, to_angles

NUM_SHAPE, NUM_EXPRESSION, NUM_POSE = 300, 100, 36


def random_fields(points: np.ndarray, rng: np.random.Generator, count: int,
                  wavelengths: tuple[float, float], waves: int = 6, symmetric: bool = False) -> np.ndarray:
    """(P, 3, count) smooth random vector fields: sums of plane waves. ``symmetric`` fields are
    averaged with their mirror image (x -> -x), so a face stays left-right symmetric under them."""
    out = np.zeros((len(points), 3, count))
    mirrored = points * [-1.0, 1.0, 1.0]
    for k in range(count):
        for c in range(3):
            direction = rng.normal(size=(waves, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            length = rng.uniform(*wavelengths, size=(waves, 1))
            phase = rng.uniform(0, 2 * np.pi, size=waves)
            amplitude = rng.normal(size=waves)
            wave = 2 * np.pi * direction / length
            out[:, c, k] = (np.cos(points @ wave.T + phase) * amplitude).sum(1)
            if symmetric:
                mirror = (np.cos(mirrored @ wave.T + phase) * amplitude).sum(1)
                out[:, c, k] = (out[:, c, k] + (-mirror if c == 0 else mirror)) / 2
    return out


def designed_identity(points: np.ndarray) -> np.ndarray:
    """(P, 3, 5) the first identity components, about one standard deviation each: eye spacing,
    lower face length, nose size, jaw width, mouth width. Each changes the
    face's proportions, so landmarks can tell it from the head's distance or turn."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    out = np.zeros((len(points), 3, 5))
    eyes = np.exp(-0.5 * (((np.abs(x) - 0.032) / 0.018) ** 2 + ((y - 0.03) / 0.018) ** 2))
    out[:, 0, 0] = 0.003 * np.sign(x) * eyes
    out[:, 1, 1] = 0.05 * np.minimum(y, 0.0)
    nose = np.exp(-0.5 * (((points - [0.0, -0.005, 0.03]) / [0.014, 0.02, 0.02]) ** 2).sum(1))
    out[:, :, 2] = 0.06 * (points - [0.0, -0.015, 0.0]) * nose[:, None]
    out[:, 0, 3] = 0.05 * x / (1 + np.exp(np.clip((y + 0.03) / 0.015, -50, 50)))
    corners = np.exp(-0.5 * (((np.abs(points) - [0.03, 0.0, 0.0]) * [1, 0, 0] + (points - [0, -0.034, 0.0])
                              * [0, 1, 1]) ** 2 / 0.012 ** 2).sum(1))
    out[:, 0, 4] = 0.003 * np.sign(x) * corners
    return out


def pca_like(fields: np.ndarray, rows: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Orthogonalises ``fields`` over the vertices ``rows`` and scales component k to ``rms[k]`` m
    RMS displacement there; other vertices get the same linear map."""
    P, _, n = fields.shape
    flat = fields.reshape(P * 3, n)
    sel = (rows[:, None] * 3 + np.arange(3)).reshape(-1)
    _, R = np.linalg.qr(flat[sel])
    mapped = np.linalg.solve(R.T, flat.T).T  # flat @ R^-1
    return (mapped * rms * np.sqrt(len(sel))).reshape(P, 3, n)


def faceness(mesh: HeadMesh) -> np.ndarray:
    return face_relief().faceness(to_angles(np.asarray(mesh.vertices)))


def identity_bases(mesh: HeadMesh, rng: np.random.Generator) -> np.ndarray:
    """V x 3 x 300: whole-head shape variation; eyeballs move rigidly with their centres."""
    n = mesh.n_skin
    centers = np.stack([mesh.eye_centers["left"], mesh.eye_centers["right"]])
    points = np.concatenate([mesh.vertices[:n], centers, mesh.vertices[mesh.lining]])
    designed = designed_identity(points)
    fields = random_fields(points, rng, NUM_SHAPE - designed.shape[2], (0.15, 0.6), symmetric=True)
    face = np.flatnonzero(faceness(mesh)[:n] > 0.5)
    fields -= fields[face].mean(axis=0, keepdims=True)  # as after Procrustes: no shift of the face
    fields = pca_like(fields, np.arange(n), 0.003 * (1 + np.arange(fields.shape[2])) ** -1.0)
    fields = np.concatenate([designed, fields], axis=2)
    out = np.zeros((len(mesh.vertices), 3, NUM_SHAPE))
    out[:n] = fields[:n]
    out[mesh.eyeballs["left"]] = fields[n]
    out[mesh.eyeballs["right"]] = fields[n + 1]
    out[mesh.lining] = fields[n + 2:]
    return out


def expression_tail(mesh: HeadMesh, rng: np.random.Generator, count: int) -> np.ndarray:
    """V x 3 x count small smooth fields on the face (the PCA tail after the named actions)."""
    n = mesh.n_skin
    weight = faceness(mesh)[:n]
    fields = random_fields(np.asarray(mesh.vertices[:n]), rng, count, (0.04, 0.15)) * weight[:, None, None]
    rows = np.flatnonzero(weight > 0.5)
    fields = pca_like(fields, rows, 0.0012 * (1 + np.arange(count)) ** -0.5)
    out = np.zeros((len(mesh.vertices), 3, count))
    out[:n] = fields
    return out


def pose_bases(mesh: HeadMesh, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """V x 3 x 36 correctives near the neck (neck joint) and the jaw (jaw joint), as FLAME's."""
    n = mesh.n_skin
    y = mesh.vertices[:n, 1]
    out = np.zeros((len(mesh.vertices), 3, NUM_POSE))
    fields = random_fields(np.asarray(mesh.vertices[:n]), rng, 18, (0.05, 0.2))
    neck = (1 - weights[:n, 0]) * weights[:n, 1] * (1 / (1 + np.exp(np.clip(y / 0.02, -50, 50))))
    out[:n, :, 0:9] = 0.002 * fields[:, :, :9] * neck[:, None, None]
    out[:n, :, 9:18] = 0.002 * fields[:, :, 9:] * weights[:n, 2][:, None, None]
    return out

"""Mesh geometry for the landmark embedding: closest points on triangles, similarity alignment."""

from __future__ import annotations

import numpy as np


def closest_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of N triangles (a, b, c: N x 3) to N points; returns (closest, barycentric)."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.maximum((n * n).sum(1), 1e-30)
    ap = points - a
    # Barycentric coordinates of the projection onto the plane.
    v = (np.cross(ap, ac) * n).sum(1) / nn
    w = (np.cross(ab, ap) * n).sum(1) / nn
    bary = np.stack([1 - v - w, v, w], axis=1)
    inside = (bary >= 0).all(1)
    best = a + ab * v[:, None] + ac * w[:, None]
    best_d = np.where(inside, ((points - best) ** 2).sum(1), np.inf)
    best_bary = np.where(inside[:, None], bary, 0.0)
    for (p, q, i, j) in ((a, b, 0, 1), (b, c, 1, 2), (c, a, 2, 0)):
        d = q - p
        t = np.clip(((points - p) * d).sum(1) / np.maximum((d * d).sum(1), 1e-30), 0, 1)
        x = p + d * t[:, None]
        dist = ((points - x) ** 2).sum(1)
        better = dist < best_d
        e = np.zeros_like(bary)
        e[:, i], e[:, j] = 1 - t, t
        best = np.where(better[:, None], x, best)
        best_bary = np.where(better[:, None], e, best_bary)
        best_d = np.where(better, dist, best_d)
    return best, best_bary


class MeshProjector:
    """Closest points on a mesh: candidate triangles are those around the nearest vertices."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, neighbours: int = 12) -> None:
        from scipy.spatial import cKDTree

        self.vertices, self.faces = vertices, faces
        used = np.unique(faces)
        self._used = used
        self._tree = cKDTree(vertices[used])
        self._k = min(neighbours, len(used))
        order = np.argsort(faces.reshape(-1), kind="stable")
        self._tri_of = order // 3
        self._start = np.searchsorted(faces.reshape(-1)[order], np.arange(len(vertices) + 1))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(triangle index, barycentric, closest point) of each point."""
        _, near = self._tree.query(points, k=self._k)
        near = self._used[np.atleast_2d(near)]
        tris, bary, closest = [], [], []
        for p, vs in zip(points, near):
            cand = np.unique(np.concatenate([self._tri_of[self._start[v]:self._start[v + 1]] for v in vs]))
            f = self.faces[cand]
            x, bc = closest_on_triangles(np.repeat(p[None], len(cand), 0), self.vertices[f[:, 0]],
                                         self.vertices[f[:, 1]], self.vertices[f[:, 2]])
            i = int(np.argmin(((x - p) ** 2).sum(1)))
            tris.append(cand[i])
            bary.append(bc[i])
            closest.append(x[i])
        return np.array(tris), np.array(bary), np.array(closest)


def similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
               ) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: (s, R, t) minimising sum w |s R source + t - target|^2."""
    w = np.ones(len(source)) if weights is None else weights
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    xs, xt = source - mu_s, target - mu_t
    cov = (xt * w[:, None]).T @ xs
    U, S, Vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (w @ (xs ** 2).sum(1)))
    return s, R, mu_t - s * R @ mu_s

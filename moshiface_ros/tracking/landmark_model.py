"""FLAME evaluated only where the landmarks are: the per-frame fit's forward model.

A full FLAME evaluation touches 5,023 vertices x 400 components; the fit needs only the
landmarks. Because skinning and barycentric interpolation are both linear, a landmark's
posed position can be computed from a few precomputed per-landmark sums. With the neck and
eyes unposed (the head's rotation is the global pose), only the jaw bends the face, so

    m = u - a + c J + R_jaw (a - c J)                      (landmark, jaw posed, head unposed)

where, summed over the landmark's triangle with barycentric weights b_k and jaw weights w_k,
u = sum b_k v_k, a = sum b_k w_k v_k, c = sum b_k w_k, and J is the jaw joint. u, a and J
are affine in identity (beta) and expression (psi), plus the jaw's pose correctives in u
and a. Everything below works on these small arrays (L landmarks x 3 x components).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..flame.lbs import rodrigues
from ..flame.model import FlameModel
from .embedding import LandmarkEmbedding

JAW = 2
JAW_POSE_FEATURES = slice(9, 18)  # (R_jaw - I) in FLAME's pose-corrective input


@dataclass
class Affine:
    """x(beta, psi) = x0 + S @ beta + E @ psi, for arrays of shape (..., 3)."""

    x0: np.ndarray
    S: np.ndarray
    E: np.ndarray

    def __call__(self, beta: np.ndarray, psi: np.ndarray) -> np.ndarray:
        return self.x0 + self.S[..., :beta.size] @ beta + self.E[..., :psi.size] @ psi


class LandmarkModel:
    """The landmarks of ``flame`` under ``embedding``, with ``num_shape``/``num_expression`` components."""

    def __init__(self, flame: FlameModel, embedding: LandmarkEmbedding, num_shape: int, num_expression: int) -> None:
        embedding.check(flame)
        self.landmark_ids = embedding.landmark_ids
        self.num_shape = min(num_shape, flame.num_shape)
        self.num_expression = min(num_expression, flame.num_expression)
        idx = embedding.vertex_ids(flame)
        b = embedding.barycentric
        w = flame.weights[:, JAW][idx] * b  # (L, 3) jaw weight x barycentric

        def gather(coeff: np.ndarray, array: np.ndarray) -> np.ndarray:
            return np.einsum("lk,lk...->l...", coeff, np.asarray(array[idx], dtype=np.float64))

        S = flame.shapedirs[:, :, :self.num_shape]
        E = flame.exprdirs[:, :, :self.num_expression]
        P = flame.posedirs[:, :, JAW_POSE_FEATURES]
        self.u = Affine(gather(b, flame.v_template), gather(b, S), gather(b, E))
        self.a = Affine(gather(w, flame.v_template), gather(w, S), gather(w, E))
        self.u_pose, self.a_pose = gather(b, P), gather(w, P)  # (L, 3, 9)
        self.c = w.sum(1)  # (L,)
        reg = flame.J_regressor
        self.jaw_joint = Affine(reg[JAW] @ flame.v_template, np.einsum("v,vck->ck", reg[JAW], S),
                                np.einsum("v,vck->ck", reg[JAW], E))
        self.root_joint = Affine(reg[0] @ flame.v_template, np.einsum("v,vck->ck", reg[0], S),
                                 np.einsum("v,vck->ck", reg[0], E))

    def __len__(self) -> int:
        return len(self.c)

    def points(self, beta: np.ndarray, psi: np.ndarray, jaw: np.ndarray) -> np.ndarray:
        """(L, 3) landmark positions with the jaw posed and the head unposed (FLAME frame)."""
        R2 = rodrigues(jaw)
        feature = (R2 - np.eye(3)).reshape(-1)
        u = self.u(beta, psi) + self.u_pose @ feature
        a = self.a(beta, psi) + self.a_pose @ feature
        J = self.jaw_joint(beta, psi)
        y = a - self.c[:, None] * J
        return u - a + self.c[:, None] * J + y @ R2.T

    def derivatives(self, beta: np.ndarray, psi: np.ndarray, jaw: np.ndarray, with_shape: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Points (L, 3), d points / d jaw rotation increment (L, 3, 3), d / d psi (L, 3, E),
        d / d beta (L, 3, S) or None. Pose correctives are held fixed in the derivatives."""
        R2 = rodrigues(jaw)
        D = R2 - np.eye(3)
        feature = D.reshape(-1)
        u = self.u(beta, psi) + self.u_pose @ feature
        a = self.a(beta, psi) + self.a_pose @ feature
        J = self.jaw_joint(beta, psi)
        c = self.c[:, None]
        y = a - c * J
        rotated = y @ R2.T
        points = u - a + c * J + rotated
        d_jaw = -_skew(rotated)  # left increment: d(exp(w) R y)/dw = -[R y]x

        def linear(U: np.ndarray, A: np.ndarray, dJ: np.ndarray) -> np.ndarray:
            return U + np.einsum("ij,ljk->lik", D, A) - c[:, :, None] * (D @ dJ)[None]

        d_psi = linear(self.u.E, self.a.E, self.jaw_joint.E)
        d_beta = linear(self.u.S, self.a.S, self.jaw_joint.S) if with_shape else None
        return points, d_jaw, d_psi, d_beta


def _skew(v: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3) cross-product matrices."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out

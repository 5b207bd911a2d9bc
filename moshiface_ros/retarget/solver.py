"""Per-frame blendshape weights from a mesh displacement: bounded, regularised least squares.

For a rig with deltas ``D`` (K blendshapes x 3V coordinates), per-vertex region weights
``R`` (the mouth and eyes count more) and a frame's displacement ``y``, each frame solves,
as NVIDIA Audio2Face-3D's blendshape solver does::

    min_w  1/2 |R^1/2 (D^T w - y)|^2 / s  +  l1 sum(e w)  +  l2/2 sum(e w^2)
           + temporal/2 sum(e (w - w_prev)^2)
           + symmetry/2 sum_(left,right) sqrt(e_l e_r) (w_left - w_right)^2
    s.t.   0 <= w <= 1

then, for each mutually exclusive pair (smile/frown, blink/wide, ...) where both are
active, fixes the weaker at zero and solves again. ``s`` is the mean diagonal of
``D R D^T`` and ``e_k`` is shape k's own energy (``(D R D^T)_kk / s``), so the
regularisation weights are unitless and act on every shape alike, whatever the rig's
scale and however small a shape is (an eyelid moves far fewer vertices than the jaw).

Why it is fast: everything of size V is precomputed once per rig (the K x K Hessian and
``D R``), so a frame costs one K x 3V product (0.1 ms for 52 shapes on 5,143 vertices)
and a box-constrained QP on K variables, solved by Bertsekas' projected Newton method
with an Armijo search along the projection arc, warm-started from the previous frame's
active set (typically 1-3 iterations of a K x K solve).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.linalg.lapack import dposv as _cholesky_solve  # LAPACK's SPD solve, without numpy's per-call checks

from .arkit import DEFAULT_EXCLUSIVE_PAIRS, symmetric_pairs
from .rig import Rig

_ACTIVE = 1e-6  # a weight above this counts as active for the exclusive pairs


@dataclass
class SolverConfig:
    """Regularisation (unitless, relative to the data term) and what counts more."""

    l1: float = 1e-4
    l2: float = 1e-5
    temporal: float = 0.01
    symmetry: float = 0.002
    # region name -> weight of its vertices in the data term (others weigh 1).
    region_weights: dict[str, float] = field(default_factory=lambda: {"lips": 4.0, "eye_region": 3.0})
    # None: the ARKit pairs (DEFAULT_EXCLUSIVE_PAIRS) that the rig has.
    exclusive_pairs: list[tuple[str, str]] | None = None
    max_iterations: int = 50


def box_qp(H: np.ndarray, q: np.ndarray, upper: np.ndarray, w0: np.ndarray,
           max_iterations: int = 50, tol: float = 1e-7) -> tuple[np.ndarray, int]:
    """argmin 1/2 w'Hw - q'w subject to 0 <= w <= upper (H symmetric positive definite);
    returns (w, iterations).

    First a primal-dual active-set method warm-started from ``w0``'s bounds: each
    iteration solves the free variables exactly and moves every variable whose bound or
    multiplier is wrong; on a face stream the active set barely changes from frame to
    frame, so it ends in 1-2 K x K solves with the exact optimum (KKT checked). It can
    cycle on hard problems, so after a few iterations the projected Newton method below
    takes over from where it is."""
    w, iterations = _active_set(H, q, upper, w0)
    if w is not None:
        return w, iterations
    w, more = _projected_newton(H, q, upper, w0, max_iterations, tol)
    return w, iterations + more


def _active_set(H: np.ndarray, q: np.ndarray, upper: np.ndarray, w0: np.ndarray,
                max_iterations: int = 6) -> tuple[np.ndarray | None, int]:
    """Primal-dual active set; (None, iterations) when it has not converged."""
    pinned = upper <= 0.0  # held at zero whatever the gradient says
    at_upper = (w0 >= upper) & ~pinned
    at_lower = ((w0 <= 0.0) | pinned) & ~at_upper
    scale = float(np.abs(q).max()) + float(np.abs(np.diag(H)).max()) + 1e-30
    tol = 1e-12 * scale
    for iteration in range(1, max_iterations + 1):
        free = ~(at_lower | at_upper)
        w = np.where(at_upper, upper, 0.0)
        index = np.flatnonzero(free)
        if index.size:
            _, x, info = _cholesky_solve(H[index[:, None], index], q[index] - H[index] @ w)
            if info:
                return None, iteration
            w[index] = x
        g = H @ w - q
        low, high = free & (w < -tol), free & (w > upper + tol)
        release_lower = at_lower & ~pinned & (g < -tol)
        release_upper = at_upper & (g > tol)
        if not (low | high | release_lower | release_upper).any():
            return np.minimum(np.maximum(w, 0.0), upper), iteration
        at_lower = (at_lower & ~release_lower) | low
        at_upper = (at_upper & ~release_upper) | high
    return None, max_iterations


def _projected_newton(H: np.ndarray, q: np.ndarray, upper: np.ndarray, w0: np.ndarray,
                      max_iterations: int = 50, tol: float = 1e-7) -> tuple[np.ndarray, int]:
    """Bertsekas' projected Newton method: Newton steps on the variables not held at a bound,
    scaled gradient steps on those that are, projected onto the box, with an Armijo search
    along the projection arc; returns (w, iterations). Written for K ~ 50: plain numpy on
    small arrays, no per-call allocation beyond what each step needs."""
    lower = np.zeros_like(upper)
    w = np.minimum(np.maximum(w0, lower), upper)
    diag = np.diag(H)
    hw = H @ w
    f = 0.5 * w @ hw - q @ w
    for iteration in range(1, max_iterations + 1):
        g = hw - q
        gap = float(np.max(np.abs(w - np.minimum(np.maximum(w - g, lower), upper)))) if w.size else 0.0
        if gap <= tol:
            return w, iteration - 1
        eps = min(1e-3, gap)
        bound = ((w <= lower + eps) & (g > 0)) | ((w >= upper - eps) & (g < 0))
        free = ~bound
        d = g / diag  # scaled gradient on the bound variables ...
        if free.any():  # ... and the Newton step on the free ones
            d[free] = np.linalg.solve(H[free][:, free], g[free])
        g_free_d = g[free] @ d[free]
        alpha = 1.0
        while True:
            w_new = np.minimum(np.maximum(w - alpha * d, lower), upper)
            hw_new = H @ w_new
            f_new = 0.5 * w_new @ hw_new - q @ w_new
            decrease = alpha * g_free_d + g[bound] @ (w[bound] - w_new[bound])
            if f - f_new >= 1e-4 * decrease:
                break
            alpha *= 0.5
            if alpha < 1e-6:  # no progress left at float precision: w is the optimum
                return w, iteration
        w, hw, f = w_new, hw_new, f_new
    return w, max_iterations


class BlendshapeSolver:
    """Solves frame after frame for one rig; ``reset`` forgets the previous frame."""

    def __init__(self, rig: Rig, config: SolverConfig | None = None,
                 vertex_weights: np.ndarray | None = None) -> None:
        self.rig = rig
        self.config = config or SolverConfig()
        self.names = list(rig.names)
        k, v = len(self.names), rig.vertices
        weights = np.ones(v) if vertex_weights is None else np.asarray(vertex_weights, np.float64)
        if weights.shape != (v,) or not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError(f"vertex weights must be {v} finite non-negative values")
        deltas = rig.deltas.reshape(k, 3 * v).astype(np.float64)
        weighted = deltas * np.repeat(weights, 3)[None, :]
        gram = weighted @ deltas.T
        self.scale = float(np.mean(np.diag(gram))) or 1.0
        # Per frame: b = (D R / s) y, a K x 3V float32 product.
        self._projector = (weighted / self.scale).astype(np.float32)
        c = self.config
        symmetry = np.zeros((k, k))
        for i, j in symmetric_pairs(self.names):
            symmetry[[i, j], [i, j]] += 1.0
            symmetry[i, j] -= 1.0
            symmetry[j, i] -= 1.0
        # Each shape's regularisation is relative to how much that shape moves the mesh
        # (its own data-term energy), so small shapes (eyelids) are not drowned by it.
        self._energy = np.diag(gram) / self.scale
        pair_energy = np.sqrt(np.outer(self._energy, self._energy))
        base = gram / self.scale + c.l2 * np.diag(self._energy) + c.symmetry * symmetry * pair_energy
        self._hessian = base
        self._hessian_temporal = base + c.temporal * np.diag(self._energy)
        index = {name: i for i, name in enumerate(self.names)}
        pairs = c.exclusive_pairs if c.exclusive_pairs is not None else DEFAULT_EXCLUSIVE_PAIRS
        self.exclusive_pairs = [(index[a], index[b]) for a, b in pairs if a in index and b in index]
        self._previous: np.ndarray | None = None
        self._unclamped: np.ndarray | None = None  # last frame's solution before the pair clamps
        self.iterations = 0

    def reset(self) -> None:
        self._previous = None
        self._unclamped = None

    def solve(self, displacement: np.ndarray) -> np.ndarray:
        """Weights in [0, 1] (float32, K) for one frame's V x 3 displacement."""
        y = np.asarray(displacement, np.float32).reshape(-1)
        if y.size != self._projector.shape[1]:
            raise ValueError(f"the rig has {self.rig.vertices} vertices, the frame {y.size // 3}")
        b = (self._projector @ y).astype(np.float64)
        c = self.config
        if self._previous is None:
            hessian, q, start = self._hessian, b - c.l1 * self._energy, np.zeros(len(b))
        else:
            hessian = self._hessian_temporal
            q, start = b - c.l1 * self._energy + c.temporal * self._energy * self._previous, self._previous
        upper = np.ones(len(b))
        if self._unclamped is not None:
            start = self._unclamped  # the same unclamped problem as last frame: its bounds are the best guess
        w, self.iterations = box_qp(hessian, q, upper, start, c.max_iterations)
        self._unclamped = w
        for _ in range(len(self.exclusive_pairs)):  # clamps only grow: this ends
            clamp = [j if w[i] >= w[j] else i for i, j in self.exclusive_pairs if min(w[i], w[j]) > _ACTIVE]
            if not clamp:
                break
            upper[clamp] = 0.0
            w, more = box_qp(hessian, q, upper, w, c.max_iterations)
            self.iterations += more
        w = np.clip(w, 0.0, 1.0)
        w[w < _ACTIVE] = 0.0  # numerically zero: inactive, as the exclusive pairs count it
        self._previous = w
        return w.astype(np.float32)


def region_vertex_weights(vertices: int, regions, weights: dict[str, float], path: str = "the regions file") -> np.ndarray:
    """Per-vertex data weights: each vertex takes the largest weight of the regions it is in
    (1 outside them)."""
    out = np.ones(vertices)
    for name, value in weights.items():
        indices = regions.get(name, path)
        out[indices] = np.maximum(out[indices], float(value))
    return out

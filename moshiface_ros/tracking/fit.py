"""Fitting FLAME to 2D landmarks: identity once per user, expression/jaw/head pose per frame.

Camera: a pinhole with square pixels, principal point at the image centre and focal length
``FitConfig.focal_length`` pixels (0: the image width, about a 53 degree horizontal field of
view, typical of webcams). Landmark residuals are measured in pixels and divided by the
pixels per millimetre at the face's depth, so every weight below is in millimetres at the
face and does not depend on the resolution or the distance to the camera.

Per frame (``FaceFitter.fit``): Gauss-Newton on head rotation, translation, jaw rotation and
``num_expression`` expression coefficients, starting from the previous frame's solution
(warm start) or from OpenCV's PnP on the neutral face, with Gaussian priors on expression and
jaw, a temporal term pulling towards the previous frame, and Huber-weighted landmarks.
Identity (``FaceFitter.calibrate``): the same on a few frames at once, jointly with
``num_shape`` identity coefficients shared by all of them.

Internally the head's pose is a camera-frame transform in OpenCV's convention (x right,
y down, z forward); ``flame_pose`` converts it to FLAME's global pose and translation in an
OpenGL-style camera frame (x right, y up, z towards the viewer), where a frontal head has a
zero global pose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import MoshifaceError
from ..flame.lbs import rodrigues, rotation_to_axis_angle
from ..flame.model import FlameModel
from .embedding import LandmarkEmbedding
from .landmark_model import LandmarkModel, _skew
from .reference import load_reference

FLIP = np.diag([1.0, -1.0, -1.0])  # FLAME / OpenGL camera axes <-> OpenCV camera axes


@dataclass
class FitConfig:
    """Options of the fit; weights are in (mm at the face)^2 per unit of the parameter squared."""

    num_expression: int = 50          # FLAME 2023 has 100; 50 carry most of the motion
    num_shape: int = 100              # identity components calibrated per user (FLAME has 300)
    iterations: int = 4               # Gauss-Newton iterations per frame
    calibration_iterations: int = 12
    focal_length: float = 0.0         # pixels; 0 = image width
    expression_prior: float = 1.0
    shape_prior: float = 1.0
    jaw_prior: tuple[float, float, float] = (10.0, 2000.0, 2000.0)  # per rad^2: opening, yaw, roll
    temporal_expression: float = 0.3
    temporal_jaw: float = 30.0        # per rad^2
    temporal_rotation: float = 30.0   # per rad^2
    temporal_translation: float = 0.05  # per mm^2
    contour_weight: float = 0.3       # face-oval landmarks slide along the silhouette
    huber_mm: float = 3.0             # landmark residuals beyond this count linearly

    def __post_init__(self) -> None:
        if self.num_expression < 0 or self.num_shape < 0 or self.iterations < 1:
            raise MoshifaceError("num_expression and num_shape must be >= 0 and iterations >= 1")
        if self.focal_length < 0:
            raise MoshifaceError(f"focal_length must be >= 0 pixels (0 = image width), got {self.focal_length}")


@dataclass
class Camera:
    focal: float
    cx: float
    cy: float

    @classmethod
    def for_image(cls, width: int, height: int, focal: float = 0.0) -> Camera:
        return cls(float(focal or width), width / 2.0, height / 2.0)

    def project(self, X: np.ndarray) -> np.ndarray:
        return self.focal * X[:, :2] / X[:, 2:3] + np.array([self.cx, self.cy])


@dataclass
class HeadState:
    """One frame's solution: camera-frame head rotation/translation (OpenCV axes), jaw, expression."""

    rotation: np.ndarray
    translation: np.ndarray
    jaw: np.ndarray
    expression: np.ndarray

    def copy(self) -> HeadState:
        return HeadState(self.rotation.copy(), self.translation.copy(), self.jaw.copy(), self.expression.copy())


@dataclass
class FitResult:
    state: HeadState
    rms_px: float                 # root-mean-square landmark reprojection error, pixels
    mean_px: float                # mean landmark reprojection error, pixels
    residuals_px: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


class FaceFitter:
    """Fits one user's FLAME parameters to landmarks (see the module doc)."""

    def __init__(self, flame: FlameModel, embedding: LandmarkEmbedding, config: FitConfig | None = None) -> None:
        self.config = config or FitConfig()
        self.flame = flame
        self.model = LandmarkModel(flame, embedding, self.config.num_shape, self.config.num_expression)
        self.shape = np.zeros(self.model.num_shape)
        _, groups = load_reference()
        contour = np.isin(self.model.landmark_ids, groups["face_oval"])
        self.landmark_weights = np.where(contour, self.config.contour_weight, 1.0)

    @property
    def num_expression(self) -> int:
        return self.model.num_expression

    def observations(self, landmarks_px: np.ndarray) -> np.ndarray:
        """The embedded landmarks' (x, y) from a (478, 2 or 3) MediaPipe array."""
        return np.asarray(landmarks_px, dtype=np.float64)[self.model.landmark_ids, :2]

    # -- the linear system of one frame -------------------------------------------------

    def _system(self, state: HeadState, beta: np.ndarray, obs: np.ndarray, camera: Camera, with_shape: bool):
        points, d_jaw, d_psi, d_beta = self.model.derivatives(beta, state.expression, state.jaw, with_shape)
        R, T = state.rotation, state.translation
        rotated = points @ R.T
        X = rotated + T
        Z = X[:, 2]
        residual = camera.project(X) - obs  # (L, 2) pixels
        px_per_mm = camera.focal * 1e-3 / max(float(np.median(Z)), 1e-3)
        mm = residual / px_per_mm
        norm = np.linalg.norm(mm, axis=1)
        huber = np.where(norm > self.config.huber_mm, self.config.huber_mm / np.maximum(norm, 1e-12), 1.0)
        sqrt_w = np.sqrt(self.landmark_weights * huber) / px_per_mm  # (L,) px -> weighted mm
        P = np.zeros((len(Z), 2, 3))
        P[:, 0, 0] = P[:, 1, 1] = camera.focal / Z
        P[:, 0, 2] = -camera.focal * X[:, 0] / Z ** 2
        P[:, 1, 2] = -camera.focal * X[:, 1] / Z ** 2
        P *= sqrt_w[:, None, None]
        PR = P @ R
        blocks = [-np.einsum("lij,ljk->lik", P, _skew(rotated)), P, np.einsum("lij,ljk->lik", PR, d_jaw),
                  np.einsum("lij,ljk->lik", PR, d_psi)]
        J = np.concatenate(blocks, axis=2).reshape(2 * len(Z), -1)
        Jb = np.einsum("lij,ljk->lik", PR, d_beta).reshape(2 * len(Z), -1) if with_shape else None
        r = (residual * sqrt_w[:, None]).reshape(-1)
        return J, Jb, r, residual

    def _priors(self, state: HeadState, previous: HeadState | None, H: np.ndarray, g: np.ndarray) -> None:
        """Adds the priors and the temporal term (Gauss-Newton approximations) to H and g in place."""
        c = self.config
        e = slice(9, 9 + state.expression.size)
        H[e, e] += c.expression_prior * np.eye(state.expression.size)
        g[e] += c.expression_prior * state.expression
        jaw_w = np.asarray(c.jaw_prior, dtype=np.float64)
        H[6:9, 6:9] += np.diag(jaw_w)
        g[6:9] += jaw_w * state.jaw
        if previous is None:
            return
        H[e, e] += c.temporal_expression * np.eye(state.expression.size)
        g[e] += c.temporal_expression * (state.expression - previous.expression)
        H[6:9, 6:9] += c.temporal_jaw * np.eye(3)
        g[6:9] += c.temporal_jaw * (state.jaw - previous.jaw)
        H[0:3, 0:3] += c.temporal_rotation * np.eye(3)
        g[0:3] += c.temporal_rotation * rotation_to_axis_angle(state.rotation @ previous.rotation.T)
        w_t = c.temporal_translation * 1e6  # per m^2
        H[3:6, 3:6] += w_t * np.eye(3)
        g[3:6] += w_t * (state.translation - previous.translation)

    @staticmethod
    def _update(state: HeadState, step: np.ndarray) -> HeadState:
        jaw = rotation_to_axis_angle(rodrigues(step[6:9]) @ rodrigues(state.jaw))
        return HeadState(rodrigues(step[0:3]) @ state.rotation, state.translation + step[3:6], jaw,
                         state.expression + step[9:])

    @staticmethod
    def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
        damping = 1e-6 * np.trace(H) / len(H) + 1e-9
        return -np.linalg.solve(H + damping * np.eye(len(H)), g)

    # -- public API ---------------------------------------------------------------------

    def initial_state(self, obs: np.ndarray, camera: Camera, beta: np.ndarray | None = None) -> HeadState:
        """Head pose from OpenCV's PnP on the neutral face (no warm start available)."""
        import cv2

        beta = self.shape if beta is None else beta
        points = self.model.points(beta, np.zeros(0), np.zeros(3))
        K = np.array([[camera.focal, 0, camera.cx], [0, camera.focal, camera.cy], [0, 0, 1.0]])
        ok, rvec, tvec = cv2.solvePnP(points, obs, K, None, flags=cv2.SOLVEPNP_EPNP)
        if ok:
            ok, rvec, tvec = cv2.solvePnP(points, obs, K, None, rvec, tvec, useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
        R = cv2.Rodrigues(rvec)[0] if ok else FLIP.copy()
        T = tvec.reshape(3) if ok else np.array([0.0, 0.0, 0.5])
        if not ok or T[2] <= 0.05 or not np.all(np.isfinite(T)):
            R, T = FLIP.copy(), np.array([0.0, 0.0, 0.5])
        return HeadState(R, T, np.zeros(3), np.zeros(self.num_expression))

    def fit(self, landmarks_px: np.ndarray, camera: Camera, previous: HeadState | None = None,
            iterations: int | None = None) -> FitResult:
        """One frame: ``landmarks_px`` is MediaPipe's (478, 2+) array; ``previous`` the last frame's
        solution (warm start and temporal term) or None for a fresh start."""
        obs = self.observations(landmarks_px)
        state = previous.copy() if previous is not None else self.initial_state(obs, camera)
        n = 9 + self.num_expression
        for _ in range(iterations or self.config.iterations):
            J, _, r, _ = self._system(state, self.shape, obs, camera, with_shape=False)
            H, g = J.T @ J, J.T @ r
            self._priors(state, previous, H, g)
            state = self._update(state, self._solve(H, g)[:n])
        return self._result(state, self.shape, obs, camera)

    def _result(self, state: HeadState, beta: np.ndarray, obs: np.ndarray, camera: Camera) -> FitResult:
        points = self.model.points(beta, state.expression, state.jaw)
        error = np.linalg.norm(camera.project(points @ state.rotation.T + state.translation) - obs, axis=1)
        return FitResult(state, float(np.sqrt((error ** 2).mean())), float(error.mean()), error)

    def calibrate(self, frames: list[np.ndarray], camera: Camera | list[Camera],
                  iterations: int | None = None) -> tuple[np.ndarray, list[FitResult]]:
        """Identity from a few frames: jointly fits ``num_shape`` shape coefficients and each
        frame's pose/jaw/expression; sets ``self.shape`` and returns it with each frame's fit."""
        if not frames:
            raise MoshifaceError("identity calibration needs at least one frame with a face")
        cameras = camera if isinstance(camera, list) else [camera] * len(frames)
        obs = [self.observations(f) for f in frames]
        beta = np.zeros(self.model.num_shape)
        states = [self.initial_state(o, c, beta) for o, c in zip(obs, cameras)]
        n, S = 9 + self.num_expression, beta.size
        N = n * len(frames) + S
        for _ in range(iterations or self.config.calibration_iterations):
            H, g = np.zeros((N, N)), np.zeros(N)
            b = slice(N - S, N)
            for i, (state, o, c) in enumerate(zip(states, obs, cameras)):
                f = slice(i * n, (i + 1) * n)
                J, Jb, r, _ = self._system(state, beta, o, c, with_shape=True)
                Hf, gf = J.T @ J, J.T @ r
                self._priors(state, None, Hf, gf)
                H[f, f] += Hf
                g[f] += gf
                H[f, b] += J.T @ Jb
                H[b, f] += Jb.T @ J
                H[b, b] += Jb.T @ Jb
                g[b] += Jb.T @ r
            H[b, b] += self.config.shape_prior * np.eye(S)
            g[b] += self.config.shape_prior * beta
            step = self._solve(H, g)
            states = [self._update(s, step[i * n:(i + 1) * n]) for i, s in enumerate(states)]
            beta = beta + step[N - S:]
        self.shape = beta
        return beta, [self._result(s, beta, o, c) for s, o, c in zip(states, obs, cameras)]

    def flame_pose(self, state: HeadState) -> tuple[np.ndarray, np.ndarray]:
        """(global_pose axis-angle, translation) in FLAME's convention, OpenGL-style camera frame."""
        R = FLIP @ state.rotation
        J0 = self.model.root_joint(self.shape, state.expression)
        return rotation_to_axis_angle(R), FLIP @ state.translation + R @ J0 - J0

    def with_config(self, **changes) -> FaceFitter:
        """A fitter with some options changed (same model and identity)."""
        other = FaceFitter.__new__(FaceFitter)
        other.__dict__.update(self.__dict__)
        other.config = replace(self.config, **changes)
        return other

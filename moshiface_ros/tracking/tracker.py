"""Frames -> FaceFrames: landmarks, identity calibration, per-frame fit, One-Euro filter.

The tracker keeps one user's identity. The first frame with a face gives a quick one-frame
identity so output starts at once; once ``calibration_frames`` frames (taken
``calibration_interval`` frames apart, so they differ) have been seen, the identity is
calibrated on all of them and kept. A frame without a face gives a face-absent FaceFrame
(zero displacement, zero parameters, ``face_present`` false) and drops the warm start and
the filter state, so a face that comes back is fitted fresh, never from stale values.

FaceFrame.vertices are the user's face minus their neutral face (identity only) in FLAME's
head frame: expression and jaw, without the head's rotation and translation, which travel
as ``global_pose`` and ``translation`` (set ``head_pose_in_vertices`` to include the rotation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..flame.lbs import lbs, rodrigues
from ..flame.model import FlameModel
from ..messages.types import NS_PER_S, FaceFrame
from .embedding import LandmarkEmbedding
from .fit import Camera, FaceFitter, FitConfig, FitResult, HeadState
from .landmarks import FaceLandmarker, Landmarks
from .one_euro import OneEuroFilter


@dataclass
class TrackerConfig:
    fit: FitConfig = field(default_factory=FitConfig)
    calibration_frames: int = 5
    calibration_interval: int = 5       # frames between two calibration samples
    filter_min_cutoff: float = 2.0      # Hz, One-Euro smoothing at rest
    filter_beta: float = 0.3            # One-Euro speed coefficient
    head_pose_in_vertices: bool = False
    max_error_mm: float = 12.0          # a fit worse than this (mean, mm at the face) is treated as no face
    frame_id: str = "user_camera"


@dataclass
class TrackedFrame:
    frame: FaceFrame
    landmarks: Landmarks | None = None
    fit: FitResult | None = None


class FaceTracker:
    """``process(rgb, stamp_ns)`` per camera frame, or ``track(landmarks, stamp_ns)`` when the
    landmarks come from elsewhere."""

    def __init__(self, flame: FlameModel, embedding: LandmarkEmbedding, config: TrackerConfig | None = None,
                 landmarker: FaceLandmarker | None = None) -> None:
        self.config = config or TrackerConfig()
        self.flame = flame
        self.fitter = FaceFitter(flame, embedding, self.config.fit)
        self._landmarker = landmarker
        self._filter = OneEuroFilter(self.config.filter_min_cutoff, self.config.filter_beta)
        self._previous: HeadState | None = None
        self._samples: list[tuple[np.ndarray, Camera]] = []
        self._since_sample = 0
        self.calibrated = False
        self._set_identity(np.zeros(self.fitter.model.num_shape))

    # -- identity -----------------------------------------------------------------------

    def _set_identity(self, shape: np.ndarray) -> None:
        self.fitter.shape = shape
        self._neutral = self.flame.neutral(shape)
        self._joints_neutral = self.flame.joints(self._neutral)

    def calibrate(self, samples: list[tuple[np.ndarray, Camera]]) -> list[FitResult]:
        """Identity from (landmarks_px, camera) samples; keeps it and restarts the tracking."""
        shape, results = self.fitter.calibrate([s[0] for s in samples], [s[1] for s in samples])
        self._set_identity(shape)
        self._previous = None
        self._filter.reset()
        return results

    def _collect(self, points: np.ndarray, camera: Camera) -> None:
        if self.calibrated:
            return
        if not self._samples:
            self._samples.append((points, camera))
            self.calibrate(self._samples)
            self._since_sample = 0
            self.calibrated = self.config.calibration_frames <= 1
            return
        self._since_sample += 1
        if self._since_sample >= self.config.calibration_interval:
            self._samples.append((points, camera))
            self._since_sample = 0
            if len(self._samples) >= self.config.calibration_frames:
                self.calibrate(self._samples)
                self.calibrated = True
                self._samples = []

    # -- frames -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forgets the motion (warm start, filter), keeps the identity: after a gap or a camera loss."""
        self._previous = None
        self._filter.reset()

    def process(self, rgb: np.ndarray, stamp_ns: int) -> TrackedFrame:
        if self._landmarker is None:
            self._landmarker = FaceLandmarker()
        return self.track(self._landmarker(rgb), stamp_ns)

    def track(self, landmarks: Landmarks | None, stamp_ns: int) -> TrackedFrame:
        if landmarks is None:
            self.reset()
            return TrackedFrame(self.absent_frame(stamp_ns))
        camera = Camera.for_image(landmarks.width, landmarks.height, self.config.fit.focal_length)
        self._collect(landmarks.points, camera)
        result = self.fitter.fit(landmarks.points, camera, self._previous)
        px_per_mm = camera.focal * 1e-3 / result.state.translation[2]
        if not np.isfinite(result.mean_px) or result.mean_px / px_per_mm > self.config.max_error_mm:
            self.reset()
            return TrackedFrame(self.absent_frame(stamp_ns), landmarks, result)
        self._previous = result.state
        return TrackedFrame(self._face_frame(result.state, stamp_ns), landmarks, result)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()

    # -- output -------------------------------------------------------------------------

    def _face_frame(self, state: HeadState, stamp_ns: int) -> FaceFrame:
        global_pose, translation = self.fitter.flame_pose(state)
        E = self.fitter.num_expression
        values = np.concatenate([state.expression, state.jaw, global_pose, translation])
        values = self._filter(values, stamp_ns / NS_PER_S)
        expression, jaw, global_pose, translation = np.split(values, [E, E + 3, E + 6])
        return FaceFrame(stamp_ns=stamp_ns, vertices=self.displacement(expression, jaw, global_pose),
                         face_present=True, is_displacement=True, expression=expression, jaw_pose=jaw,
                         global_pose=global_pose, neck_pose=np.zeros(3), eye_pose=np.zeros(6),
                         translation=translation, frame_id=self.config.frame_id)

    def displacement(self, expression: np.ndarray, jaw: np.ndarray, global_pose: np.ndarray | None = None) -> np.ndarray:
        """The posed face minus the user's neutral face (V x 3)."""
        model = self.flame
        rest = self._neutral + (model.exprdirs[:, :, :expression.size] @ expression.astype(np.float32))
        joints = self._joints_neutral + model.J_regressor @ (rest - self._neutral)
        poses = np.zeros((5, 3))
        poses[2] = jaw
        if self.config.head_pose_in_vertices and global_pose is not None:
            poses[0] = global_pose
        return lbs(rest, joints, rodrigues(poses), model.posedirs, model.weights, model.parents) - self._neutral

    def absent_frame(self, stamp_ns: int) -> FaceFrame:
        E = self.fitter.num_expression
        return FaceFrame(stamp_ns=stamp_ns, vertices=np.zeros((self.flame.num_vertices, 3)), face_present=False,
                         is_displacement=True, expression=np.zeros(E), jaw_pose=np.zeros(3),
                         global_pose=np.zeros(3), neck_pose=np.zeros(3), eye_pose=np.zeros(6),
                         translation=np.zeros(3), frame_id=self.config.frame_id)

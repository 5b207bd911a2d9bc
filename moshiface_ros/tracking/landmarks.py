"""MediaPipe's face mesh (legacy ``solutions.face_mesh`` of mediapipe 0.10.21, whose models
ship inside the wheel, so it runs offline): an RGB frame -> 478 landmarks in pixels.

Landmarks are (x, y) in pixels and z in the same pixel scale (MediaPipe's z times the image
width; smaller is nearer the camera). With ``refine_landmarks`` the last ten are the irises.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MoshifaceError

NUM_LANDMARKS = 478
NUM_MESH_LANDMARKS = 468  # without the iris points


@dataclass
class Landmarks:
    """One face's landmarks in an image of ``width`` x ``height`` pixels."""

    points: np.ndarray  # 478 x 3: x, y in pixels, z in pixel scale
    width: int
    height: int

    def box(self, margin: float = 0.1) -> tuple[int, int, int, int]:
        """(x_offset, y_offset, width, height) of the face, grown by ``margin``, clipped to the image."""
        lo, hi = self.points[:, :2].min(0), self.points[:, :2].max(0)
        pad = (hi - lo) * margin
        x0, y0 = np.maximum(lo - pad, 0).astype(int)
        x1, y1 = np.minimum(hi + pad, [self.width - 1, self.height - 1]).astype(int)
        return int(x0), int(y0), int(max(x1 - x0, 0)), int(max(y1 - y0, 0))


def _mediapipe_face_mesh():
    try:
        from mediapipe.python.solutions import face_mesh
    except ImportError as exc:
        raise MoshifaceError(
            f"face tracking needs mediapipe 0.10.21 (pip install 'mediapipe==0.10.21'): {exc}") from None
    return face_mesh


def check_frame(rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or min(frame.shape[:2]) < 16:
        raise MoshifaceError(f"a frame must be an H x W x 3 uint8 RGB image, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)


class FaceLandmarker:
    """One face's landmarks per frame; in video mode MediaPipe tracks between frames
    (much cheaper than detecting in every frame), in image mode every frame is detected."""

    def __init__(self, *, static_images: bool = False, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5) -> None:
        face_mesh = _mediapipe_face_mesh()
        self._mesh = face_mesh.FaceMesh(static_image_mode=static_images, max_num_faces=1,
                                        refine_landmarks=True,
                                        min_detection_confidence=min_detection_confidence,
                                        min_tracking_confidence=min_tracking_confidence)

    def __call__(self, rgb: np.ndarray) -> Landmarks | None:
        frame = check_frame(rgb)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        h, w = frame.shape[:2]
        points = np.array([(p.x * w, p.y * h, p.z * w) for p in result.multi_face_landmarks[0].landmark])
        if points.shape[0] != NUM_LANDMARKS:
            return None
        return Landmarks(points, w, h)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def landmark_groups() -> dict[str, np.ndarray]:
    """MediaPipe's named landmark groups (face oval, lips, eyes, irises, ...) as index arrays."""
    from mediapipe.python.solutions import face_mesh_connections as c

    groups = {"face_oval": c.FACEMESH_FACE_OVAL, "lips": c.FACEMESH_LIPS, "left_eye": c.FACEMESH_LEFT_EYE,
              "right_eye": c.FACEMESH_RIGHT_EYE, "left_eyebrow": c.FACEMESH_LEFT_EYEBROW,
              "right_eyebrow": c.FACEMESH_RIGHT_EYEBROW, "left_iris": c.FACEMESH_LEFT_IRIS,
              "right_iris": c.FACEMESH_RIGHT_IRIS, "nose": c.FACEMESH_NOSE}
    return {name: np.array(sorted({i for edge in edges for i in edge})) for name, edges in groups.items()}

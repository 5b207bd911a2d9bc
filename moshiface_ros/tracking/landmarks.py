"""MediaPipe's face mesh (legacy ``solutions.face_mesh`` of mediapipe 0.10.21, whose models
ship inside the wheel, so it runs offline): an RGB frame -> 478 landmarks in pixels.

Landmarks are (x, y) in pixels and z in the same pixel scale (MediaPipe's z times the image
width; smaller is nearer the camera). With ``refine_landmarks`` the last ten are the irises.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
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


# What MediaPipe's native code (TFLite, absl logging) writes straight to file descriptor 2
# while its graph starts and runs its first frames; none of it concerns the user, and neither
# GLOG_minloglevel nor TF_CPP_MIN_LOG_LEVEL silences mediapipe 0.10.21's absl logging.
NATIVE_CHATTER = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog"
    r"|[IW]\d{4} [\d:. ]+\s+\d+ \w+\.cc:\d+\])")
_STDERR_LOCK = threading.Lock()  # one redirect of fd 2 at a time: they would otherwise interleave


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Runs the body with fd 2 sent to a temporary file, then writes back every line of it
    that is not MediaPipe's start-up chatter (so an error from anywhere else still shows)."""
    with _STDERR_LOCK, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 at all (a daemon): nothing can reach a terminal anyway
            yield
            return
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not NATIVE_CHATTER.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


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
        with native_chatter_filtered():
            self._mesh = face_mesh.FaceMesh(static_image_mode=static_images, max_num_faces=1,
                                            refine_landmarks=True,
                                            min_detection_confidence=min_detection_confidence,
                                            min_tracking_confidence=min_tracking_confidence)
            # The graph opens its calculators on its own threads, which log as they do: one blank
            # frame waits for all of them while fd 2 is still redirected (it holds no face, so
            # tracking state is untouched).
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))
        self._quiet_until_face = True  # the landmark calculators log again on the first face they see

    def __call__(self, rgb: np.ndarray) -> Landmarks | None:
        frame = check_frame(rgb)
        if self._quiet_until_face:
            with native_chatter_filtered():
                result = self._mesh.process(frame)
            self._quiet_until_face = not result.multi_face_landmarks
        else:
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

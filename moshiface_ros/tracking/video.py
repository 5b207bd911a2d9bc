"""A face video -> one FaceFrame per 40 ms: what the embedded runner's ``--user-video`` uses.

The video's own frame rate is resampled to 25 fps by timestamp: output frame k (stamp
``start_ns + k * 40 ms``) shows the newest video frame whose time is not after k * 40 ms;
each video frame is tracked once, even if it serves several output frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import MoshifaceError
from ..flame.model import FlameModel
from ..messages.types import FaceFrame
from ..timing import FACE_FRAME_NS
from .camera import open_capture, read_rgb
from .embedding import LandmarkEmbedding
from .landmarks import FaceLandmarker
from .tracker import FaceTracker, TrackerConfig


def open_video(path: Path | str) -> tuple[object, float]:
    """(capture, fps) of a readable video with at least one frame, else a one-line MoshifaceError."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise MoshifaceError(f"the user video {path} does not exist")
    capture = open_capture(str(path))
    if read_rgb(capture) is None:
        capture.release()
        raise MoshifaceError(f"the user video {path} has no readable frame (not a video OpenCV can decode?)")
    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0
    return capture, fps


def track_video(path: Path | str, flame: FlameModel, embedding: LandmarkEmbedding, *, start_ns: int,
                fps: float = 25.0, frame_id: str = "user_camera",
                config: TrackerConfig | None = None) -> Iterator[FaceFrame]:
    """Yields one FaceFrame per 1/fps s of ``path`` (face-absent frames where no face is seen)."""
    if fps <= 0:
        raise MoshifaceError(f"fps must be positive, got {fps}")
    capture, video_fps = open_video(path)
    config = replace(config or TrackerConfig(), frame_id=frame_id)
    period_ns = int(round(1e9 / fps)) if fps != 25.0 else FACE_FRAME_NS
    landmarker = FaceLandmarker()
    tracker = FaceTracker(flame, embedding, config, landmarker)
    try:
        index, current = -1, None  # video frame index last read and its tracked frame
        k = 0
        while True:
            t = k * period_ns
            wanted = int(np.floor(t * video_fps / 1e9 + 1e-9))
            while index < wanted:
                rgb = read_rgb(capture)
                if rgb is None:
                    return
                index += 1
                if index == wanted:
                    current = tracker.process(rgb, start_ns + t).frame
            frame = current
            if frame.stamp_ns != start_ns + t:  # a video frame reused for a later output frame
                frame = FaceFrame(**{**frame.__dict__, "stamp_ns": start_ns + t})
            yield frame
            k += 1
    finally:
        capture.release()
        tracker.close()

"""The page's webcam, tracked to the user's face so the model sees who it talks to.

The page sends small JPEG frames; each is decoded and tracked by the same ``FaceTracker``
as the ``face_tracker`` node (the synthetic FLAME stand-in with VHAP's teeth, the face
codec's 5,143 vertices) into a ``FaceFrame`` stamped on the session's clock. The tracker is
built on the first frame (its landmark embedding takes seconds) and kept for later
sessions, reset for each. A frame's size is read from its header before it is decoded, so
a small file claiming a huge image is refused without allocating it.
"""

from __future__ import annotations

import struct

import numpy as np

from ..messages.types import FaceFrame
from .protocol import ProtocolError

MAX_SIDE = 1920  # pixels: a webcam frame for tracking needs far less
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header; a ``ProtocolError`` if there is none."""
    if data[:2] != b"\xff\xd8":
        raise ProtocolError("VIDEO frame is not a JPEG (no start-of-image marker)")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise ProtocolError("VIDEO frame is a damaged JPEG (a marker is missing)")
        marker, length = data[at + 1], struct.unpack_from(">H", data, at + 2)[0]
        if marker in _SOF and at + 9 <= len(data):
            height, width = struct.unpack_from(">HH", data, at + 5)
            return width, height
        at += 2 + length
    raise ProtocolError("VIDEO frame is a JPEG without a frame header")


def decode_jpeg(data: bytes) -> np.ndarray:
    """An RGB image (H x W x 3, uint8) from JPEG bytes, size-checked first."""
    import cv2

    width, height = jpeg_size(data)
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ProtocolError(f"VIDEO frame of {width} x {height} pixels: at most {MAX_SIDE} a side")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProtocolError("VIDEO frame is a JPEG that does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class WebcamTracker:
    """JPEG frames in, the user's face out; used from one thread at a time."""

    def __init__(self) -> None:
        self._tracker = None
        self.frames = 0

    def reset(self) -> None:
        """A new user: the identity calibration and the filters start over."""
        if self._tracker is not None:
            self._tracker.reset()

    def track(self, jpeg: bytes, stamp_ns: int) -> FaceFrame:
        rgb = decode_jpeg(jpeg)
        if self._tracker is None:
            from ..tracking.models import load_tracking_model
            from ..tracking.tracker import FaceTracker

            flame, embedding = load_tracking_model("synthetic", None, teeth=True)
            self._tracker = FaceTracker(flame, embedding)
        self.frames += 1
        return self._tracker.process(rgb, stamp_ns).frame

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None

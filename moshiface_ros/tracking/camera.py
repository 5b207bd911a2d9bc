"""Camera and video sources through OpenCV, and a live reader that survives losing them.

A source is a device index (``0``), a file path or URL (``face.mp4``, ``http://host/cam.mjpg``)
or a GStreamer pipeline (any string with ``!``; needs an OpenCV built with GStreamer).
``LiveCamera`` reads in a background thread, paces files at their own frame rate (OpenCV
reads files as fast as it can), keeps only the newest frame, and when the source fails it
reports it once, keeps trying to reopen it every ``reopen_interval_s`` and reports when it
is back. Nothing here raises once started: the state is in ``status`` and ``events``.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MoshifaceError


def parse_source(spec: str | int) -> tuple[str, str | int]:
    """("device", index) | ("gstreamer", pipeline) | ("file", path or URL)."""
    text = str(spec).strip()
    if not text:
        raise MoshifaceError("the camera source is empty: give a device index, a file path or a GStreamer pipeline")
    if text.isdigit():
        return "device", int(text)
    if "!" in text:
        return "gstreamer", text
    return "file", text


def _is_url(text: str) -> bool:
    return "://" in text


def open_capture(spec: str | int, width: int = 0, height: int = 0, fps: float = 0.0):
    """An opened ``cv2.VideoCapture``, or a one-line MoshifaceError naming the source."""
    import cv2

    kind, value = parse_source(spec)
    if kind == "file" and not _is_url(str(value)) and not Path(str(value)).is_file():
        raise MoshifaceError(f"the video {value} does not exist")
    if kind == "gstreamer":
        if not any(line.strip().startswith("GStreamer:") and "YES" in line
                   for line in cv2.getBuildInformation().splitlines()):
            raise MoshifaceError("this OpenCV has no GStreamer support: use a device index or a file, or "
                                 "install an OpenCV built with GStreamer")
        capture = cv2.VideoCapture(str(value), cv2.CAP_GSTREAMER)
    else:
        capture = cv2.VideoCapture(value)
    if kind == "device":
        if width > 0:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height > 0:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps > 0:
            capture.set(cv2.CAP_PROP_FPS, fps)
    if not capture.isOpened():
        capture.release()
        what = f"camera {value}" if kind == "device" else f"{value}"
        raise MoshifaceError(f"cannot open {what}: OpenCV could not read it as a camera or video")
    return capture


def read_rgb(capture) -> np.ndarray | None:
    import cv2

    ok, bgr = capture.read()
    if not ok or bgr is None or bgr.ndim != 3:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass
class CameraFrame:
    rgb: np.ndarray
    stamp_ns: int       # time the frame was read (time.time_ns clock)
    sequence: int


class LiveCamera:
    """The newest frame of a source, read in a background thread (see the module doc)."""

    def __init__(self, spec: str | int, *, width: int = 0, height: int = 0, fps: float = 0.0,
                 reopen_interval_s: float = 1.0, loop_file: bool = True) -> None:
        self.spec = str(spec)
        self.kind, _ = parse_source(spec)
        self.width, self.height, self.fps = width, height, fps
        self.reopen_interval_s = reopen_interval_s
        self.loop_file = loop_file
        self.events: queue.Queue[str] = queue.Queue()
        self.status = "starting"
        self.error = ""
        self._lock = threading.Lock()
        self._latest: CameraFrame | None = None
        self._sequence = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera {self.spec}", daemon=True)

    def start(self) -> LiveCamera:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> LiveCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def latest(self, after: int = 0) -> CameraFrame | None:
        """The newest frame if its sequence number is above ``after``."""
        with self._lock:
            frame = self._latest
        return frame if frame is not None and frame.sequence > after and self.status == "open" else None

    def _lost(self, message: str) -> None:
        if self.status != "lost":
            self.events.put(f"camera {self.spec} lost: {message}; retrying every {self.reopen_interval_s:g} s")
        self.status, self.error = "lost", message

    def _open(self):
        try:
            capture = open_capture(self.spec, self.width, self.height, self.fps)
        except MoshifaceError as exc:
            self._lost(str(exc))
            return None
        if self.status == "lost":
            self.events.put(f"camera {self.spec} is back")
        self.status, self.error = "open", ""
        return capture

    def _run(self) -> None:
        import cv2

        capture = None
        while not self._stop.is_set():
            if capture is None:
                capture = self._open()
                if capture is None:
                    self._stop.wait(self.reopen_interval_s)
                    continue
                period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 25.0) if self.kind == "file" else 0.0
                started, count = time.monotonic(), 0
            rgb = read_rgb(capture)
            if rgb is None and self.kind == "file" and self.loop_file and count > 0:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                started, count = time.monotonic(), 0
                rgb = read_rgb(capture)
            if rgb is None:
                capture.release()
                capture = None
                self._lost("no frame could be read" if self.kind != "file" or count else "it has no readable frame")
                self._stop.wait(self.reopen_interval_s)
                continue
            if period:  # files: present frames at their own rate
                delay = started + count * period - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            count += 1
            with self._lock:
                self._sequence += 1
                self._latest = CameraFrame(rgb, time.time_ns(), self._sequence)
        if capture is not None:
            capture.release()

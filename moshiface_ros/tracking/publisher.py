"""Which face frame to publish on each 40 ms tick: the face tracker node's decisions, without ROS.

The camera delivers frames at its own rate (or not at all, when it is lost); the node
publishes at a steady rate. On each tick :class:`FaceTickSource`:

* tracks the camera's newest frame when a new one arrived since the last tick;
* repeats the last tracked frame (restamped) while its camera frame is younger than
  ``max_frame_age_s``, so a 30 fps camera feeds a 25 Hz topic without holes;
* publishes a face-absent frame when the camera is lost (it keeps reopening itself), when
  no frame was tracked yet, or when the last camera frame is too old: never a stale face;
* forgets the motion (the tracker's warm start and filter) when the camera is lost;
* passes on what the camera says about itself (lost, back) for the node to log.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np

from ..errors import MoshifaceError
from ..messages.types import FaceFrame
from .camera import CameraFrame

NO_BOX = (0, 0, 0, 0)


class Camera(Protocol):
    events: queue.Queue[str]
    status: str

    def latest(self, after: int = 0) -> CameraFrame | None: ...


class Tracker(Protocol):
    def process(self, rgb: np.ndarray, stamp_ns: int): ...

    def reset(self) -> None: ...

    def absent_frame(self, stamp_ns: int) -> FaceFrame: ...


@dataclass
class Tick:
    """One tick's result: the frame and face box to publish (None: publish nothing this
    tick), the camera's news, and why a frame was skipped."""

    face: FaceFrame | None
    box: tuple[int, int, int, int] = NO_BOX
    events: list[tuple[bool, str]] | None = None  # (is a warning, text)
    skipped: str | None = None


@dataclass
class _Tracked:
    frame: FaceFrame
    box: tuple[int, int, int, int]
    camera_stamp_ns: int


class FaceTickSource:
    """The state between ticks: the last camera frame seen and the last tracked face."""

    def __init__(self, tracker: Tracker, camera: Camera, max_frame_age_s: float,
                 wall_clock: Callable[[], int] = time.time_ns) -> None:
        self.tracker = tracker
        self.camera = camera
        self.max_frame_age_s = float(max_frame_age_s)  # may change at run time
        self._wall_clock = wall_clock  # the camera stamps' clock
        self._sequence = 0
        self._last: _Tracked | None = None
        self.published = self.absent = self.skipped = 0

    def tick(self, now_ns: int) -> Tick:
        events = self._events()
        frame = self.camera.latest(self._sequence)
        if frame is not None:
            self._sequence = frame.sequence
            try:
                self._last = self._track(frame, now_ns)
            except MoshifaceError as exc:
                self.skipped += 1
                return Tick(None, events=events, skipped=f"frame {frame.sequence} skipped: {exc}")
        elif self.camera.status != "open":
            self.tracker.reset()
            self._last = None
        self.published += 1
        if self._last is None or self.camera.status != "open" or (frame is None and self._too_old()):
            self.absent += 1
            return Tick(self.tracker.absent_frame(now_ns), NO_BOX, events)
        return Tick(replace(self._last.frame, stamp_ns=now_ns), self._last.box, events)

    def _track(self, frame: CameraFrame, now_ns: int) -> _Tracked:
        tracked = self.tracker.process(frame.rgb, now_ns)
        present = tracked.frame.face_present and tracked.landmarks is not None
        box = tuple(int(v) for v in tracked.landmarks.box()) if present else NO_BOX
        return _Tracked(tracked.frame, box, frame.stamp_ns)

    def _too_old(self) -> bool:
        age_ns = self._wall_clock() - self._last.camera_stamp_ns
        return age_ns > self.max_frame_age_s * 1e9

    def _events(self) -> list[tuple[bool, str]]:
        events = []
        while True:
            try:
                message = self.camera.events.get_nowait()
            except queue.Empty:
                return events
            events.append(("lost" in message, message))

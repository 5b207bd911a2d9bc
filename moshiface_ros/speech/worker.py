"""The model's steps on their own thread, fed through a bounded queue.

A node's callbacks must return at once: while a subscription callback runs the model
(tens of milliseconds per step, seconds on a slow machine), the node answers nothing else,
not even a parameter request. ``StepWorker`` takes user audio chunks and face frames from
any thread (``push_audio``/``push_face`` only enqueue), steps the ``AudioStepper`` on its
own thread in arrival order, and hands each finished step to ``on_record`` together with
whether it was late (``StepMonitor``). The queue holds ``queue_seconds`` of user audio;
beyond that the oldest chunk is dropped, which the stepper hears as a gap in the chunks'
sequence numbers and fills with silence, so the robot's clock keeps pace with the user's.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from ..messages.types import AudioChunk, FaceFrame
from .step_monitor import StepMonitor
from .stepper import AudioStepper, StepRecord

RecordHandler = Callable[[StepRecord, bool], None]
ProblemHandler = Callable[[Exception], None]


class StepWorker:
    def __init__(self, stepper: AudioStepper, on_record: RecordHandler, monitor: StepMonitor | None = None,
                 queue_seconds: float = 4.0, clock: Callable[[], int] = time.monotonic_ns,
                 on_bad_face: ProblemHandler | None = None) -> None:
        self.stepper = stepper
        self.monitor = monitor or StepMonitor()
        self.queue_seconds = float(queue_seconds)
        self._on_record = on_record
        self._on_bad_face = on_bad_face
        self._clock = clock
        self._items: deque[tuple[str, object, int]] = deque()
        self._queued_s = 0.0
        self._wake = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="model steps", daemon=True)
        self._thread.start()

    # -- any thread ---------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk) -> None:
        with self._wake:
            self._items.append(("audio", chunk, self._clock()))
            self._queued_s += chunk.frames / chunk.sample_rate
            while self._queued_s > self.queue_seconds:
                self._drop_oldest_audio()
            self._wake.notify()

    def push_face(self, frame: FaceFrame) -> None:
        with self._wake:
            self._items.append(("face", frame, self._clock()))
            self._wake.notify()

    def queued_seconds(self) -> float:
        with self._wake:
            return self._queued_s

    def idle(self) -> bool:
        """Nothing waiting and no step running."""
        with self._wake:
            return not self._items and not self._busy

    def stop(self, timeout: float = 10.0) -> None:
        """Lets the step in progress finish, drops what waits, ends the thread (idempotent)."""
        with self._wake:
            self._stopping = True
            self._items.clear()
            self._wake.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- the worker thread -------------------------------------------------------------

    def _drop_oldest_audio(self) -> None:
        for i, (kind, item, _) in enumerate(self._items):
            if kind == "audio":
                del self._items[i]
                seconds = item.frames / item.sample_rate
                self._queued_s -= seconds
                self.monitor.drop(seconds)
                return

    def _next(self) -> tuple[str, object, int] | None:
        with self._wake:
            while not self._items and not self._stopping:
                self._wake.wait()
            if self._stopping:
                return None
            kind, item, arrived = self._items.popleft()
            if kind == "audio":
                self._queued_s -= item.frames / item.sample_rate
            self._busy = True
            return kind, item, arrived

    def _run(self) -> None:
        while True:
            entry = self._next()
            if entry is None:
                return
            kind, item, arrived = entry
            try:
                if kind == "face":
                    self._push_face(item)
                else:
                    for record in self.stepper.push(item):
                        late = self.monitor.record(arrived, self._clock(), record.model_seconds)
                        self._on_record(record, late)
            finally:
                with self._wake:
                    self._busy = False

    def _push_face(self, frame: FaceFrame) -> None:
        try:
            self.stepper.push_user_face(frame)
        except ValueError as exc:  # a frame the face path cannot use (e.g. another topology)
            if self._on_bad_face is None:
                raise
            self._on_bad_face(exc)

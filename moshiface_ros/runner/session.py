"""The stepping loop: user input in, each step's results handed to the sinks.

The session feeds the user's face frames to the conversation as a camera would have
delivered them by the time each audio chunk arrives (and hands them to the sinks), pushes
the chunk, and gives every step the chunk completes to each sink in order. It times the
model and everything around it, and stops at a step boundary when asked to.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from ..constants import STEP_NS
from ..messages.types import AudioChunk, FaceFrame
from ..speech.stepper import AudioStepper, StepRecord
from .sinks import Sink
from .summary import StepStats



class Session:
    """Steps a conversation over user chunks and hands every step to its sinks."""

    def __init__(self, stepper: AudioStepper, sinks: list[Sink], start_ns: int,
                 user_face: Iterator[FaceFrame] | None = None, steps: int | None = None) -> None:
        self.stepper = stepper
        self.sinks = sinks
        self.stats = StepStats(start_ns)
        self._user_face = user_face if stepper.has_face else None
        self._next_face: FaceFrame | None = next(self._user_face, None) if self._user_face is not None else None
        self._audio_end_ns = start_ns  # end of the user audio pushed so far
        # a recording's last step ends here: no face frame after it is fed or recorded
        self._end_ns = start_ns + steps * STEP_NS if steps is not None else None

    def _feed_user_face(self, until_ns: int) -> None:
        """User face frames stamped before ``until_ns`` go to the conversation (as a camera
        would have delivered them by then) and to the sinks."""
        while self._next_face is not None and self._next_face.stamp_ns < until_ns:
            self.stepper.push_user_face(self._next_face)
            for sink in self.sinks:
                sink.user_face(self._next_face)
            self._next_face = next(self._user_face, None)

    def _last_step_end(self) -> int:
        """Where the last step ends once the input is over (its partial step is padded):
        face frames after it belong to no step and are neither fed nor recorded."""
        elapsed = self._audio_end_ns - self.stats.start_ns
        return self.stats.start_ns + -(-elapsed // STEP_NS) * STEP_NS

    def push(self, chunk: AudioChunk | None) -> list[StepRecord]:
        """One incoming chunk (None: end of input) -> the steps it completes, handed on."""
        start, start_cpu = time.perf_counter(), time.thread_time()
        if chunk is not None:
            self._audio_end_ns = max(self._audio_end_ns, chunk.stamp_ns + chunk.duration_ns)
        if self._user_face is not None:
            until = chunk.stamp_ns + chunk.duration_ns + STEP_NS if chunk else self._last_step_end()
            self._feed_user_face(until if self._end_ns is None else min(until, self._end_ns))
        records = self.stepper.push(chunk) if chunk is not None else self.stepper.flush()
        for record in records:
            for sink in self.sinks:
                sink.step(record)
        self.stats.add(records, time.perf_counter() - start, time.thread_time() - start_cpu)
        return records

    def run(self, chunks: Iterable[AudioChunk | None], stop: Callable[[], bool]) -> None:
        """Pushes every chunk until the input ends or ``stop()`` says so (checked before each)."""
        wall = time.perf_counter()
        try:
            for chunk in chunks:
                if stop():
                    break
                self.push(chunk)
        finally:
            for sink in self.sinks:
                sink.end()
            self.stats.wall_s = time.perf_counter() - wall

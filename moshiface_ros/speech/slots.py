"""Several robots, one batched model: each robot's ``AudioStepper`` drives a ``SlotEngine``.

A robot's conversation keeps everything it has alone (its ``AudioStepper`` frames and stamps
its audio, its ``FacePath`` encodes and decodes its face, its worker thread steps it); only
the model call is shared. ``SlotEngine.step`` hands the step to a ``SlotScheduler`` and
waits: the first robot to ask waits up to ``gather_s`` for the other robots' steps of the
same 80 ms, then runs them all as one ``BatchedEngine`` step (robots with nothing to say
this step are masked) and hands each robot its own output. With one robot this is one
slot of a batch of one.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .batch import BatchedEngine
from .engine import StepOutput

__all__ = ["SlotEngine", "SlotScheduler"]


class SlotScheduler:
    """Gathers the steps robots ask for and runs each gathering as one batched step."""

    def __init__(self, engine: BatchedEngine, gather_s: float = 0.02) -> None:
        self.engine = engine
        self.gather_s = gather_s
        self._lock = threading.Condition()
        self._requests: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._results: dict[int, StepOutput | BaseException] = {}
        self._running = False
        self._in_use: set[int] = set()

    def slot(self, index: int) -> "SlotEngine":
        """The engine of one robot's conversation (one slot, used by one thread at a time)."""
        with self._lock:
            if index in self._in_use or not 0 <= index < self.engine.slots:
                raise ValueError(f"slot {index} is taken or outside 0..{self.engine.slots - 1}")
            self._in_use.add(index)
        return SlotEngine(self, index)

    def release(self, index: int) -> None:
        """The robot left: its slot starts a new conversation when used again."""
        with self._lock:
            while self._running:
                self._lock.wait()
            self._in_use.discard(index)
            self.engine.reset(index)

    def reset(self, index: int) -> None:
        with self._lock:
            while self._running:
                self._lock.wait()
            self.engine.reset(index)

    def step(self, index: int, pcm: np.ndarray, face: np.ndarray | None) -> StepOutput:
        """One robot's step; blocks until the batch it joined has run."""
        with self._lock:
            self._requests[index] = (pcm, face)
            self._lock.notify_all()
            deadline = time.monotonic() + self.gather_s
            while index not in self._results:
                everyone = len(self._requests) >= len(self._in_use)
                if not self._running and index in self._requests and (everyone or time.monotonic() >= deadline):
                    batch, self._requests, self._running = self._requests, {}, True
                    break
                self._lock.wait(timeout=max(deadline - time.monotonic(), 0.001))
            else:
                return self._take(index)
        self._run(batch)
        with self._lock:
            return self._take(index)

    def _run(self, batch: dict[int, tuple[np.ndarray, np.ndarray | None]]) -> None:
        try:
            outputs: dict[int, StepOutput] | BaseException = self.engine.step(
                {s: pcm for s, (pcm, _) in batch.items()}, {s: face for s, (_, face) in batch.items()})
        except BaseException as exc:  # every robot of this batch hears of it
            outputs = exc
        with self._lock:
            for slot in batch:
                self._results[slot] = outputs if isinstance(outputs, BaseException) else outputs[slot]
            self._running = False
            self._lock.notify_all()

    def _take(self, index: int) -> StepOutput:
        result = self._results.pop(index)
        if isinstance(result, BaseException):
            raise result
        return result


class SlotEngine:
    """What an ``AudioStepper`` needs of an engine, for one slot of a shared batched model."""

    def __init__(self, scheduler: SlotScheduler, index: int) -> None:
        self.scheduler = scheduler
        self.index = index
        batched = scheduler.engine
        self.models, self.device, self.has_face = batched.models, batched.device, batched.has_face

    @property
    def steps(self) -> int:
        return self.scheduler.engine.steps[self.index]

    def step(self, pcm: np.ndarray, user_face_tokens: np.ndarray | None = None) -> StepOutput:
        return self.scheduler.step(self.index, pcm, user_face_tokens)

    def reset(self) -> None:
        self.scheduler.reset(self.index)

    def close(self) -> None:
        self.scheduler.release(self.index)

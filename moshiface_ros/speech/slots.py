"""Several robots, one batched model: each robot's ``AudioStepper`` drives a ``SlotEngine``.

A robot's conversation keeps its own clock and buffers (its ``AudioStepper`` frames and stamps
its audio, its ``FacePath`` picks its user's face frames and makes its messages, its worker
thread steps it); the model and the face codec are shared: each step of the batch encodes
every robot's user face, runs the model and decodes every robot's face in one pass each
(``face_codec.shared.SharedFaceCodec``). ``SlotEngine.step`` hands the step to a ``SlotScheduler`` and
waits: the first robot to ask waits up to ``gather_s`` for the other robots' steps of the
same 80 ms, then runs them all as one ``BatchedEngine`` step (robots with nothing to say
this step are masked) and hands each robot its own output. A robot that has asked for
nothing for ``idle_s`` (two steps) is not waited for: a silent robot costs the talking
ones no latency, and it joins the next batch when it talks again. With one robot this is one
slot of a batch of one. ``build_robot_steppers`` builds the whole set for a list of robot
names (the multi-robot conversation node calls it).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..constants import NS_PER_S, STEP_NS
from ..face_codec.shared import SharedFaceCodec
from .batch import BatchedEngine
from .engine import StepOutput
from .stepper import AudioStepper

if TYPE_CHECKING:
    from .models import SpeechModels
    from .session import SessionOptions

__all__ = ["SlotEngine", "SlotScheduler", "build_robot_steppers", "step_with_codec"]


class SlotScheduler:
    """Gathers the steps robots ask for and runs each gathering as one batched step.

    With a ``codec`` (one per engine slot), a robot asks with its user's face frames (or
    None) instead of tokens, and its ``StepOutput`` comes back with the user's face tokens
    and the robot's decoded frames filled in.
    """

    def __init__(self, engine: BatchedEngine, gather_s: float = 0.02, idle_s: float = 2 * STEP_NS / NS_PER_S,
                 codec: SharedFaceCodec | None = None) -> None:
        if codec is not None and codec.slots != engine.slots:
            raise ValueError(f"the shared codec has {codec.slots} slots, the engine {engine.slots}")
        self.engine = engine
        self.codec = codec
        self.gather_s = gather_s
        self.idle_s = idle_s
        self._asked: dict[int, float] = {}  # slot -> when it last asked (or was taken)
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
            self._asked[index] = time.monotonic()
        return SlotEngine(self, index)

    def _everyone(self, now: float) -> bool:
        """Whether every robot that is talking (asked within ``idle_s``) has asked."""
        return all(slot in self._requests for slot in self._in_use if now - self._asked[slot] < self.idle_s)

    def release(self, index: int) -> None:
        """The robot left: its slot starts a new conversation when used again."""
        with self._lock:
            while self._running:
                self._lock.wait()
            self._in_use.discard(index)
            self._reset(index)

    def reset(self, index: int) -> None:
        with self._lock:
            while self._running:
                self._lock.wait()
            self._reset(index)

    def _reset(self, index: int) -> None:
        self.engine.reset(index)
        if self.codec is not None:
            self.codec.reset(index)

    def close(self) -> None:
        """Ends the engine's and the shared codec's streaming state."""
        if self.codec is not None:
            self.codec.close()
        self.engine.close()

    def step(self, index: int, pcm: np.ndarray, face: np.ndarray | None) -> StepOutput:
        """One robot's step; blocks until the batch it joined has run."""
        with self._lock:
            self._requests[index] = (pcm, face)
            self._asked[index] = time.monotonic()
            self._lock.notify_all()
            deadline = time.monotonic() + self.gather_s
            while index not in self._results:
                now = time.monotonic()
                if not self._running and index in self._requests and (self._everyone(now) or now >= deadline):
                    batch, self._requests, self._running = self._requests, {}, True
                    break
                self._lock.wait(timeout=max(deadline - time.monotonic(), 0.001))
            else:
                return self._take(index)
        self._run(batch)
        with self._lock:
            return self._take(index)

    def _run(self, batch: dict[int, tuple[np.ndarray, np.ndarray | None]]) -> None:
        pcm, faces = {s: p for s, (p, _) in batch.items()}, {s: f for s, (_, f) in batch.items()}
        outputs: dict[int, StepOutput] | BaseException
        try:
            if self.codec is None:
                outputs = self.engine.step(pcm, faces)
            else:
                outputs = step_with_codec(self.engine, self.codec, pcm, faces)
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


def step_with_codec(engine: BatchedEngine, codec: SharedFaceCodec, pcm: Mapping[int, np.ndarray],
                    faces: Mapping[int, np.ndarray | None]) -> dict[int, StepOutput]:
    """One step of the slots in ``pcm``, faces included: every slot's user face frames (or
    None) encoded in one codec pass, the model's batched step, every robot's face decoded in
    one pass; each ``StepOutput`` carries its slot's user face tokens and face frames."""
    user_tokens = codec.encode({slot: faces.get(slot) for slot in pcm})
    outputs = engine.step(pcm, user_tokens)
    frames = codec.decode({s: out.face_tokens for s, out in outputs.items() if out.face_tokens is not None})
    for slot, out in outputs.items():
        out.user_face_tokens, out.robot_face_frames = user_tokens[slot], frames.get(slot)
    return outputs


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

    def step(self, pcm: np.ndarray, user_face: np.ndarray | None = None) -> StepOutput:
        """``user_face``: the user's face tokens, or with a shared codec its (r, V, 3) frames."""
        return self.scheduler.step(self.index, pcm, user_face)

    def reset(self) -> None:
        self.scheduler.reset(self.index)

    def close(self) -> None:
        self.scheduler.release(self.index)


def build_robot_steppers(options: SessionOptions, models: SpeechModels,
                         robots: Sequence[str]) -> tuple[SlotScheduler, list[AudioStepper]]:
    """One batched engine over ``models`` with a slot per robot, one face codec shared by
    every robot, and each robot's own ``AudioStepper`` (its clock, its framer, its face
    frames) on its slot. A robot's frames are prefixed with its name (``a/robot_head``), as
    a multi-robot TF tree names them. Close with ``scheduler.close()`` after the steppers.
    """
    from ..face_codec.stream import FacePath, load_face_codec

    engine = BatchedEngine(models, len(robots), options.sampling, options.seed, options.cuda_graphs)
    steppers: list[AudioStepper] = []
    shared = None
    try:
        if engine.has_face:
            shared = SharedFaceCodec(load_face_codec(options.codec, engine.device), len(robots))
        scheduler = SlotScheduler(engine, codec=shared)
        for index, robot in enumerate(robots):
            face = None if shared is None else FacePath(shared.codec, f"{robot}/{options.frame_id}",
                                                        f"{robot}/user_camera", shared=True)
            steppers.append(AudioStepper(scheduler.slot(index), f"{robot}/{options.frame_id}",
                                         f"{robot}/{options.user_frame_id}", face))
    except BaseException:
        for stepper in steppers:
            stepper.close()
        if shared is not None:
            shared.close()
        engine.close()
        raise
    return scheduler, steppers

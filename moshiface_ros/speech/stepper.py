"""User audio as it arrives (chunks of any rate and size, possibly with gaps) -> model steps.

Both the embedded runner and the ROS node feed ``AudioChunk``s here. The stepper frames
them into the model's steps (``FRAME_SIZE`` samples, 80 ms), runs the engine, and stamps everything on one
clock: a step's stamp is the time of its first user sample (the first chunk's stamp plus
the audio that came before it), and the robot's audio and text for that step carry the
same stamp, so playback and the face can present them together after one shared delay.

With a ``FacePath`` (a Moshi-Face model and a face codec), each step also encodes the
user's face frames pushed so far into the user's face tokens and decodes the robot's face
tokens into two face frames with the step's stamp (see ``face_codec/stream.py``). When
several robots share one batched model (``speech/slots.py``) their face codec is shared too:
the step hands the engine the user's frames, and the batch encodes and decodes them with the
other robots' (``model_seconds`` then includes the codec).

A dropped chunk (a gap in ``sequence``) is replaced by silence of the same length, so the
model's clock keeps pace with the wall clock; a stream that restarts (sequence going back)
or changes rate or channel count starts a new framer anchored at the new chunk's stamp.
A publisher that leaves ``sequence`` constant (0, say) is not restarting on every chunk:
the first repeat is reported once (a log warning, ``unsequenced``) and from then on the
stream is taken as continuous. A chunk outside the supported rates (8-192 kHz) or holding
more than 10 s of sound is refused with a ``ValueError``, so one chunk never makes one
call run an unbounded number of model steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..audio.framer import AudioFramer
from ..face_codec.stream import FacePath
from ..constants import FRAME_SIZE, NS_PER_S, SAMPLE_RATE, STEP_NS
from ..messages.checks import check_audio_format
from ..messages.types import AudioChunk, DialogueText, FaceFrame, FaceTokens
from .engine import SpeechEngine, StepOutput

__all__ = ["MAX_GAP_FILL_S", "STEP_NS", "AudioStepper", "StepRecord"]

MAX_GAP_FILL_S = 2.0  # longer gaps are treated as a restart, not filled with silence
_log = logging.getLogger(__name__)


@dataclass
class StepRecord:
    """Everything one step consumed and produced, stamped."""

    user: AudioChunk
    robot: AudioChunk
    text: DialogueText | None
    model_seconds: float  # time spent in the engine's step
    user_face_tokens: FaceTokens | None = None  # None: no face path, or the user's face unseen
    robot_face_tokens: FaceTokens | None = None  # None: no face path, or the model warming up
    robot_face: list[FaceFrame] | None = None  # the step's 2 frames (25 fps), with a face path
    model_cpu_seconds: float = 0.0  # the calling thread's CPU time in the engine's step


class AudioStepper:
    """Feeds a user audio stream to a ``SpeechEngine`` one 80 ms step at a time."""

    def __init__(self, engine: SpeechEngine, frame_id: str = "robot_head",
                 user_frame_id: str = "user_microphone", face: FacePath | None = None) -> None:
        self.engine = engine
        self.face = face
        self.frame_id = frame_id
        self.user_frame_id = user_frame_id
        self.filled_chunks = 0  # chunks missing from the input, replaced by silence
        self.restarts = 0
        self.unsequenced = False  # the publisher's sequence numbers stopped counting: ignored
        self._framer: AudioFramer | None = None
        self._format: tuple[int, int] | None = None
        self._last_sequence: int | None = None
        self._anchor_ns = 0
        self._emitted = 0  # 24 kHz samples emitted since the anchor

    @property
    def has_face(self) -> bool:
        """Whether this conversation has a face path (a Moshi-Face model)."""
        return self.face is not None

    def push_user_face(self, frame: FaceFrame) -> None:
        """One user face frame for the face path (as a camera delivers it); a bad frame
        is a ``ValueError`` naming the problem. Without a face path it is ignored."""
        if self.face is not None:
            self.face.push_user(frame)

    @property
    def face_vertices(self) -> int | None:
        """The vertex count the face path takes and gives (None without one)."""
        return self.face.vertices if self.face is not None else None

    def face_stats(self) -> dict[str, int] | None:
        """The face path's figures for a summary (None without one)."""
        if self.face is None:
            return None
        return {"vertices": self.face.vertices, "user_steps_with_face": self.face.user_steps_with_face}

    def close(self) -> None:
        """Releases the face path's and the engine's streaming state."""
        if self.face is not None:
            self.face.close()
        self.engine.close()

    def __enter__(self) -> "AudioStepper":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(self, chunk: AudioChunk) -> list[StepRecord]:
        """Takes one incoming chunk; returns the steps it completed (often 0 or 1). A chunk
        at an unsupported rate or longer than 10 s is a ``ValueError`` naming the problem."""
        check_audio_format(chunk.sample_rate, chunk.channels, chunk.frames)
        if not np.isfinite(chunk.samples).all():
            raise ValueError("AudioChunk.samples contains NaN or infinite values")
        self._check_sequence(chunk)
        records: list[StepRecord] = []
        if self._needs_new_stream(chunk):
            records += self.flush()
            self._start_stream(chunk)
        else:
            records += self._fill_gap(chunk)
        self._last_sequence = chunk.sequence
        for pcm in self._framer.push(_frames(chunk)):
            records.append(self._step(pcm))
        return records

    def flush(self) -> list[StepRecord]:
        """Ends the current stream: the last partial step is padded with silence."""
        if self._framer is None:
            return []
        records = [self._step(pcm) for pcm in self._framer.flush()]
        self._framer = None
        self._format = None
        self._last_sequence = None
        return records

    def _check_sequence(self, chunk: AudioChunk) -> None:
        """A repeated sequence number on a continuing stream means the publisher does not
        number its chunks: warn once and stop reading gaps and restarts from it."""
        if (not self.unsequenced and self._framer is not None and self._last_sequence is not None
                and chunk.sequence == self._last_sequence
                and self._format == (chunk.sample_rate, chunk.channels)):
            self.unsequenced = True
            _log.warning("user audio chunks repeat sequence number %d: the publisher does not number "
                         "its chunks, so gaps and restarts cannot be detected; treating the stream as "
                         "continuous", chunk.sequence)

    def _needs_new_stream(self, chunk: AudioChunk) -> bool:
        if self._framer is None or self._format != (chunk.sample_rate, chunk.channels):
            return True
        if self.unsequenced:
            return False
        if self._last_sequence is not None and chunk.sequence <= self._last_sequence:
            return True  # the publisher restarted
        missing_s = (chunk.sequence - self._last_sequence - 1) * chunk.frames / chunk.sample_rate
        return missing_s > MAX_GAP_FILL_S

    def _start_stream(self, chunk: AudioChunk) -> None:
        if self._framer is not None or self.engine.steps:
            self.restarts += 1
        self._format = (chunk.sample_rate, chunk.channels)
        self._framer = AudioFramer(chunk.sample_rate, chunk.channels, SAMPLE_RATE, FRAME_SIZE)
        self._anchor_ns = chunk.stamp_ns
        self._emitted = 0

    def _fill_gap(self, chunk: AudioChunk) -> list[StepRecord]:
        missing = chunk.sequence - self._last_sequence - 1
        if missing <= 0 or self.unsequenced:
            return []
        self.filled_chunks += missing
        silence = np.zeros((missing * chunk.frames, chunk.channels), np.float32)
        return [self._step(pcm) for pcm in self._framer.push(silence)]

    def _step(self, pcm: np.ndarray) -> StepRecord:
        stamp = self._anchor_ns + self._emitted * NS_PER_S // SAMPLE_RATE
        self._emitted += FRAME_SIZE
        index = self.engine.steps
        user_face, robot_tokens, robot_face = None, None, None
        if self.face is None:
            out, seconds = _timed(self.engine.step, pcm, None)
        elif self.face.shared:  # the batch encodes and decodes every robot's face at once
            out, seconds = _timed(self.engine.step, pcm, self.face.step_frames(stamp))
            user_face = self.face.user_message(index, stamp, out.user_face_tokens)
            robot_tokens, robot_face = self.face.robot_messages(index, stamp, out.face_tokens, out.robot_face_frames)
        else:
            user_face = self.face.user_tokens(index, stamp)
            tokens = None if user_face is None else user_face.tokens.astype(np.int64)
            out, seconds = _timed(self.engine.step, pcm, tokens)
            robot_tokens, robot_face = self.face.robot_frames(index, stamp, out.face_tokens)
        text = None
        if out.text_piece is not None:
            text = DialogueText(stamp, index, int(out.text_token), out.text_piece, self.frame_id)
        return StepRecord(
            user=AudioChunk(stamp, SAMPLE_RATE, pcm, sequence=index, frame_id=self.user_frame_id),
            robot=AudioChunk(stamp, SAMPLE_RATE, out.pcm, sequence=index, frame_id=self.frame_id),
            text=text,
            model_seconds=seconds[0],
            user_face_tokens=user_face,
            robot_face_tokens=robot_tokens,
            robot_face=robot_face,
            model_cpu_seconds=seconds[1],
        )


def _timed(step: Callable[..., StepOutput], *args: object) -> tuple[StepOutput, tuple[float, float]]:
    """The engine's step and its (wall, calling thread's CPU) seconds."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    out = step(*args)
    return out, (time.perf_counter() - start, time.thread_time() - start_cpu)


def _frames(chunk: AudioChunk) -> np.ndarray:
    return np.asarray(chunk.samples, np.float32).reshape(-1, chunk.channels)

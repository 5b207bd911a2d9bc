"""Where the user comes from: a recording (a WAV file, optionally with a face) or live devices.

An input yields the user's audio as a capture device delivers it (stamped ``AudioChunk``s at
the source's own rate; ``None`` ends a recording, so its last partial step is padded and
stepped) and, when it has one, the user's face as 25 fps ``FaceFrame``s on the same clock.
Both are stamped from the ``start_ns`` the session gives them. A live input also owns the
speaker: it hands the session a sink that plays each robot step.

Reading and checking the user's files happens when the input is made, before the session
creates anything, so a bad file leaves nothing behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterator

import numpy as np

from ..audio.wav import read_wav
from ..constants import FACE_FRAME_NS, FRAME_SIZE, NS_PER_S, SAMPLE_RATE
from ..errors import MoshifaceError
from ..messages.types import AudioChunk, FaceFrame
from .config import RunConfig
from .sinks import Sink, SpeakerSink

# Makes the user's face frames once the session's start is known (None: no face).
FaceSource = Callable[[int], Iterator[FaceFrame]]


def user_chunks(samples: np.ndarray, rate: int, start_ns: int, frame_id: str) -> Iterator[AudioChunk]:
    """The file as a capture device would deliver it: 80 ms blocks at its own rate,
    numbered and stamped with the time of their first sample."""
    block = max(1, rate * FRAME_SIZE // SAMPLE_RATE)
    for index, first in enumerate(range(0, len(samples), block)):
        frames = samples[first:first + block]
        yield AudioChunk(start_ns + first * NS_PER_S // rate, rate, frames,
                         channels=frames.shape[1], sequence=index, frame_id=frame_id)


def read_user_face(path: Path) -> np.ndarray:
    """A user face motion file: (frames, V, 3) float displacements at 25 fps."""
    try:
        motion = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MoshifaceError(f"cannot read the user face motion {path}: {exc}") from exc
    if motion.ndim != 3 or motion.shape[2] != 3 or not np.issubdtype(motion.dtype, np.floating):
        raise MoshifaceError(f"{path}: user face motion must be (frames, vertices, 3) floats, "
                             f"got {motion.shape} {motion.dtype}")
    if not np.isfinite(motion).all():
        raise MoshifaceError(f"{path}: user face motion contains NaN or infinite values")
    return motion.astype(np.float32)


def user_face_frames(motion: np.ndarray, start_ns: int, frame_id: str = "user_camera") -> Iterator[FaceFrame]:
    for index, vertices in enumerate(motion):
        yield FaceFrame(start_ns + index * FACE_FRAME_NS, vertices, frame_id=frame_id)


class FileInput:
    """A recorded user: the WAV cut into 80 ms blocks, and the face from motion or video."""

    live_stats: dict[str, Any] | None = None

    def __init__(self, path: Path, samples: np.ndarray, rate: int, frame_id: str,
                 face: FaceSource | None = None, face_vertices: int | None = None) -> None:
        self.description = str(path)
        self.sample_rate = rate
        self.channels = int(samples.shape[1])
        self.face_vertices = face_vertices  # None: no user face
        self.expected_steps: int | None = int(np.ceil(len(samples) * SAMPLE_RATE / rate / FRAME_SIZE))
        self._samples = samples
        self._frame_id = frame_id
        self._face = face

    def __enter__(self) -> FileInput:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def chunks(self, start_ns: int) -> Iterator[AudioChunk | None]:
        """The file's blocks, then None: the end of the input."""
        yield from user_chunks(self._samples, self.sample_rate, start_ns, self._frame_id)
        yield None

    def faces(self, start_ns: int) -> Iterator[FaceFrame] | None:
        return self._face(start_ns) if self._face is not None else None

    def sinks(self) -> list[Sink]:
        return []


class LiveInput:
    """The microphone (and the speaker the robot answers on), until ``duration_s`` or a signal."""

    description = "live"
    sample_rate = SAMPLE_RATE
    channels = 1
    face_vertices = None  # live faces come from the face_tracker node, not from the runner
    expected_steps = None

    def __init__(self, config: RunConfig) -> None:
        self._config = config
        self._audio: Any = None  # audio.live.LiveAudio while open
        self.live_stats: dict[str, Any] | None = None

    def __enter__(self) -> LiveInput:
        from ..audio.live import LiveAudio

        config = self._config
        self._audio = LiveAudio(_device(config.input_device), _device(config.output_device),
                                echo_cancel=config.echo_cancel, presentation_delay_ms=config.presentation_delay_ms,
                                frame_id=config.session.user_frame_id).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.live_stats = self._audio.stats()
        self._audio.stop()

    def chunks(self, start_ns: int) -> Iterator[AudioChunk]:
        """Microphone chunks as they arrive; stops at ``duration_s`` after the first is asked for."""
        duration_s = self._config.duration_s
        end_ns = None if duration_s is None else time.time_ns() + int(duration_s * NS_PER_S)
        for chunk in self._audio.chunks():
            if end_ns is not None and chunk.stamp_ns >= end_ns:
                return
            yield chunk

    def faces(self, start_ns: int) -> None:
        return None

    def sinks(self) -> list[Sink]:
        """The speaker: each step's robot audio at its stamp + the presentation delay."""
        return [SpeakerSink(self._audio.play)]


UserInput = FileInput | LiveInput


def open_user_input(config: RunConfig) -> UserInput:
    """The user of ``config``; a recorded one is read and checked now."""
    if config.live:
        return LiveInput(config)
    samples, rate = read_wav(config.user_audio)  # validates before anything is created
    face: FaceSource | None = None
    vertices = None
    if config.user_face is not None:
        motion = read_user_face(config.user_face)
        face, vertices = (lambda start_ns: user_face_frames(motion, start_ns)), motion.shape[1]
    elif config.user_video is not None:
        flame, embedding = _tracking_model(config)
        face, vertices = _video_faces(config.user_video, flame, embedding), flame.num_vertices
    return FileInput(config.user_audio, samples, rate, config.session.user_frame_id, face, vertices)


def _tracking_model(config: RunConfig) -> tuple[Any, Any]:
    """The FLAME model (with VHAP's teeth: the codec's 5,143 vertices) and landmark embedding."""
    from ..tracking.models import load_tracking_model

    if not config.user_video.is_file():
        raise MoshifaceError(f"the user video {config.user_video} does not exist")
    return load_tracking_model(config.flame, config.embedding, teeth=True)


def _video_faces(video: Path, flame: Any, embedding: Any) -> FaceSource:
    def frames(start_ns: int) -> Iterator[FaceFrame]:
        from ..tracking.video import track_video

        return track_video(video, flame, embedding, start_ns=start_ns)

    return frames


def _device(name: str | None) -> str | int | None:
    """A device number given as text means that number."""
    return int(name) if name is not None and name.isdigit() else name

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

from pathlib import Path
from tokenize import TokenError
from types import TracebackType
from typing import Any, Callable, Iterator

import numpy as np

from ..audio.wav import read_wav
from ..constants import FACE_FRAME_NS, FRAME_SIZE, NS_PER_S, SAMPLE_RATE
from ..errors import MoshifaceError
from ..messages.checks import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ..messages.types import AudioChunk, FaceFrame
from .config import RunConfig
from .sinks import LiveReportSink, Sink, SpeakerSink

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


NPY_MAGIC = b"\x93NUMPY"
# What numpy raises on a damaged header or data (the header is parsed as Python literals).
NPY_ERRORS = (ValueError, SyntaxError, TokenError, TypeError, EOFError, MemoryError, OverflowError)
FINITE_CHECK_FRAMES = 256  # frames checked at a time: memory stays small for any file


def read_user_face(path: Path) -> np.ndarray:
    """A user face motion file: (frames, V, 3) float displacements at 25 fps, memory-mapped
    (a long recording is hundreds of MB: it is read frame by frame, never copied whole)."""
    try:
        with open(path, "rb") as file:
            magic = file.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            raise MoshifaceError(f"{path} is not a .npy file (it does not start with the NumPy header); "
                                 "save the motion with numpy.save")
        motion = np.load(path, mmap_mode="r", allow_pickle=False)
    except OSError as exc:
        raise MoshifaceError(f"cannot read the user face motion {path}: {exc.strerror or exc}") from exc
    except NPY_ERRORS as exc:
        raise MoshifaceError(f"{path}: {_npy_problem(exc)}") from exc
    if motion.ndim != 3 or motion.shape[2] != 3 or not np.issubdtype(motion.dtype, np.floating):
        raise MoshifaceError(f"{path}: user face motion must be (frames, vertices, 3) floats, "
                             f"got {motion.shape} {motion.dtype}")
    for first in range(0, len(motion), FINITE_CHECK_FRAMES):
        if not np.isfinite(motion[first:first + FINITE_CHECK_FRAMES]).all():
            raise MoshifaceError(f"{path}: user face motion contains NaN or infinite values "
                                 f"(first in frames {first}-{first + FINITE_CHECK_FRAMES - 1})")
    return motion


def _npy_problem(exc: Exception) -> str:
    """What is wrong with a file that has the NumPy magic but will not load."""
    text = str(exc)
    if "pickled" in text or "object" in text:
        return "the .npy holds Python objects (pickled), not a float array of face motion"
    if "mmap length" in text or "larger than" in text or "cannot reshape" in text:
        return "the .npy file is truncated: its header promises more data than the file holds"
    return f"the .npy header is damaged ({text.splitlines()[0][:120] if text else type(exc).__name__})"


def user_face_frames(motion: np.ndarray, start_ns: int, frame_id: str = "user_camera") -> Iterator[FaceFrame]:
    """One frame at a time, converted to float32 as it is used (the file stays mapped)."""
    for index in range(len(motion)):
        yield FaceFrame(start_ns + index * FACE_FRAME_NS, np.asarray(motion[index], dtype=np.float32),
                        frame_id=frame_id)


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
        """Microphone chunks as they arrive; stops ``duration_s`` after the first one (the
        time the stream took to start is not taken from the session)."""
        duration_ns = None if self._config.duration_s is None else int(self._config.duration_s * NS_PER_S)
        end_ns = None
        for chunk in self._audio.chunks():
            if end_ns is None and duration_ns is not None:
                end_ns = chunk.stamp_ns + duration_ns
            if end_ns is not None and chunk.stamp_ns >= end_ns:
                return
            yield chunk

    def faces(self, start_ns: int) -> None:
        return None

    def sinks(self) -> list[Sink]:
        """The speaker (each step's robot audio at its stamp + the presentation delay), and
        a line on the console when the devices lose or drop audio."""
        return [SpeakerSink(self._audio.play), LiveReportSink(self._audio.stats)]


UserInput = FileInput | LiveInput


def open_user_input(config: RunConfig) -> UserInput:
    """The user of ``config``; a recorded one is read and checked now."""
    if config.live:
        return LiveInput(config)
    samples, rate = read_wav(config.user_audio)  # validates before anything is created
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:  # the range every node input accepts too
        raise MoshifaceError(f"{config.user_audio}: a {rate} Hz WAV is not supported "
                             f"(audio must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)")
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

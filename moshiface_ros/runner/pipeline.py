"""The embedded runner: user audio (and face) in, the robot's audio, text and face out,
a bag of it all.

This wires the same core objects the ROS node wraps, in one process and without ROS:
the user's WAV is cut into 80 ms chunks at its own rate (as a microphone would deliver
it) and fed to the same ``AudioStepper`` the node uses, which frames, steps and stamps;
every step is written to the session's bag on one clock: step ``i`` is stamped
``start + i * 80 ms`` (the time of its first user sample), and the robot's output for
that step carries the same stamp.

With a Moshi-Face model the session has a face path: the user's face motion (a ``.npy``
of 25 fps displacements, ``--user-face``, or a video tracked to FLAME with VHAP's teeth,
``--user-video``) is fed to the same ``FacePath`` the node uses,
which encodes it into the user's face tokens each step and decodes the robot's face
tokens into 25 fps face frames stamped like the robot's audio; all of it goes to the bag.
With ``--head`` every robot face frame (or, without a face, the robot's voice) is also
retargeted to the head's blendshapes and actuators, recorded as the retarget node publishes them.

SIGINT and SIGTERM stop the session at the next step boundary, so the bag is never cut
in the middle of a message: it is closed, reads back with everything written so far,
and the summary says the session was interrupted. Before any output exists they abort
at once and leave nothing behind (see ``SignalGuard``).
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from ..audio.wav import read_wav
from ..errors import MoshifaceError
from ..face_codec.stream import FacePath, load_face_codec
from ..messages.types import NS_PER_S, AudioChunk, FaceFrame
from ..timing import FACE_FRAME_NS, STEP_NS
from ..topics import ROBOT_FACE, ROBOT_FACE_TOKENS, USER_FACE, USER_FACE_TOKENS
from ..speech.engine import FRAME_SIZE, SAMPLE_RATE, Sampling, SpeechEngine
from ..speech.stepper import AudioStepper
from ..speech.models import ModelSpec, load_speech_models, resolve_device, resolve_dtype
from .outputs import SessionOutputs, prepare_output_dir, remove_session

# A live session presents the robot's voice this long after its step's stamp: a capture
# chunk arrives ~120 ms after its stamp and a PulseAudio speaker reads ~110 ms ahead, so the
# 200 ms default of the nodes is too short through a sound server (docs/audio.md).
LIVE_PRESENTATION_DELAY_MS = 300.0


@dataclass
class RunConfig:
    """Everything ``moshiface run`` needs; the command line fills it in."""

    user_audio: Path
    out: Path
    model: str = "tiny"
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 42
    cuda_graphs: bool = True
    sampling: Sampling = field(default_factory=Sampling)
    overwrite: bool = False
    progress: bool = True
    frame_id: str = "robot_head"
    user_frame_id: str = "user_microphone"
    user_face: Path | None = None  # .npy (frames, V, 3) displacements at 25 fps
    user_video: Path | None = None  # a video of the user's face, tracked to FLAME at 25 fps
    flame: str = "synthetic"  # FLAME pickle for --user-video, or "synthetic" (a stand-in)
    embedding: Path | None = None  # landmark embedding of that FLAME (`moshiface flame embedding`)
    head: Path | None = None  # a head file: retarget the robot's face to its blendshapes / actuators
    live: bool = False  # microphone in, speaker out (user_audio is then not read)
    input_device: str | None = None  # name, part of a name or number; None: the default device
    output_device: str | None = None
    echo_cancel: bool = False
    presentation_delay_ms: float = LIVE_PRESENTATION_DELAY_MS  # live: robot audio at stamp + this
    duration_s: float | None = None  # live: stop after this long (else at SIGINT/SIGTERM)
    codec: str = "tiny"  # the face codec: tiny (random) or a checkpoint directory (causal)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived before the session had anything to keep."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """What SIGINT and SIGTERM do during a session.

    Before any output exists (reading, loading weights: minutes for real ones) a signal
    aborts at once by raising ``Interrupted``; once outputs are being written
    (``defer()``), it is only remembered, and the stepping loop stops at the next step
    boundary so that no message is cut in half.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._deferred = False

    def defer(self) -> None:
        self._deferred = True

    def __call__(self, signum: int, _frame: Any) -> None:
        if not self._deferred:
            raise Interrupted(signum)
        if self.signal is None:
            self.signal = signum


@contextmanager
def signal_guard() -> Iterator[SignalGuard]:
    guard = SignalGuard()
    previous = {sig: signal.signal(sig, guard) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield guard
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def user_chunks(samples: np.ndarray, rate: int, start_ns: int, frame_id: str) -> Iterator[AudioChunk]:
    """The file as a capture device would deliver it: 80 ms blocks at its own rate,
    numbered and stamped with the time of their first sample."""
    block = max(1, rate * FRAME_SIZE // SAMPLE_RATE)
    for index, first in enumerate(range(0, len(samples), block)):
        frames = samples[first:first + block]
        yield AudioChunk(start_ns + first * NS_PER_S // rate, rate, frames,
                         channels=frames.shape[1], sequence=index, frame_id=frame_id)


def _percentiles(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0, "mean": 0.0}
    ms = np.asarray(values_s) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "max": round(float(ms.max()), 3),
        "mean": round(float(ms.mean()), 3),
    }


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


class Session:
    """Steps the engine over user chunks and records every step; times model and rest."""

    def __init__(self, stepper: AudioStepper, outputs: SessionOutputs, start_ns: int,
                 user_face: Iterator[FaceFrame] | None = None, head: Any = None) -> None:
        self.stepper = stepper
        self.head = head
        self.head_outputs: dict[str, int] = {"face": 0, "fallback": 0, "none": 0}
        self.outputs = outputs
        self.start_ns = start_ns
        self.step_times: list[float] = []
        self.overhead_times: list[float] = []
        self.robot_face_frames = 0
        self.live_stats: dict[str, Any] | None = None
        self._user_face = user_face
        self._next_face: FaceFrame | None = next(user_face, None) if user_face is not None else None

    def _feed_user_face(self, until_ns: int) -> None:
        """User face frames up to ``until_ns`` go to the face path (as a camera would
        have delivered them by then) and to the bag."""
        while self._next_face is not None and self._next_face.stamp_ns < until_ns:
            self.stepper.face.push_user(self._next_face)
            self.outputs.write(USER_FACE, self._next_face)
            self._next_face = next(self._user_face, None)

    def push(self, chunk: AudioChunk | None) -> list:
        """One incoming chunk (None: end of input) -> the steps it completes, recorded."""
        start = time.perf_counter()
        if self.stepper.face is not None and self._user_face is not None:
            self._feed_user_face(chunk.stamp_ns + chunk.duration_ns + STEP_NS if chunk else 2 ** 63)
        records = self.stepper.push(chunk) if chunk is not None else self.stepper.flush()
        for record in records:
            self.outputs.write_user_audio(record.user)
            self.outputs.write_robot_audio(record.robot)
            if record.text is not None:
                self.outputs.write_text(record.text, (record.text.stamp_ns - self.start_ns) / NS_PER_S)
            self._write_face(record)
            if self.head is not None:
                self._retarget(record)
            self.step_times.append(record.model_seconds)
        model = sum(r.model_seconds for r in records)
        if records:  # the cost outside the model, spread over the steps this chunk made
            per_step = (time.perf_counter() - start - model) / len(records)
            self.overhead_times.extend([per_step] * len(records))
        return records


    def _retarget(self, record) -> None:
        from ..retarget.retargeter import rosbags_records

        outputs = self.head.step_audio(record.robot)  # the voice drives the mouth when no face is live
        outputs += [self.head.step_face(frame) for frame in record.robot_face or ()]
        for output in outputs:
            self.head_outputs[output.source] = self.head_outputs.get(output.source, 0) + 1
            records = rosbags_records(output, self.outputs.bag.typestore, self.head.presentation_delay_ms)
            for topic, _, message in records:
                self.outputs.write_ros(topic, output.stamp_ns, message)

    def _write_face(self, record) -> None:
        if record.user_face_tokens is not None:
            self.outputs.write(USER_FACE_TOKENS, record.user_face_tokens)
        if record.robot_face_tokens is not None:
            self.outputs.write(ROBOT_FACE_TOKENS, record.robot_face_tokens)
        for frame in record.robot_face or ():
            self.outputs.write(ROBOT_FACE, frame)
            self.robot_face_frames += 1


def run_session(config: RunConfig) -> dict[str, Any]:
    """Runs a whole session from a WAV file; returns the summary it also writes."""
    with signal_guard() as guard:
        if config.live and (config.user_face or config.user_video):
            raise MoshifaceError("--live listens to the microphone; a recorded --user-face or --user-video "
                                 "would run on another clock: drop it (live faces come from the face_tracker node)")
        if config.live:
            samples, rate = np.zeros((0, 1), np.float32), SAMPLE_RATE
        else:
            samples, rate = read_wav(config.user_audio)  # validates before anything is created
        if config.user_face is not None and config.user_video is not None:
            raise MoshifaceError("give the user's face as --user-face or as --user-video, not both")
        motion = read_user_face(config.user_face) if config.user_face is not None else None
        tracking = _tracking_model(config) if config.user_video is not None else None
        head = _head(config.head) if config.head is not None else None
        spec = ModelSpec.parse(config.model)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device, spec)
        created = prepare_output_dir(config.out, config.overwrite)
        try:
            models = load_speech_models(spec, device, dtype)
            engine = SpeechEngine(models, config.sampling, seed=config.seed, cuda_graphs=config.cuda_graphs)
            face = _face_path(config, engine, device, motion, tracking)
            if device.type == "cuda":
                engine.warmup()
            guard.defer()
            outputs = SessionOutputs(config.out, SAMPLE_RATE, created_dir=created, face=face is not None,
                                     ros_topics=_head_topics(head))
        except BaseException:
            remove_session(config.out, created)
            raise
        try:
            session, wall_s = _step_through(config, engine, outputs, samples, rate, guard, face, motion, tracking,
                                            head)
            summary = _summary(config, models.description, device, dtype, session, rate, samples,
                               wall_s, guard.signal)
            summary = outputs.finish(summary)
        except BaseException:
            outputs.discard()
            raise
        finally:
            if face is not None:
                face.close()
    return summary


def _head(path: Path) -> Any:
    from ..retarget.retargeter import HeadRetargeter

    return HeadRetargeter.from_file(path)


def _head_topics(head: Any) -> dict[str, str]:
    """The bag topics a head's outputs go to (blendshapes; actuators when it has some)."""
    if head is None:
        return {}
    from ..retarget.retargeter import JOINT_TRAJECTORY
    from ..topics import ROBOT_ACTUATORS, ROBOT_BLENDSHAPES

    topics = {ROBOT_BLENDSHAPES: "moshiface_ros/msg/BlendshapeWeights"}
    if head.bank.specs:
        topics[ROBOT_ACTUATORS] = JOINT_TRAJECTORY
    return topics


def _tracking_model(config: RunConfig) -> tuple[Any, Any]:
    """The FLAME model (with VHAP's teeth: the codec's 5,143 vertices) and landmark embedding."""
    from ..tracking.models import load_tracking_model

    if not config.user_video.is_file():
        raise MoshifaceError(f"the user video {config.user_video} does not exist")
    return load_tracking_model(config.flame, config.embedding, teeth=True)


def _face_path(config: RunConfig, engine: SpeechEngine, device: torch.device,
               motion: np.ndarray | None, tracking: tuple[Any, Any] | None) -> FacePath | None:
    """The session's face path: only a Moshi-Face model has one."""
    if not engine.has_face:
        if motion is not None or tracking is not None:
            raise MoshifaceError(f"a user face was given, but {engine.models.description} is an audio-only model")
        return None
    codec = load_face_codec(config.codec, device)
    vertices = motion.shape[1] if motion is not None else tracking[0].num_vertices if tracking else None
    if vertices is not None and vertices != codec.config.vertices:
        raise MoshifaceError(f"the user face has {vertices} vertices, the face codec expects {codec.config.vertices}")
    return FacePath(codec, config.frame_id)


def _step_through(config: RunConfig, engine: SpeechEngine, outputs: SessionOutputs,
                  samples: np.ndarray, rate: int, guard: SignalGuard, face: FacePath | None,
                  motion: np.ndarray | None, tracking: tuple[Any, Any] | None,
                  head: Any = None) -> tuple[Session, float]:
    """The stepping loop; stops early at a step boundary when a signal was received."""
    start_ns = time.time_ns()
    frames = user_face_frames(motion, start_ns) if motion is not None else None
    if tracking is not None and face is not None:
        from ..tracking.video import track_video

        frames = track_video(config.user_video, *tracking, start_ns=start_ns)
    session = Session(AudioStepper(engine, config.frame_id, config.user_frame_id, face), outputs, start_ns, frames,
                      head)
    if config.live:
        return _live_through(config, session, guard)
    chunks = user_chunks(samples, rate, start_ns, config.user_frame_id)
    expected = int(np.ceil(len(samples) * SAMPLE_RATE / rate / FRAME_SIZE))
    wall = time.perf_counter()
    with tqdm(total=expected, unit="step", disable=not config.progress, desc="moshiface", leave=False) as bar:
        for chunk in [*chunks, None]:
            if guard.signal is not None:
                break
            session.push(chunk)
            bar.update(len(session.step_times) - bar.n)
    return session, time.perf_counter() - wall


def _live_through(config: RunConfig, session: Session, guard: SignalGuard) -> tuple[Session, float]:
    """Microphone chunks into the same session; each step's robot audio to the speaker at
    its stamp + the presentation delay. Ends at ``duration_s`` or at a signal."""
    from ..audio.live import LiveAudio

    wall = time.perf_counter()
    with LiveAudio(_device(config.input_device), _device(config.output_device), echo_cancel=config.echo_cancel,
                   presentation_delay_ms=config.presentation_delay_ms, frame_id=config.user_frame_id) as audio:
        end_ns = None if config.duration_s is None else time.time_ns() + int(config.duration_s * NS_PER_S)
        for chunk in audio.chunks():
            if guard.signal is not None or (end_ns is not None and chunk.stamp_ns >= end_ns):
                break
            for record in session.push(chunk):
                audio.play(record.robot)
        session.live_stats = audio.stats()
    return session, time.perf_counter() - wall


def _device(name: str | None) -> str | int | None:
    """A device number given as text means that number."""
    return int(name) if name is not None and name.isdigit() else name


def _face_summary(config: RunConfig, session: Session) -> dict[str, Any] | None:
    face = session.stepper.face
    if face is None:
        return None
    return {"codec": config.codec, "vertices": face.vertices,
            "user_face": str(config.user_face or config.user_video or "") or None,
            "user_steps_with_face": face.user_steps_with_face,
            "robot_face_frames": session.robot_face_frames}


def _summary(config: RunConfig, description: str, device: torch.device, dtype: torch.dtype,
             session: Session, rate: int, samples: np.ndarray, wall_s: float,
             stopped_by: int | None) -> dict[str, Any]:
    steps = len(session.step_times)
    audio_s = steps * FRAME_SIZE / SAMPLE_RATE
    return {
        "model": description,
        "model_spec": config.model,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "seed": config.seed,
        "cuda_graphs": config.cuda_graphs and device.type == "cuda",
        "user_audio": "live" if config.live else str(config.user_audio),
        "live": session.live_stats,
        "user_sample_rate": rate,
        "user_channels": int(samples.shape[1]),
        "start_time_ns": session.start_ns,
        "steps": steps,
        "audio_seconds": round(audio_s, 3),
        "step_ms": _percentiles(session.step_times),
        "overhead_ms": _percentiles(session.overhead_times),
        # model compute time / audio time: below 1 keeps up with real time
        "real_time_factor": round(sum(session.step_times) / audio_s, 4) if audio_s else None,
        "wall_seconds": round(wall_s, 3),
        "face": _face_summary(config, session),
        "head": {"file": str(config.head), "outputs": session.head_outputs} if config.head else None,
        "interrupted": stopped_by is not None,
        "signal": signal.Signals(stopped_by).name if stopped_by is not None else None,
    }

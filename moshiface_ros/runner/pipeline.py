"""The embedded runner: user audio in, the robot's audio and text out, a bag of it all.

This wires the same core objects the ROS node wraps, in one process and without ROS:
the user's WAV is cut into 80 ms chunks at its own rate (as a microphone would deliver
it) and fed to the same ``AudioStepper`` the node uses, which frames, steps and stamps;
every step is written to the session's bag on one clock: step ``i`` is stamped
``start + i * 80 ms`` (the time of its first user sample), and the robot's output for
that step carries the same stamp.

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
from ..messages.types import NS_PER_S, AudioChunk
from ..speech.engine import FRAME_SIZE, SAMPLE_RATE, Sampling, SpeechEngine
from ..speech.stepper import AudioStepper
from ..speech.models import ModelSpec, load_speech_models, resolve_device, resolve_dtype
from .outputs import SessionOutputs, prepare_output_dir, remove_session

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


class Session:
    """Steps the engine over user chunks and records every step; times model and rest."""

    def __init__(self, stepper: AudioStepper, outputs: SessionOutputs, start_ns: int) -> None:
        self.stepper = stepper
        self.outputs = outputs
        self.start_ns = start_ns
        self.step_times: list[float] = []
        self.overhead_times: list[float] = []

    def push(self, chunk: AudioChunk | None) -> None:
        """One incoming chunk (None: end of input) -> the steps it completes, recorded."""
        start = time.perf_counter()
        records = self.stepper.push(chunk) if chunk is not None else self.stepper.flush()
        for record in records:
            self.outputs.write_user_audio(record.user)
            self.outputs.write_robot_audio(record.robot)
            if record.text is not None:
                self.outputs.write_text(record.text, (record.text.stamp_ns - self.start_ns) / NS_PER_S)
            self.step_times.append(record.model_seconds)
        model = sum(r.model_seconds for r in records)
        if records:  # the cost outside the model, spread over the steps this chunk made
            per_step = (time.perf_counter() - start - model) / len(records)
            self.overhead_times.extend([per_step] * len(records))


def run_session(config: RunConfig) -> dict[str, Any]:
    """Runs a whole session from a WAV file; returns the summary it also writes."""
    with signal_guard() as guard:
        samples, rate = read_wav(config.user_audio)  # validates before anything is created
        spec = ModelSpec.parse(config.model)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device, spec)
        created = prepare_output_dir(config.out, config.overwrite)
        try:
            models = load_speech_models(spec, device, dtype)
            engine = SpeechEngine(models, config.sampling, seed=config.seed, cuda_graphs=config.cuda_graphs)
            if device.type == "cuda":
                engine.warmup()
            guard.defer()
            outputs = SessionOutputs(config.out, SAMPLE_RATE, created_dir=created)
        except BaseException:
            remove_session(config.out, created)
            raise
        try:
            session, wall_s = _step_through(config, engine, outputs, samples, rate, guard)
            summary = _summary(config, models.description, device, dtype, session, rate, samples,
                               wall_s, guard.signal)
            summary = outputs.finish(summary)
        except BaseException:
            outputs.discard()
            raise
    return summary


def _step_through(config: RunConfig, engine: SpeechEngine, outputs: SessionOutputs,
                  samples: np.ndarray, rate: int, guard: SignalGuard) -> tuple[Session, float]:
    """The stepping loop; stops early at a step boundary when a signal was received."""
    start_ns = time.time_ns()
    session = Session(AudioStepper(engine, config.frame_id, config.user_frame_id), outputs, start_ns)
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
        "user_audio": str(config.user_audio),
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
        "interrupted": stopped_by is not None,
        "signal": signal.Signals(stopped_by).name if stopped_by is not None else None,
    }

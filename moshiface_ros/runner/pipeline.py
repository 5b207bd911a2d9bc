"""The embedded runner: user audio in, the robot's audio and text out, a bag of it all.

This wires the same core objects the ROS nodes wrap, in one process and without ROS:
the user's WAV is fed in 80 ms blocks at its own rate (as a microphone would deliver
it) through the ``AudioFramer``, every exact 1920-sample chunk drives one
``SpeechEngine`` step, and every message is written to the session's bag stamped on
one clock: step ``i`` is stamped ``start + i * 80 ms`` (the time of its first user
sample), and the robot's output for that step carries the same stamp.

SIGINT and SIGTERM stop the session at the next step boundary, so the bag is never cut
in the middle of a message: it is closed, reads back with everything written so far,
and the summary says the session was interrupted.
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

from ..audio.framer import AudioFramer
from ..audio.wav import read_wav
from ..messages.types import NS_PER_S, AudioChunk, DialogueText
from ..speech.engine import FRAME_SIZE, SAMPLE_RATE, Sampling, SpeechEngine
from ..speech.models import ModelSpec, load_speech_models, resolve_device, resolve_dtype
from .outputs import SessionOutputs, prepare_output_dir

STEP_NS = FRAME_SIZE * NS_PER_S // SAMPLE_RATE  # 80 ms


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


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: Any) -> None:
        self.signal = signum


@contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    flag = StopFlag()
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def user_blocks(samples: np.ndarray, rate: int) -> Iterator[np.ndarray]:
    """The file cut into 80 ms blocks at its own rate, as a capture device delivers it."""
    block = max(1, rate * FRAME_SIZE // SAMPLE_RATE)
    for start in range(0, len(samples), block):
        yield samples[start:start + block]


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
    """One conversation's worth of steps: engine + outputs + the session clock."""

    def __init__(self, engine: SpeechEngine, outputs: SessionOutputs, start_ns: int, config: RunConfig) -> None:
        self.engine = engine
        self.outputs = outputs
        self.start_ns = start_ns
        self.config = config
        self.step_times: list[float] = []
        self.overhead_times: list[float] = []

    def step(self, user_pcm: np.ndarray) -> None:
        """One 80 ms step: record the user's chunk, run the model, record its output."""
        t0 = time.perf_counter()
        index = self.engine.steps
        stamp = self.start_ns + index * STEP_NS
        self.outputs.write_user_audio(AudioChunk(
            stamp, SAMPLE_RATE, user_pcm, sequence=index, frame_id=self.config.user_frame_id))
        t1 = time.perf_counter()
        out = self.engine.step(user_pcm)
        t2 = time.perf_counter()
        self.outputs.write_robot_audio(AudioChunk(
            stamp, SAMPLE_RATE, out.pcm, sequence=index, frame_id=self.config.frame_id))
        if out.text_piece is not None:
            text = DialogueText(stamp, index, int(out.text_token), out.text_piece, self.config.frame_id)
            self.outputs.write_text(text, index * STEP_NS / NS_PER_S)
        t3 = time.perf_counter()
        self.step_times.append(t2 - t1)
        self.overhead_times.append((t1 - t0) + (t3 - t2))


def run_session(config: RunConfig) -> dict[str, Any]:
    """Runs a whole session from a WAV file; returns the summary it also writes."""
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
        outputs = SessionOutputs(config.out, SAMPLE_RATE, created_dir=created)
    except BaseException:
        if created:
            _remove_empty(config.out)
        raise
    session = Session(engine, outputs, time.time_ns(), config)
    framer = AudioFramer(rate, samples.shape[1], SAMPLE_RATE, FRAME_SIZE)
    expected = int(np.ceil(len(samples) * SAMPLE_RATE / rate / FRAME_SIZE))
    stopped_by: int | None = None
    wall = time.perf_counter()
    try:
        with stop_on_signals() as stop, tqdm(total=expected, unit="step", disable=not config.progress,
                                             desc="moshiface", leave=False) as bar:
            for chunk in _chunks(framer, samples, rate):
                if stop.signal is not None:
                    break
                session.step(chunk)
                bar.update(1)
            stopped_by = stop.signal
    except BaseException:
        outputs.discard()
        raise
    summary = _summary(config, models.description, device, dtype, session, rate, samples,
                       time.perf_counter() - wall, stopped_by)
    outputs.finish(summary)
    summary["messages"] = dict(outputs.bag.counts)
    return summary


def _chunks(framer: AudioFramer, samples: np.ndarray, rate: int) -> Iterator[np.ndarray]:
    for block in user_blocks(samples, rate):
        yield from framer.push(block)
    yield from framer.flush()


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


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

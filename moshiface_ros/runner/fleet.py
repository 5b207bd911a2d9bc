"""The runner's benchmark mode for a fleet: N conversations played at once on one model.

``moshiface demo --sessions N`` (N > 1) plays N different speech-like user inputs (the
demo's generator, one seed per session) through one ``speech.batch.BatchedEngine``: every
80 ms step advances all N conversations in one forward pass, as one GPU serving N robots
would; with a Moshi-Face model each step also encodes N user faces (small random motion)
and decodes N robot faces through one shared face codec, as the multi-robot node does. It writes ``fleet.json`` (step times, per-session cost, real-time factor) and says
whether N sessions keep up with real time on this machine. Nothing else is written: the
single-session demo is the one that records its outputs.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FRAME_SIZE, NS_PER_S, SAMPLE_RATE, STEP_NS
from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from ..speech.session import SessionOptions, load_models
from ..speech.slots import step_with_codec
from .summary import percentiles

__all__ = ["run_fleet"]

MAX_SESSIONS = 256


def _inputs(sessions: int, seconds: float, seed: int) -> np.ndarray:
    """[sessions, steps, 1920]: one speech-like input per session, at the model's rate."""
    from ..audio.synth import synthetic_speech

    steps = max(1, int(seconds * NS_PER_S // STEP_NS))
    audio = np.zeros((sessions, steps, FRAME_SIZE), np.float32)
    for k in range(sessions):
        signal = synthetic_speech(steps * FRAME_SIZE / SAMPLE_RATE, SAMPLE_RATE, seed=seed + k)
        audio[k].reshape(-1)[:len(signal)] = signal[:steps * FRAME_SIZE]
    return audio


def _shared_codec(options: SessionOptions, engine: Any) -> contextlib.AbstractContextManager:
    """The face codec every session shares (a null context for an audio-only model)."""
    from ..face_codec.shared import SharedFaceCodec
    from ..face_codec.stream import load_face_codec

    if not engine.has_face:
        return contextlib.nullcontext()
    return SharedFaceCodec(load_face_codec(options.codec, engine.device), engine.slots)


def _faces(codec: Any, seed: int) -> list[np.ndarray]:
    """A bank of 8 steps of small random user face motion (session k at step t shows t + k)."""
    if codec is None:
        return []
    rng = np.random.default_rng(seed)
    shape = (codec.codec.config.downsample, codec.vertices, 3)
    return [rng.normal(0.0, 0.002, shape).astype(np.float32) for _ in range(8)]


def run_fleet(options: SessionOptions, sessions: int, seconds: float, out: Path) -> dict[str, Any]:
    """Plays ``sessions`` inputs of ``seconds`` at once; returns (and writes) the figures."""
    from ..speech.batch import BatchedEngine

    if not 1 <= sessions <= MAX_SESSIONS:
        raise MoshifaceError(f"--sessions must be between 1 and {MAX_SESSIONS}, got {sessions}")
    audio = _inputs(sessions, seconds, options.seed)
    models = load_models(options)
    times: list[float] = []
    with BatchedEngine(models, sessions, options.sampling, options.seed, options.cuda_graphs) as engine, \
            _shared_codec(options, engine) as codec:
        faces, shared_codec = _faces(codec, options.seed), codec is not None
        for step in range(audio.shape[1]):
            pcm = {k: audio[k, step] for k in range(sessions)}
            start = time.perf_counter()
            if codec is None:
                engine.step(pcm)
            else:
                step_with_codec(engine, codec, pcm, {k: faces[(step + k) % len(faces)] for k in range(sessions)})
            times.append(time.perf_counter() - start)
    step_s = STEP_NS / NS_PER_S
    summary = {
        "sessions": sessions,
        "steps": len(times),
        "model": models.description,
        "shared_face_codec": shared_codec,  # each step also coded every session's user and robot face
        "step_ms": percentiles(times),
        "per_session_ms": round(float(np.median(times)) * 1e3 / sessions, 3),
        # batched step time / audio time: below 1 keeps all sessions in real time
        "real_time_factor": round(float(np.mean(times)) / step_s, 4),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "fleet.json", json.dumps(summary, indent=2) + "\n")
    return summary

"""The runner's benchmark mode for a fleet: N conversations played at once on one model.

``moshiface demo --sessions N`` (N > 1) plays N different speech-like user inputs (the
demo's generator, one seed per session) through one ``speech.batch.BatchedEngine``: every
80 ms step advances all N conversations in one forward pass, as one GPU serving N robots
would. It writes ``fleet.json`` (step times, per-session cost, real-time factor) and says
whether N sessions keep up with real time on this machine. Nothing else is written: the
single-session demo is the one that records its outputs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FACE_CARD, FACE_TOKENS, FRAME_SIZE, NS_PER_S, SAMPLE_RATE, STEP_NS
from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from ..speech.session import SessionOptions, load_models
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


def run_fleet(options: SessionOptions, sessions: int, seconds: float, out: Path) -> dict[str, Any]:
    """Plays ``sessions`` inputs of ``seconds`` at once; returns (and writes) the figures."""
    from ..speech.batch import BatchedEngine

    if not 1 <= sessions <= MAX_SESSIONS:
        raise MoshifaceError(f"--sessions must be between 1 and {MAX_SESSIONS}, got {sessions}")
    audio = _inputs(sessions, seconds, options.seed)
    models = load_models(options)
    faces = np.random.default_rng(options.seed).integers(0, FACE_CARD, (audio.shape[1], sessions, FACE_TOKENS))
    times: list[float] = []
    with BatchedEngine(models, sessions, options.sampling, options.seed, options.cuda_graphs) as engine:
        for step in range(audio.shape[1]):
            user_faces = {k: faces[step, k] for k in range(sessions)} if engine.has_face else None
            start = time.perf_counter()
            engine.step({k: audio[k, step] for k in range(sessions)}, user_faces)
            times.append(time.perf_counter() - start)
    step_s = STEP_NS / NS_PER_S
    summary = {
        "sessions": sessions,
        "steps": len(times),
        "model": models.description,
        "step_ms": percentiles(times),
        "per_session_ms": round(float(np.median(times)) * 1e3 / sessions, 3),
        # batched step time / audio time: below 1 keeps all sessions in real time
        "real_time_factor": round(float(np.mean(times)) / step_s, 4),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "fleet.json", json.dumps(summary, indent=2) + "\n")
    return summary

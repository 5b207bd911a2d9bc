#!/usr/bin/env python3
"""Batched sessions on the CPU: B conversations in one forward pass against one, one line per B.

The tiny random Moshi-Face model on one thread, every slot active, each step a whole
engine step (Mimi encode, temporal + depth + Face Transformer, Mimi decode) for all B
slots at once (``speech.batch.BatchedEngine``). Times are the CPU time of the one thread,
so a busy machine does not inflate them. Target: B = 8 in one step costs <= 3x the
single-session step.

    python benchmarks/batching.py [--steps N] [--max-batch B]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import torch

from moshiface_ros.constants import FACE_CARD, FACE_TOKENS, FRAME_SIZE
from moshiface_ros.speech.batch import BatchedEngine
from moshiface_ros.speech.models import SpeechModels, build_tiny
from figures import print_percentiles  # benchmarks/figures.py, beside this script


def batch_times(models: SpeechModels, batch: int, steps: int, warmup: int = 3) -> list[float]:
    """CPU seconds of each step of ``batch`` sessions stepped together."""
    rng = np.random.default_rng(batch)
    audio = (rng.standard_normal((steps + warmup, batch, FRAME_SIZE)) * 0.05).astype(np.float32)
    faces = rng.integers(0, FACE_CARD, (steps + warmup, batch, FACE_TOKENS))
    times = []
    with BatchedEngine(models, batch, seed=0) as engine:
        for i in range(steps + warmup):
            start = time.thread_time()
            engine.step({s: audio[i, s] for s in range(batch)}, {s: faces[i, s] for s in range(batch)})
            if i >= warmup:
                times.append(time.thread_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = build_tiny()
    p50 = {}
    for batch in range(1, args.max_batch + 1):
        p50[batch] = print_percentiles(f"batch B={batch}: tiny Moshi-Face whole step (1 thread, CPU time)",
                                       batch_times(models, batch, args.steps))
    for batch in sorted(p50):
        print(f"batch B={batch}: {p50[batch] / batch:.3f} ms per session, {p50[batch] / p50[1]:.2f}x the single step")
    if 8 in p50:
        print(f"batching: B=8 in one step costs {p50[8] / p50[1]:.2f}x the single-session step (target <= 3x)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Batched sessions on the CPU: B conversations in one forward pass against one, one line per B.

The tiny random Moshi-Face model on one thread, every slot active, each step a whole
engine step (Mimi encode, temporal + depth + Face Transformer, Mimi decode) for all B
slots at once (``speech.batch.BatchedEngine``); then the face codec the robots of one node
share (``face_codec.shared.SharedFaceCodec``, the demo's codec at 5,143 vertices): B user
faces encoded and B robot faces decoded in one pass each. Times are the CPU time of the
one thread, so a busy machine does not inflate them. Target: B = 8 in one step costs <= 3x
the single-session step.

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


def codec_times(batch: int, steps: int, warmup: int = 3) -> list[float]:
    """CPU seconds of each step of the shared face codec over ``batch`` robots."""
    from moshiface_ros.face_codec.shared import SharedFaceCodec
    from moshiface_ros.face_codec.stream import tiny_codec

    rng = np.random.default_rng(batch)
    codec = tiny_codec()
    frames = rng.normal(0.0, 0.002, (batch, codec.config.downsample, codec.config.vertices, 3)).astype(np.float32)
    tokens = rng.integers(0, FACE_CARD, (batch, FACE_TOKENS))
    times = []
    with SharedFaceCodec(codec, batch) as shared:
        for i in range(steps + warmup):
            start = time.thread_time()
            shared.encode({s: frames[s] for s in range(batch)})
            shared.decode({s: tokens[s] for s in range(batch)})
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
    codec = {}
    for batch in (1, 2, 4, 8, 16):
        if batch <= args.max_batch:
            codec[batch] = print_percentiles(f"shared face codec B={batch}: encode + decode, 5,143 vertices "
                                             "(1 thread, CPU time)", codec_times(batch, args.steps))
    for batch in sorted(codec):
        print(f"shared face codec B={batch}: {codec[batch] / batch:.3f} ms per robot, "
              f"{codec[batch] / codec[1]:.2f}x one robot's")


if __name__ == "__main__":
    main()

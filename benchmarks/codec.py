#!/usr/bin/env python3
"""Face codec speed, one figure per line.

- Streaming (the causal configuration at the paper's sizes: V = 5,143, N = 8, K = 256,
  C = 128, r = 2) on one CPU thread (its CPU time): encode of one 80 ms step (2 frames -> 8 tokens),
  decode of one step (8 tokens -> 2 frames), and both. Target: encode + decode <= 2 ms.
- The paper's non-causal codec over a 10 s sequence, per step.
- Training throughput in frames/s (batch 4 of 32-frame windows, AdamW), CPU and, when
  CUDA is present, GPU (where the streaming step is timed too).

    python benchmarks/codec.py [--steps N] [--train-batches N] [--vertices V] [--no-gpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from moshiface_ros.constants import FACE_FPS, VHAP_VERTICES
from moshiface_ros.face_codec.config import config_from_name
from moshiface_ros.face_codec.model import FaceCodec
from figures import print_percentiles  # benchmarks/figures.py, beside this script


stats = print_percentiles


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def streaming(codec: FaceCodec, steps: int, device: torch.device, label: str) -> None:
    """On a CPU the time is the one thread's CPU time (a busy machine does not inflate it);
    on a GPU, wall time between synchronisations."""
    clock = time.thread_time if device.type == "cpu" else time.perf_counter
    frames = torch.randn(1, 2 * (steps + 5), codec.config.vertices, 3, device=device) * 0.01
    encode, decode = [], []
    with codec.streaming(1):
        for i in range(steps + 5):
            _sync(device)
            start = clock()
            tokens = codec.encode_step(frames[:, 2 * i:2 * i + 2])
            _sync(device)
            middle = clock()
            codec.decode_step(tokens)
            _sync(device)
            if i >= 5:  # warm-up steps excluded
                encode.append(middle - start)
                decode.append(clock() - middle)
    stats(f"{label} streaming encode", encode)
    stats(f"{label} streaming decode", decode)
    stats(f"{label} streaming encode + decode", [a + b for a, b in zip(encode, decode)])


def whole_sequence(codec: FaceCodec, device: torch.device, label: str, seconds: float = 10.0) -> None:
    frames = int(seconds * FACE_FPS)
    x = torch.randn(1, frames, codec.config.vertices, 3, device=device) * 0.01
    runs = []
    for _ in range(4):
        _sync(device)
        start = time.perf_counter()
        codec.decode(codec.encode(x))
        _sync(device)
        runs.append((time.perf_counter() - start) / (frames // 2))
    stats(f"{label} non-causal encode + decode of {seconds:g} s", runs[1:])


def training(codec: FaceCodec, batches: int, device: torch.device, label: str) -> None:
    codec.train()
    optimizer = torch.optim.AdamW(codec.parameters(), lr=1e-4)
    x = torch.randn(4, 32, codec.config.vertices, 3, device=device) * 0.01
    times = []
    for i in range(batches + 1):
        _sync(device)
        start = time.perf_counter()
        loss = codec.losses(x, codec(x)).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    codec.eval()
    print(f"{label} training throughput: {x.shape[0] * x.shape[1] * len(times) / sum(times):.0f} frames/s "
          f"(batch 4 x 32 frames, n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--train-batches", type=int, default=5)
    parser.add_argument("--vertices", type=int, default=VHAP_VERTICES)
    parser.add_argument("--no-gpu", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    causal = FaceCodec(config_from_name("paper-causal", vertices=args.vertices)).eval()
    paper = FaceCodec(config_from_name("paper", vertices=args.vertices)).eval()
    print(f"codec: V={args.vertices}, N=8, K=256, C=128, r=2; "
          f"{sum(p.numel() for p in causal.parameters()) / 1e6:.1f} M parameters; CPU, 1 thread")
    streaming(causal, args.steps, cpu, "cpu")
    whole_sequence(paper, cpu, "cpu")
    training(paper, args.train_batches, cpu, "cpu")
    if torch.cuda.is_available() and not args.no_gpu:
        gpu = torch.device("cuda")
        print(f"gpu: {torch.cuda.get_device_name(0)}")
        streaming(causal.to(gpu), args.steps, gpu, "gpu")
        whole_sequence(paper.to(gpu), gpu, "gpu")
        training(paper, args.train_batches * 4, gpu, "gpu")


if __name__ == "__main__":
    main()

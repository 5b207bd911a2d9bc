#!/usr/bin/env python3
"""The one-shot GPU benchmark: every GPU figure in one run of at most 8 minutes.

On a CUDA machine it builds Moshi's 7B architecture (moshiko) with random bf16 weights
directly on the device (no download, no weights travel) and full-size Mimi, extends it
with the default Face Transformer (sharing the 7B weights), and prints:

- the step (LM alone, and the whole step: Mimi encode + LM + Mimi decode), p50/p95, with
  and without CUDA graphs, audio-only and with the face path, and the face path's cost in %;
- batched sessions (``speech.batch.BatchedEngine``, every slot active, CUDA graphs on,
  each step with every session's user face encoded and robot face decoded through one
  shared face codec at the paper's sizes, as the multi-robot node steps them): step time
  and real-time margin for B = 1, 2, 4, 8, 16, 32, then the largest B whose p95 stays
  under the 80 ms step;
- the streaming face codec (paper sizes) and Mimi, per step, on the device;
- peak GPU memory.

Without CUDA (or with ``--device cpu``) the same code runs the tiny random model on one
thread with small step counts, so CI exercises it; the first line says which it ran.

    python benchmarks/gpu_suite.py [--device auto|cpu|cuda] [--steps N] [--budget-s S]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import torch

from moshiface_ros.constants import FACE_CARD, FACE_TOKENS, FRAME_SIZE, STEP_NS, NS_PER_S, VHAP_VERTICES
from moshiface_ros.speech.batch import BatchedEngine
from moshiface_ros.speech.engine import SpeechEngine
from moshiface_ros.speech.models import SpeechModels
from figures import print_percentiles  # benchmarks/figures.py, beside this script

STEP_MS = STEP_NS / NS_PER_S * 1e3
BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass
class Suite:
    device: torch.device
    label: str
    audio_only: SpeechModels
    face: SpeechModels
    steps: int
    deadline: float  # perf_counter() after which optional searches stop
    peak_bytes: int = 0  # GPU memory high-water mark over every figure
    codec: object = None  # the paper-size face codec of the batched figures (``face_codec``)

    def note_peak(self) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()


def build_suite(device: torch.device, steps: int, budget_s: float) -> Suite:
    """The 7B architecture with random bf16 weights on CUDA, the tiny model on a CPU."""
    from moshiface_ros.face_lm.config import FaceConfig
    from moshiface_ros.face_lm.weights import extend_lm
    from moshiface_ros.moshi_compat import default_lm_kwargs
    from moshiface_ros.speech.models import build_tiny

    start = time.perf_counter()
    deadline = start + budget_s
    if device.type != "cuda":
        torch.set_num_threads(1)
        return Suite(device, "cpu, tiny random model, 1 thread", build_tiny(face=False), build_tiny(),
                     steps, deadline)
    from moshi.models import loaders

    kwargs = default_lm_kwargs()
    mimi = loaders.get_mimi(None, device=device)
    lm = loaders.get_moshi_lm(None, lm_kwargs=kwargs, device=device, dtype=torch.bfloat16).eval()
    face_lm, _ = extend_lm(lm, kwargs, FaceConfig(input_init="normal"))
    audio_only = SpeechModels(mimi, lm, None, "moshiko 7B, random bf16")
    face = SpeechModels(mimi, face_lm.eval(), None, "Moshi-Face on moshiko 7B, random bf16")
    torch.cuda.synchronize()
    params = sum(p.numel() for p in lm.parameters()) / 1e9
    print(f"gpu_suite: built in {time.perf_counter() - start:.1f} s, {params:.2f} B LM parameters, "
          f"{torch.cuda.memory_allocated() / 2**30:.1f} GiB allocated")
    return Suite(device, f"cuda ({torch.cuda.get_device_name(device)}), moshiko 7B architecture, random bf16",
                 audio_only, face, steps, deadline)


def user_inputs(steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-like user audio frames [steps, 1920] and face tokens [steps, N]."""
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((steps, FRAME_SIZE)) * 0.05).astype(np.float32),
            rng.integers(0, FACE_CARD, (steps, FACE_TOKENS)))


def time_single(suite: Suite, models: SpeechModels, graphs: bool) -> tuple[list[float], list[float]]:
    """Per-step seconds of the LM step alone and of the whole engine step."""
    audio, faces = user_inputs(suite.steps)
    lm_times: list[float] = []
    step_times: list[float] = []
    with SpeechEngine(models, seed=0, cuda_graphs=graphs) as engine:
        engine.warmup(8)  # on CUDA this captures the graphs
        plain = engine._gen.step

        def lm_step(*args):
            suite.sync()
            start = time.perf_counter()
            out = plain(*args)
            suite.sync()
            lm_times.append(time.perf_counter() - start)
            return out

        engine._gen.step = lm_step
        for i in range(suite.steps):
            suite.sync()
            start = time.perf_counter()
            engine.step(audio[i], faces[i] if engine.has_face else None)
            suite.sync()
            step_times.append(time.perf_counter() - start)
    return lm_times, step_times


def single_figures(suite: Suite) -> None:
    for graphs in (True, False):
        tag = "with CUDA graphs" if graphs else "without CUDA graphs"
        if suite.device.type != "cuda":
            tag += " (no effect on a CPU)"
        plain_lm, plain_step = time_single(suite, suite.audio_only, graphs)
        face_lm, face_step = time_single(suite, suite.face, graphs)
        print_percentiles(f"audio-only LM step, {tag}", plain_lm)
        print_percentiles(f"audio-only whole step, {tag}", plain_step)
        print_percentiles(f"Moshi-Face LM step, {tag}", face_lm)
        print_percentiles(f"Moshi-Face whole step, {tag}", face_step)
        for part, base, ours in (("LM step", plain_lm, face_lm), ("whole step", plain_step, face_step)):
            b, o = np.percentile(base, 50), np.percentile(ours, 50)
            print(f"face path overhead, {part}, {tag}: {(o / b - 1) * 100:+.1f} % "
                  f"(p50 {b * 1e3:.3f} -> {o * 1e3:.3f} ms)")


def face_codec(suite: Suite):
    """The streaming face codec at the paper's sizes on the device (random weights, built once)."""
    if suite.codec is None:
        from moshiface_ros.face_codec.config import config_from_name
        from moshiface_ros.face_codec.model import FaceCodec

        suite.codec = FaceCodec(config_from_name("paper-causal", vertices=VHAP_VERTICES)).eval().to(suite.device)
    return suite.codec


def time_batch(suite: Suite, batch: int, steps: int) -> list[float]:
    """Per-step seconds of ``batch`` Moshi-Face sessions stepped together, all active, their
    faces through one shared codec (``speech.slots.step_with_codec``)."""
    from moshiface_ros.face_codec.shared import SharedFaceCodec
    from moshiface_ros.speech.slots import step_with_codec

    audio, _ = user_inputs(steps + 4, seed=batch)
    motion = np.random.default_rng(batch).normal(0.0, 0.002, (4, 2, VHAP_VERTICES, 3)).astype(np.float32)
    times: list[float] = []
    with BatchedEngine(suite.face, batch, seed=0) as engine, SharedFaceCodec(face_codec(suite), batch) as codec:
        for i in range(steps + 4):  # 4 warm-up steps capture the CUDA graphs
            pcm = {slot: audio[i] for slot in range(batch)}
            face = {slot: motion[(i + slot) % len(motion)] for slot in range(batch)}
            suite.sync()
            start = time.perf_counter()
            step_with_codec(engine, codec, pcm, face)
            suite.sync()
            if i >= 4:
                times.append(time.perf_counter() - start)
    return times


def batch_point(suite: Suite, batch: int, steps: int) -> float | None:
    """Prints one batch size's figures; returns its p95 in ms (None: out of GPU memory)."""
    if suite.device.type == "cuda":
        suite.note_peak()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        times = time_batch(suite, batch, steps)
    except torch.cuda.OutOfMemoryError:
        print(f"batch B={batch}: out of GPU memory")
        return None
    ms = np.asarray(times) * 1e3
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    memory = (f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
              if suite.device.type == "cuda" else "")
    print(f"batch B={batch}: p50 {p50:.3f} p95 {p95:.3f} ms/step, {p50 / batch:.3f} ms per session, "
          f"real-time margin {STEP_MS - p95:.1f} ms ({STEP_MS / p95:.2f}x){memory} (n={len(times)})")
    return p95


def largest_batch(suite: Suite, measured: dict[int, float | None]) -> None:
    """Doubles past the table while p95 < 80 ms, then bisects; stops at the time budget."""
    fits = lambda b: measured.get(b) is not None and measured[b] < STEP_MS  # noqa: E731
    good = max((b for b in measured if fits(b)), default=0)
    bad = min((b for b in measured if b > good and not fits(b)), default=None)
    steps = max(3, suite.steps // 4)
    while bad is None and suite.time_left() > 0:
        batch = good * 2
        measured[batch] = batch_point(suite, batch, steps)
        good, bad = (batch, None) if fits(batch) else (good, batch)
    while bad is not None and bad - good > max(1, good // 8) and suite.time_left() > 0:
        batch = (good + bad) // 2
        measured[batch] = batch_point(suite, batch, steps)
        good, bad = (batch, bad) if fits(batch) else (good, batch)
    note = "" if suite.time_left() > 0 else " (search cut short by the time budget)"
    print(f"largest batch with p95 < {STEP_MS:.0f} ms: B={good}"
          f"{'' if bad is None else f' (B={bad} does not fit)'}{note}")


def codec_and_mimi(suite: Suite) -> None:
    """The streaming face codec at the paper's sizes and Mimi, one step each way."""
    from codec import streaming  # benchmarks/codec.py, beside this script

    from moshiface_ros.face_codec.config import config_from_name
    from moshiface_ros.face_codec.model import FaceCodec

    torch.manual_seed(0)
    codec = FaceCodec(config_from_name("paper-causal", vertices=VHAP_VERTICES)).eval().to(suite.device)
    with torch.no_grad():
        streaming(codec, suite.steps, suite.device, f"{suite.device.type} face codec")
    mimi = suite.face.mimi
    audio, _ = user_inputs(suite.steps + 4)
    encode, decode = [], []
    with torch.no_grad(), mimi.streaming(1):
        for i in range(suite.steps + 4):
            suite.sync()
            start = time.perf_counter()
            codes = mimi.encode(torch.from_numpy(audio[i]).to(suite.device).view(1, 1, -1))
            suite.sync()
            middle = time.perf_counter()
            mimi.decode(codes)
            suite.sync()
            if i >= 4:
                encode.append(middle - start)
                decode.append(time.perf_counter() - middle)
    print_percentiles(f"{suite.device.type} Mimi encode of one step", encode)
    print_percentiles(f"{suite.device.type} Mimi decode of one step", decode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=0, help="timed steps per figure (0: 100 on CUDA, 8 on CPU)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="the batch-size search stops after this many seconds from the start")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    start = time.perf_counter()
    suite = build_suite(device, args.steps or (100 if cuda else 8), args.budget_s)
    print(f"gpu_suite: ran on {suite.label}; torch {torch.__version__}")
    with torch.no_grad():
        single_figures(suite)
        print("batched sessions: one forward pass of the model and one of the shared face codec (paper sizes) "
              "for all B, every session active")
        measured = {batch: batch_point(suite, batch, suite.steps // 2 or 1) for batch in BATCHES}
        largest_batch(suite, measured)
        codec_and_mimi(suite)
    if cuda:
        suite.note_peak()
        print(f"peak GPU memory: {suite.peak_bytes / 2**30:.1f} GiB allocated (largest over every figure)")
    print(f"gpu_suite: done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Per-step latency of the speech pipeline, one figure per line.

CPU (always): the tiny random model on one thread, and the cost outside the model per
80 ms step. The total is the runner's own figure (``overhead_ms`` in ``summary.json``,
read from a ``moshiface demo`` run: framing, the face codec both ways, files and bag);
some of its parts are also timed alone: resampling a 48 kHz stereo microphone stream to
the model's frames, converting the step's messages, serialising and writing them to an
MCAP bag, and writing robot.wav. Target: overhead outside the model <= 2 ms per step.

Moshi-Face against audio-only Moshi, in the same run: on the CPU the tiny configuration
(the tiny model with and without its face streams, same Moshi weights); on a GPU Moshi's
7B architecture with random bf16 weights, extended with the default Face Transformer
(the extension shares the audio-only model's weights, so both fit at once), CUDA graphs
on. Targets: the face path adds <= 5 % to an LM step, and a whole Moshi-Face step stays
<= 25 ms on an H100/H200-class GPU.

GPU (when CUDA is present): Moshi's 7B architecture (moshiko) with random bf16 weights
and full-size Mimi, built on the device (no weights travel), timed per step with and
without CUDA graphs: the LM step alone and the whole step (Mimi encode + LM + decode).

    python benchmarks/step_latency.py [--steps N] [--gpu-steps N] [--no-gpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from moshiface_ros.audio.framer import AudioFramer
from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.audio.wav import WavWriter
from moshiface_ros.constants import FACE_CARD, FACE_TOKENS, FRAME_SIZE, NS_PER_S, SAMPLE_RATE, STEP_NS
from moshiface_ros.messages.types import AudioChunk, DialogueText
from moshiface_ros.recording.bag import SessionBag
from moshiface_ros.speech.engine import SpeechEngine
from moshiface_ros.speech.models import SpeechModels, build_tiny
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_TEXT, USER_AUDIO
from figures import print_percentiles  # benchmarks/figures.py, beside this script


stats = print_percentiles


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def time_engine(models: SpeechModels, steps: int, cuda_graphs: bool = True) -> tuple[list[float], list[float]]:
    """Per-step times of the LM step alone and of the whole engine step (a Moshi-Face
    model also gets the user's face tokens every step)."""
    cuda = next(models.lm.parameters()).device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    speech = synthetic_speech(steps * FRAME_SIZE / SAMPLE_RATE, SAMPLE_RATE, seed=0)
    faces = np.random.default_rng(0).integers(0, FACE_CARD, (steps, FACE_TOKENS))
    lm_times, step_times = [], []
    with SpeechEngine(models, seed=0, cuda_graphs=cuda_graphs) as engine:
        engine.warmup(8)  # on CUDA this captures the graphs
        plain_step = engine._gen.step

        def lm_step(*args):
            sync()
            start = time.perf_counter()
            out = plain_step(*args)
            sync()
            lm_times.append(time.perf_counter() - start)
            return out

        engine._gen.step = lm_step
        try:
            for i in range(steps):
                sync()
                start = time.perf_counter()
                engine.step(speech[i * FRAME_SIZE:(i + 1) * FRAME_SIZE], faces[i] if engine.has_face else None)
                sync()
                step_times.append(time.perf_counter() - start)
        finally:
            del engine._gen.step
    return lm_times, step_times


def bench_tiny_model(steps: int) -> None:
    torch.set_num_threads(1)
    lm_times, step_times = time_engine(build_tiny(), steps)
    stats("cpu tiny LM step (1 thread)", lm_times)
    stats("cpu tiny whole step, Mimi encode + LM + Mimi decode (1 thread)", step_times)


def face_overhead(label: str, audio_only: list[float], face: list[float], target: str) -> None:
    base, ours = np.percentile(audio_only, 50), np.percentile(face, 50)
    print(f"{label}: audio-only p50 {base * 1e3:.3f} ms, Moshi-Face p50 {ours * 1e3:.3f} ms, "
          f"ratio {ours / base:.3f} (+{(ours / base - 1) * 100:.1f} %; {target})")


def bench_tiny_face(steps: int) -> None:
    """The tiny model with and without its face streams (the same Moshi weights)."""
    torch.set_num_threads(1)
    plain_lm, _ = time_engine(build_tiny(face=False), steps)
    face_lm, _ = time_engine(build_tiny(), steps)
    stats("cpu tiny audio-only Moshi LM step (1 thread)", plain_lm)
    stats("cpu tiny Moshi-Face LM step (1 thread)", face_lm)
    face_overhead("cpu tiny face path", plain_lm, face_lm, "the 7B target is on the GPU")


def bench_overhead(steps: int) -> None:
    """Everything a step costs besides the model, measured on the real parts."""
    rate, block = 48000, 480  # a 48 kHz stereo microphone delivering 10 ms blocks
    step_s = STEP_NS / NS_PER_S
    mic = np.stack([synthetic_speech(steps * step_s + 0.1, rate, seed=1)] * 2, axis=1)
    robot_pcm = synthetic_speech(steps * step_s, SAMPLE_RATE, seed=2)
    framer = AudioFramer(rate, 2)
    resample, convert_write, wav_write = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        bag = SessionBag(Path(tmp) / "bag")
        for topic, kind in ((USER_AUDIO, AudioChunk), (ROBOT_AUDIO, AudioChunk), (ROBOT_TEXT, DialogueText)):
            bag.add_topic(topic, kind)
        wav = WavWriter(Path(tmp) / "robot.wav", SAMPLE_RATE)
        position, step = 0, 0
        while step < steps:
            start = time.perf_counter()
            frames = []
            while not frames:  # blocks until the framer completes a step, as a capture loop does
                frames = framer.push(mic[position:position + block])
                position += block
            resample.append(time.perf_counter() - start)
            stamp = step * STEP_NS
            pcm = robot_pcm[step * FRAME_SIZE:(step + 1) * FRAME_SIZE]
            start = time.perf_counter()
            bag.write(USER_AUDIO, AudioChunk(stamp, SAMPLE_RATE, frames[0], sequence=step))
            bag.write(ROBOT_AUDIO, AudioChunk(stamp, SAMPLE_RATE, pcm, sequence=step))
            bag.write(ROBOT_TEXT, DialogueText(stamp, step, 1234, " hello"))
            convert_write.append(time.perf_counter() - start)
            wav_write.append(timed(wav.write, pcm)[0])
            step += len(frames)
        bag.close()
        wav.close()
    stats("overhead: resample 48 kHz stereo -> 24 kHz frames", resample)
    stats("overhead: convert + serialise + write 3 messages to MCAP", convert_write)
    stats("overhead: write robot.wav", wav_write)


def bench_session_overhead(steps: int, runs: int) -> None:
    """The overhead outside the model, total: what ``moshiface demo`` reports in its summary
    (``speech.step_monitor.overhead_per_step``, the one definition: each chunk's time in the
    session minus the engine's step, spread over the steps it made; framing, the face codec
    both ways, the files, the bag), measured by running that demo on the tiny Moshi-Face
    model. The target is on the thread's CPU time (the cost on one core, as the codec's
    figure); the wall time is printed beside it (a busy machine inflates it). Each run is
    printed; the figure is the run with the median p50, because a shared host's neighbours
    move one run by a few tenths of a millisecond (the work after each model step starts
    from caches the model's weights have just swept out)."""
    summaries = []
    for run in range(runs):
        summary = _demo_summary(steps)
        cpu = summary["overhead_cpu_ms"]
        print(f"  run {run + 1} of {runs}: overhead CPU time p50 {cpu['p50']:.3f} p95 {cpu['p95']:.3f} "
              f"mean {cpu['mean']:.3f} ms/step")
        summaries.append(summary)
    summary = sorted(summaries, key=lambda s: s["overhead_cpu_ms"]["p50"])[len(summaries) // 2]
    cpu, wall = summary["overhead_cpu_ms"], summary["overhead_ms"]
    print(f"overhead outside the model, total, CPU time (target <= 2 ms; the demo's summary overhead_cpu_ms, "
          f"median of {runs} runs, mean {cpu['mean']:.3f}): p50 {cpu['p50']:.3f} p95 {cpu['p95']:.3f} "
          f"max {cpu['max']:.3f} ms/step (n={summary['steps']})")
    print(f"wall-time overhead outside the model, total (the demo's summary overhead_ms, mean {wall['mean']:.3f}): "
          f"p50 {wall['p50']:.3f} p95 {wall['p95']:.3f} max {wall['max']:.3f} ms/step (n={summary['steps']})")


def _demo_summary(steps: int) -> dict:
    """``summary.json`` of one ``moshiface demo`` of ``steps`` steps on the tiny model."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "moshiface_ros.cli", "demo", "--out", str(out), "--quiet",
                        "--model", "tiny", "--seconds", f"{steps * STEP_NS / NS_PER_S:g}"],
                       check=True, capture_output=True, text=True)
        return json.loads((out / "summary.json").read_text())


def moshiko_random(device: str) -> SpeechModels:
    from moshi.models import loaders

    mimi = loaders.get_mimi(None, device=device)
    lm = loaders.get_moshi_lm(None, lm_kwargs=loaders._lm_kwargs, device=device, dtype=torch.bfloat16)
    return SpeechModels(mimi, lm, None, "moshiko 7B architecture, random bf16 weights")


def moshiko_face_random(audio_only: SpeechModels) -> SpeechModels:
    """Moshi-Face over the same random 7B weights (shared, not copied): default Face
    Transformer, face input embeddings drawn like Moshi's own."""
    from moshi.models import loaders

    from moshiface_ros.face_lm.config import FaceConfig
    from moshiface_ros.face_lm.weights import extend_lm

    lm, _ = extend_lm(audio_only.lm, loaders._lm_kwargs, FaceConfig(input_init="normal"))
    return SpeechModels(audio_only.mimi, lm, None, "Moshi-Face on the moshiko 7B architecture, random bf16 weights")


def bench_gpu_face(models: SpeechModels, steps: int) -> None:
    """Audio-only Moshi and Moshi-Face on the 7B architecture, CUDA graphs on, same run."""
    face_models = moshiko_face_random(models)
    extra = sum(p.numel() for n, p in face_models.lm.named_parameters() if n.startswith(("face_emb.", "face_transformer.")))
    print(f"gpu Moshi-Face extension: {extra / 1e6:.1f} M face parameters")
    plain_lm, plain_step = time_engine(models, steps, cuda_graphs=True)
    face_lm, face_step = time_engine(face_models, steps, cuda_graphs=True)
    stats("gpu audio-only Moshi LM step, with CUDA graphs", plain_lm)
    stats("gpu Moshi-Face LM step (temporal + depth + Face Transformer), with CUDA graphs", face_lm)
    stats("gpu audio-only Moshi whole step, with CUDA graphs", plain_step)
    stats("gpu Moshi-Face whole step (Mimi encode + LM + Mimi decode), with CUDA graphs (target <= 25 ms)", face_step)
    face_overhead("gpu face path, LM step", plain_lm, face_lm, "target <= 5 %")
    face_overhead("gpu face path, whole step", plain_step, face_step, "target <= 5 %")


def bench_gpu(steps: int) -> None:
    print(f"gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    start = time.perf_counter()
    models = moshiko_random("cuda")
    torch.cuda.synchronize()
    params = sum(p.numel() for p in models.lm.parameters())
    print(f"gpu moshiko 7B random init: {time.perf_counter() - start:.1f} s, {params / 1e9:.2f} B LM parameters, "
          f"{torch.cuda.memory_allocated() / 2**30:.1f} GiB allocated")
    for graphs in (True, False):
        label = "with CUDA graphs" if graphs else "without CUDA graphs"
        lm_times, step_times = time_engine(models, steps, cuda_graphs=graphs)
        stats(f"gpu moshiko LM step (temporal + depth), {label}", lm_times)
        stats(f"gpu moshiko whole step (Mimi encode + LM + Mimi decode), {label}", step_times)
    bench_gpu_face(models, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="CPU steps to time")
    parser.add_argument("--gpu-steps", type=int, default=200, help="GPU steps to time")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU figures")
    parser.add_argument("--overhead-runs", type=int, default=3, help="demo runs for the total overhead (median)")
    args = parser.parse_args()
    bench_tiny_model(args.steps)
    bench_tiny_face(args.steps)
    bench_overhead(args.steps)
    bench_session_overhead(args.steps, args.overhead_runs)
    if torch.cuda.is_available() and not args.no_gpu:
        bench_gpu(args.gpu_steps)
    else:
        print("gpu: no CUDA device, GPU figures skipped")


if __name__ == "__main__":
    main()

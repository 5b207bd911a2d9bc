#!/usr/bin/env python3
"""A long session through the embedded runner: does anything grow or slow down?

The tiny random Moshi-Face model with its face path on, fed 80 ms user audio chunks and
25 fps user face frames (both generated and looped, so the input itself takes no memory
that grows), writing everything a ``moshiface run`` writes (robot.wav, text.jsonl, the
bag with its once-a-second checkpoints). 45,000 steps are one hour of conversation.

Prints the process's RSS at the start (after a warm-up) and at the end, the step time
(everything one step costs: model, face codec, files, bag) per 5,000-step block, and the
messages per topic, which must equal the steps.

    python benchmarks/soak.py [--steps 45000] [--block 5000] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.constants import FACE_FRAME_NS, FRAME_SIZE, NS_PER_S, SAMPLE_RATE, STEP_NS  # noqa: E402
from moshiface_ros.face_codec.synthetic import SyntheticFace  # noqa: E402
from moshiface_ros.messages.types import AudioChunk, FaceFrame  # noqa: E402
from moshiface_ros.runner.outputs import OutputDir, SessionOutputs  # noqa: E402
from moshiface_ros.runner.session import Session  # noqa: E402
from moshiface_ros.runner.sinks import Sink  # noqa: E402
from moshiface_ros.speech.stepper import StepRecord  # noqa: E402
from moshiface_ros.speech.session import SessionOptions, build_stepper, load_models, resolve_placement  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from figures import print_percentiles  # noqa: E402  (benchmarks/figures.py)

WARMUP_STEPS = 200
LOOP_S = 10.0  # the generated input repeats after this long


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def user_chunks(start_ns: int, steps: int) -> Iterator[AudioChunk]:
    speech = synthetic_speech(LOOP_S, SAMPLE_RATE, seed=0)
    blocks = len(speech) // FRAME_SIZE
    for step in range(steps):
        samples = speech[(step % blocks) * FRAME_SIZE:(step % blocks + 1) * FRAME_SIZE, np.newaxis]
        yield AudioChunk(start_ns + step * STEP_NS, SAMPLE_RATE, samples, channels=1, sequence=step,
                         frame_id="user_microphone")


def user_faces(start_ns: int, vertices: int) -> Iterator[FaceFrame]:
    # the synthetic head saying the user's own (looped) speech, so face and voice belong together
    motion = SyntheticFace(vertices=vertices).speaking(synthetic_speech(LOOP_S, SAMPLE_RATE, seed=0), SAMPLE_RATE)
    index = 0
    while True:
        yield FaceFrame(start_ns + index * FACE_FRAME_NS, motion[index % len(motion)], frame_id="user_camera")
        index += 1


class TimedSink(Sink):
    """A sink, and the time it took per step (what crash safety costs: the files' per-step
    flush and once-a-second size patch, the bag's once-a-second checkpoint)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.seconds = 0.0

    def user_face(self, frame: FaceFrame) -> None:
        self.sink.user_face(frame)

    def step(self, record: StepRecord) -> None:
        begin = time.perf_counter()
        self.sink.step(record)
        self.seconds += time.perf_counter() - begin

    def end(self) -> None:
        self.sink.end()


def soak(steps: int, block: int, out: Path) -> dict[str, int]:
    torch.set_num_threads(1)
    options = SessionOptions(model="tiny")
    stepper = build_stepper(options, load_models(options, resolve_placement(options)))
    directory = OutputDir(out, overwrite=True)
    directory.lock()
    directory.claim()
    start_ns = time.time_ns()
    outputs = SessionOutputs(directory, start_ns, face=stepper.has_face)
    files, bag = (TimedSink(sink) for sink in outputs.sinks())
    checkpoint = TimedSink(outputs.checkpoint())
    session = Session(stepper, [files, bag, checkpoint], start_ns, user_faces(start_ns, stepper.face_vertices))
    times: list[float] = []
    rss_start = None
    for step, chunk in enumerate(user_chunks(start_ns, steps)):
        if step == WARMUP_STEPS:
            rss_start = rss_mb()
            print(f"rss at start (after {WARMUP_STEPS} steps): {rss_start:.1f} MB", flush=True)
        begin = time.perf_counter()
        session.push(chunk)
        times.append(time.perf_counter() - begin)
        if (step + 1) % block == 0 or step + 1 == steps:
            first = (step // block) * block
            print_percentiles(f"step time, steps {first}-{step}", times[first:], unit="ms/step")
            sys.stdout.flush()
    rss_end = rss_mb()
    summary = outputs.finish({"steps": len(session.stats.step_times)})
    stepper.close()
    directory.unlock()
    print(f"rss at end: {rss_end:.1f} MB; growth {rss_end - (rss_start or rss_end):+.1f} MB")
    p95 = [float(np.percentile(times[i:i + block], 95)) for i in range(0, len(times), block)]
    print(f"p95 per block: {' '.join(f'{v * 1e3:.2f}' for v in p95)} ms; last/first {p95[-1] / p95[0]:.3f}")
    print(f"steps: {summary['steps']}; bag checkpoints: {outputs.bag.checkpoints}")
    for name, sink in (("robot.wav + text.jsonl (flushed per step)", files), ("bag writes", bag),
                       ("bag checkpoints (once a second)", checkpoint)):
        print(f"cost per step, {name}: {sink.seconds / steps * 1e3:.3f} ms")
    print("messages: " + ", ".join(f"{topic} {count}" for topic, count in summary["messages"].items()))
    print(f"session: {steps * STEP_NS / NS_PER_S:.0f} s of conversation in {sum(times):.0f} s")
    return summary["messages"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=45_000, help="steps to run (default: %(default)s, one hour)")
    parser.add_argument("--block", type=int, default=5_000, help="steps per percentile line (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="session directory (default: a temporary one)")
    args = parser.parse_args()
    if args.out is not None:
        soak(args.steps, args.block, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        soak(args.steps, args.block, Path(tmp) / "soak")
    return 0


if __name__ == "__main__":
    sys.exit(main())

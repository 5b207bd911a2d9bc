#!/usr/bin/env python3
"""Retargeting cost per 25 fps face frame on one CPU core, one figure per line.

* the blendshape solve alone: 52 ARKit shapes on the 5,143-vertex topology (bounded
  least squares with L1/L2/temporal/symmetry terms and the exclusive-pair re-solve);
  target <= 1 ms per frame;
* the feature measurement (rigid head fit + 12 features);
* a whole ``HeadRetargeter.step_face`` for the ARKit virtual head (rig solve) and for the
  12-actuator servo head (features, limiter, latency), and a Live Link packet encode.

The input is a smooth random walk of weights on the synthetic face's rig, so the solver
is warm-started as it is on a real face stream. Times are the CPU time of the one
thread (pinned to one core), so a busy machine does not inflate them.

    python benchmarks/retarget.py [--frames N] [--vertices 5143|5023]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy loads its BLAS

import argparse
import time
from pathlib import Path

import numpy as np

from moshiface_ros.messages.types import FaceFrame
from moshiface_ros.retarget.livelink import encode_packet
from moshiface_ros.retarget.retargeter import HeadRetargeter
from moshiface_ros.retarget.solver import (
    BlendshapeSolver,
    SolverConfig,
    region_vertex_weights,
)
from moshiface_ros.retarget.synthetic import synthetic_face
from moshiface_ros.timing import FACE_FRAME_NS
from figures import print_percentiles  # benchmarks/figures.py, beside this script

HEADS = Path(__file__).resolve().parent.parent / "config" / "heads"


def stats(name: str, seconds: list[float]) -> None:
    print_percentiles(name, seconds, unit="ms/frame CPU")


def weight_walk(frames: int, shapes: int, exclusive: list[tuple[int, int]], seed: int = 0) -> np.ndarray:
    """A smooth random walk of weights in which, as on a real face, the two shapes of a
    mutually exclusive pair (smile/frown, ...) are never active together."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.05, (frames, shapes)) * (rng.uniform(size=shapes) < 0.5)
    walk = np.clip(np.cumsum(steps, axis=0) + 0.2, 0.0, 1.0)
    for i, j in exclusive:
        weaker = np.where(walk[:, i] < walk[:, j], i, j)
        walk[np.arange(frames), weaker] = 0.0
    return walk


def timed_loop(fn, inputs) -> list[float]:
    """CPU time of this thread per call: what one core spends, whatever else the machine
    is doing (wall time on a shared machine measures the neighbours too)."""
    times = []
    for item in inputs:
        start = time.thread_time()
        fn(item)
        times.append(time.thread_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--vertices", type=int, default=5143, choices=(5023, 5143))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    face = synthetic_face(args.vertices)
    weights = region_vertex_weights(args.vertices, face.regions, SolverConfig().region_weights)
    solver = BlendshapeSolver(face.rig, SolverConfig(), weights)
    walk = weight_walk(args.frames, len(face.rig.names), solver.exclusive_pairs)
    displacements = [face.rig.synthesise(w) for w in walk]
    shapes = len(face.rig.names)
    solver.solve(displacements[0])
    stats(f"solve {shapes} blendshapes x {args.vertices} vertices (1 core)", timed_loop(solver.solve, displacements))

    virtual = HeadRetargeter.from_file(HEADS / "arkit_virtual_head.yaml")
    servo = HeadRetargeter.from_file(HEADS / "servo_head.yaml")
    frames = [FaceFrame(i * FACE_FRAME_NS, d) for i, d in enumerate(displacements)]
    for head in (virtual, servo):
        head.step_face(frames[0])  # builds the topology once
    extractor = servo._model(args.vertices).extractor
    stats("features: rigid fit + 12 features", timed_loop(extractor.measure, displacements))
    stats("step: ARKit virtual head (rig solve)", timed_loop(virtual.step_face, frames))
    stats(f"step: servo head (features, {len(servo.bank.specs)} actuators)", timed_loop(servo.step_face, frames))
    outputs = [virtual.step_face(f) for f in frames[:50]]
    stats("Live Link packet encode", timed_loop(lambda o: encode_packet(virtual.livelink_frame(o)), outputs))


if __name__ == "__main__":
    main()

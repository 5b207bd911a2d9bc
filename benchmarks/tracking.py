#!/usr/bin/env python3
"""Face tracking cost per frame on one CPU core, one figure per line.

Frames: scikit-image's astronaut photo placed in a WIDTH x HEIGHT frame under a slowly moving
affine warp (a head that turns and moves). Model: the synthetic FLAME-format head (FLAME's
dimensions, so the same cost as the real model) with its landmark embedding.

Figures: MediaPipe face mesh landmarks (video mode), the FLAME fit alone (warm start,
Gauss-Newton), and the whole tracker step (fit + FaceFrame vertices + One-Euro filter), each
p50/p95/max in ms per frame, then the frame rate of landmarks + tracker at p50 against the
target of 25 fps. The process is pinned to one core and numpy/OpenCV to one thread.

    python benchmarks/tracking.py [--frames N] [--expressions N] [--iterations N] [--width W --height H]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse
import time

import numpy as np
from figures import print_percentiles  # benchmarks/figures.py, beside this script


def stats(name: str, seconds: list[float]) -> float:
    return print_percentiles(name, seconds, unit="ms/frame")


def frames(count: int, width: int, height: int) -> list[np.ndarray]:
    import cv2
    from skimage import data

    face = data.astronaut()
    scale = min(width / face.shape[1], height / face.shape[0]) * 1.2
    out = []
    for k in range(count):
        phase = 2 * np.pi * k / 100
        M = cv2.getRotationMatrix2D((face.shape[1] * 0.45, face.shape[0] * 0.35), 10 * np.sin(phase),
                                    scale * (1 + 0.05 * np.sin(2 * phase)))
        M[:, 2] += [width / 2 - face.shape[1] * 0.45 + 15 * np.cos(phase), height / 2 - face.shape[0] * 0.35]
        out.append(cv2.warpAffine(face, M, (width, height), borderMode=cv2.BORDER_REFLECT))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--expressions", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    try:
        import skimage  # noqa: F401  (the test photo of a face)
    except ImportError:
        print("tracking: skipped, needs scikit-image (a test dependency; `make test` installs it)")
        return
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2

    cv2.setNumThreads(1)
    from moshiface_ros.flame.synthetic import build_synthetic_flame
    from moshiface_ros.tracking.embedding import build_embedding
    from moshiface_ros.tracking.fit import Camera, FitConfig
    from moshiface_ros.tracking.landmarks import FaceLandmarker
    from moshiface_ros.tracking.tracker import FaceTracker, TrackerConfig

    flame = build_synthetic_flame(0)
    embedding = build_embedding(flame)
    config = TrackerConfig(fit=FitConfig(num_expression=args.expressions, iterations=args.iterations),
                           calibration_frames=1)
    tracker = FaceTracker(flame, embedding, config)
    video = frames(args.frames + 5, args.width, args.height)
    landmark_times, fit_times, step_times = [], [], []
    with FaceLandmarker() as landmarker:
        for k, rgb in enumerate(video):
            start = time.perf_counter()
            landmarks = landmarker(rgb)
            landmark_times.append(time.perf_counter() - start)
            if landmarks is None:
                continue
            previous = tracker._previous
            camera = Camera.for_image(landmarks.width, landmarks.height)
            start = time.perf_counter()
            tracker.fitter.fit(landmarks.points, camera, previous)
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            tracker.track(landmarks, k * 40_000_000)
            step_times.append(time.perf_counter() - start)
    skip = 5  # the first frames detect (not track) and calibrate the identity
    print(f"one core, {args.width}x{args.height} frames, {args.expressions} expressions, "
          f"{args.iterations} Gauss-Newton iterations, {len(step_times)}/{len(video)} frames with a face")
    lm = stats("landmarks (MediaPipe face mesh, video mode)", landmark_times[skip:])
    stats("fit (FLAME Gauss-Newton, warm start)", fit_times[skip:])
    step = stats("tracker step (fit + vertices + filter)", step_times[skip:])
    fps = 1000.0 / (lm + step)
    print(f"total, landmarks + tracker step: {fps:.1f} frames/s at p50 (target >= 25): {'met' if fps >= 25 else 'NOT met'}")


if __name__ == "__main__":
    main()

"""What a session reports about itself: ``summary.json`` and the command's last lines.

Step times are the engine's own (the model); the overhead is everything else a step
costs in the runner (framing, the face codec, files, the bag, the head), spread over the
steps a chunk made (``speech.step_monitor.overhead_per_step``, the one definition that
``make bench`` prints too), in wall time (``overhead_ms``) and in the thread's CPU time
(``overhead_cpu_ms``: the cost on one core, which other processes do not inflate). The
ratio of step times to the audio's duration says whether it keeps up.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import FRAME_SIZE, SAMPLE_RATE
from ..speech.step_monitor import overhead_per_step
from ..speech.stepper import AudioStepper, StepRecord
from .config import RunConfig

if TYPE_CHECKING:
    from ..speech.session import Placement
    from .inputs import UserInput


@dataclass
class StepStats:
    """Times and counts of the steps a session made."""

    start_ns: int
    step_times: list[float] = field(default_factory=list)  # seconds in the engine, per step
    overhead_times: list[float] = field(default_factory=list)  # seconds outside it, per step
    overhead_cpu_times: list[float] = field(default_factory=list)  # the same in the thread's CPU time
    robot_face_frames: int = 0
    wall_s: float = 0.0

    def add(self, records: list[StepRecord], elapsed_s: float, elapsed_cpu_s: float | None = None) -> None:
        """The steps one chunk made, and the time the whole chunk took (wall, and the
        thread's CPU time when given)."""
        for record in records:
            self.step_times.append(record.model_seconds)
            self.robot_face_frames += len(record.robot_face or ())
        self.overhead_times.extend(overhead_per_step(elapsed_s, [r.model_seconds for r in records]))
        if elapsed_cpu_s is not None:
            self.overhead_cpu_times.extend(overhead_per_step(elapsed_cpu_s, [r.model_cpu_seconds for r in records]))

    def as_summary(self) -> dict[str, Any]:
        steps = len(self.step_times)
        audio_s = steps * FRAME_SIZE / SAMPLE_RATE
        return {
            "start_time_ns": self.start_ns,
            "steps": steps,
            "audio_seconds": round(audio_s, 3),
            "step_ms": percentiles(self.step_times),
            "overhead_ms": percentiles(self.overhead_times),
            "overhead_cpu_ms": percentiles(self.overhead_cpu_times),
            # model compute time / audio time: below 1 keeps up with real time
            "real_time_factor": round(sum(self.step_times) / audio_s, 4) if audio_s else None,
            "wall_seconds": round(self.wall_s, 3),
        }


def percentiles(values_s: list[float]) -> dict[str, float]:
    """p50, p95, max and mean of durations in seconds, as milliseconds."""
    if not values_s:
        return {"p50": 0.0, "p95": 0.0, "max": 0.0, "mean": 0.0}
    ms = np.asarray(values_s) * 1000.0
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "max": round(float(ms.max()), 3),
        "mean": round(float(ms.mean()), 3),
    }


def started_summary(config: RunConfig, placement: Placement, description: str, user: UserInput) -> dict[str, Any]:
    """What a session is, known before its first step (the summary a killed session keeps)."""
    return {
        "model": description,
        "model_spec": config.session.model,
        "device": str(placement.device),
        "dtype": str(placement.dtype).replace("torch.", ""),
        "seed": config.session.seed,
        "cuda_graphs": config.session.cuda_graphs and placement.device.type == "cuda",
        "user_audio": user.description,
        "user_sample_rate": user.sample_rate,
        "user_channels": user.channels,
    }


def session_summary(config: RunConfig, placement: Placement, description: str, user: UserInput,
                    stepper: AudioStepper, stats: StepStats, head_outputs: dict[str, int] | None,
                    stopped_by: int | None) -> dict[str, Any]:
    """The whole summary of a session (without the bag's counts, which the outputs add)."""
    face = _face_summary(config, stepper, stats)
    return {
        **started_summary(config, placement, description, user),
        "live": user.live_stats,
        **stats.as_summary(),
        "face": face,
        "warnings": _warnings(config, face),
        "head": {"file": str(config.head), "outputs": head_outputs} if config.head else None,
        "interrupted": stopped_by is not None,
        "signal": signal.Signals(stopped_by).name if stopped_by is not None else None,
    }


def _warnings(config: RunConfig, face: dict[str, Any] | None) -> list[str]:
    """What went unexpectedly without stopping the session (the command prints them too)."""
    warnings = []
    source = config.user_video or config.user_face
    if face is not None and source is not None and face["user_steps_with_face"] == 0:
        kind = "video" if config.user_video else "motion file"
        warnings.append(f"no user face was seen in the {kind} {source}: the robot saw no face on any step")
    return warnings


def _face_summary(config: RunConfig, stepper: AudioStepper, stats: StepStats) -> dict[str, Any] | None:
    face = stepper.face_stats()
    if face is None:
        return None
    return {"codec": config.session.codec, "vertices": face["vertices"],
            "user_face": str(config.user_face or config.user_video or "") or None,
            "user_steps_with_face": face["user_steps_with_face"],
            "robot_face_frames": stats.robot_face_frames}

"""Is the model keeping up? Step times, late steps and the real-time factor of a live session.

A live conversation has one budget: a step's 80 ms of user audio must become the robot's
80 ms before the next step's audio is complete, or the robot falls behind and the
playback drops its voice as late. The monitor counts a step as **late** when it finished
more than one step period (``budget_ns``) after the user audio that completed it arrived,
and keeps the step times of a recent window for their median and 95th percentile and the
**real-time factor** (compute time per second of audio; below 1 keeps up). Audio that
waited too long for the model and was dropped is counted too. ``status()`` says it in the
shape ``/diagnostics`` carries.

``overhead_per_step`` is the one definition of the **overhead outside the model**, which
``moshiface demo``'s summary reports and ``make bench`` prints: the time a chunk of user
audio took from arrival to its last sink (framing, the face codec both ways, files, bag,
head) minus the model's part of it, spread evenly over the steps the chunk completed. The
runner computes it on two clocks: wall time (what a live robot waits) and the thread's CPU
time (what it costs one core, which a busy machine does not inflate; the target's clock).
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import numpy as np

from ..constants import NS_PER_S, STEP_NS
from ..messages.types import Diagnostic

OK, WARN = 0, 1


def overhead_per_step(elapsed_s: float, model_s: Sequence[float]) -> list[float]:
    """Each step's share of what a chunk cost outside the model: ``elapsed_s`` (the chunk's
    whole time, on one clock) minus the model's times for the steps it made (same clock),
    spread evenly over those steps; no step, no overhead figure."""
    if not model_s:
        return []
    return [(elapsed_s - sum(model_s)) / len(model_s)] * len(model_s)


class StepMonitor:
    def __init__(self, budget_ns: int = STEP_NS, window: int = 250) -> None:
        self.budget_ns = int(budget_ns)
        self.steps = 0
        self.late = 0
        self.dropped_s = 0.0
        self._times: deque[float] = deque(maxlen=window)
        self._reported = (0, 0.0)  # late steps and dropped audio at the last report

    def record(self, arrived_ns: int, finished_ns: int, step_s: float) -> bool:
        """One step that took ``step_s`` of compute and finished at ``finished_ns`` for audio
        that arrived at ``arrived_ns`` (same clock); True when it was late."""
        self.steps += 1
        self._times.append(float(step_s))
        late = finished_ns - arrived_ns > self.budget_ns
        self.late += int(late)
        return late

    def drop(self, seconds: float) -> None:
        """User audio dropped before the model saw it (the queue was full)."""
        self.dropped_s += float(seconds)

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self._times, q) * 1000.0) if self._times else 0.0

    @property
    def real_time_factor(self) -> float:
        if not self._times:
            return 0.0
        return float(np.mean(self._times)) * NS_PER_S / self.budget_ns

    def status(self, name: str, description: str) -> Diagnostic:
        """The report since the previous one: a warning when steps were late or audio was
        dropped since then."""
        values = {"model": description, "steps": str(self.steps), "late_steps": str(self.late),
                  "step_ms_p50": f"{self.percentile_ms(50):.1f}", "step_ms_p95": f"{self.percentile_ms(95):.1f}",
                  "real_time_factor": f"{self.real_time_factor:.3f}", "dropped_audio_s": f"{self.dropped_s:.2f}"}
        late, dropped = self.late - self._reported[0], self.dropped_s - self._reported[1]
        self._reported = (self.late, self.dropped_s)
        if late or dropped:
            message = f"falling behind: {late} late steps, {dropped:.2f} s of audio dropped since the last report"
            return Diagnostic(name, WARN, message, description, values)
        return Diagnostic(name, OK, f"keeping up (real-time factor {self.real_time_factor:.2f})", description,
                          values)

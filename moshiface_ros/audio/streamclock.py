"""Mapping PortAudio's stream clock onto the wall clock the rest of the system stamps with.

PortAudio tells each callback when its first input sample was captured
(``inputBufferAdcTime``) or when its first output sample will be heard
(``outputBufferDacTime``), in the stream's own clock (``currentTime``). Which clock that
is depends on the host API (CLOCK_REALTIME for ALSA on Linux, a monotonic clock
elsewhere), so instead of assuming one we measure the offset to ``time.time_ns()`` in
every callback. The measurement carries the few microseconds between PortAudio reading
its clock and us reading ours, so it is smoothed; a step larger than a few milliseconds
(the wall clock was set, NTP stepped) is taken at once.
"""

from __future__ import annotations

import time

__all__ = ["StreamClock"]

_NS = 1_000_000_000
_STEP_NS = 5_000_000  # a jump this big is a clock step, not jitter
_ALPHA = 0.05


class StreamClock:
    """Converts stream times (seconds) to wall-clock nanoseconds."""

    def __init__(self) -> None:
        self._offset_ns: float | None = None

    def update(self, stream_now_s: float) -> None:
        """Call at the top of a callback with ``time_info.currentTime``."""
        measured = time.time_ns() - stream_now_s * _NS
        if self._offset_ns is None or abs(measured - self._offset_ns) > _STEP_NS:
            self._offset_ns = measured
        else:
            self._offset_ns += _ALPHA * (measured - self._offset_ns)

    def to_wall_ns(self, stream_time_s: float, fallback_ns: int) -> int:
        """The wall time of a stream time; ``fallback_ns`` when the host gave no time (0)."""
        if self._offset_ns is None or stream_time_s <= 0.0:
            return int(fallback_ns)
        return int(round(stream_time_s * _NS + self._offset_ns))

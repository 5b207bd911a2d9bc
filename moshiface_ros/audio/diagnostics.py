"""What the audio nodes report on ``/diagnostics``, decided without ROS.

A robot builder watches ``rqt_robot_monitor`` (or ``ros2 topic echo /diagnostics``) to see
whether the microphone keeps up and the speaker plays on time. Each report compares the
counters with the previous report: new overflows, dropped blocks, underruns or late
chunks since then make it a warning that says what happened; a microphone that delivered
nothing at all is an error. The node only turns :class:`AudioStatus` into a
``diagnostic_msgs/DiagnosticStatus``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moshiface_ros.audio.capture import CaptureStats
from moshiface_ros.audio.playback import PlaybackStats

__all__ = ["AudioStatus", "OK", "WARN", "ERROR", "capture_status", "playback_status"]

OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels


@dataclass
class AudioStatus:
    name: str
    level: int
    message: str
    hardware_id: str
    values: dict[str, str] = field(default_factory=dict)


def _grew(now: object, before: object | None, names: tuple[str, ...]) -> dict[str, int]:
    """How much each counter grew since the previous report."""
    grown = {}
    for name in names:
        delta = getattr(now, name) - (getattr(before, name) if before is not None else 0)
        if delta > 0:
            grown[name] = delta
    return grown


def _values(stats: CaptureStats | PlaybackStats) -> dict[str, str]:
    return {key: str(value) for key, value in stats.as_dict().items()}


def capture_status(node_name: str, stats: CaptureStats, previous: CaptureStats | None) -> AudioStatus:
    """The microphone's status since ``previous`` (None: since start)."""
    name = f"{node_name}: microphone"
    new = _grew(stats, previous, ("overflows", "dropped_blocks", "gaps", "restarts"))
    if previous is not None and stats.chunks == previous.chunks:
        return AudioStatus(name, ERROR, "no audio from the device since the last report",
                           stats.device, _values(stats))
    if new:
        detail = ", ".join(f"{count} new {what.replace('_', ' ')}" for what, count in new.items())
        return AudioStatus(name, WARN, f"input lost: {detail}", stats.device, _values(stats))
    return AudioStatus(name, OK, f"capturing at {stats.sample_rate} Hz, {stats.channels} ch",
                       stats.device, _values(stats))


def playback_status(node_name: str, stats: PlaybackStats, previous: PlaybackStats | None) -> AudioStatus:
    """The speaker's status since ``previous`` (None: since start)."""
    name = f"{node_name}: speaker"
    new = _grew(stats, previous, ("underruns", "late_drops", "missing_chunks", "early_drops", "overlap_drops",
                                  "device_underflows", "resyncs"))
    if new:
        detail = ", ".join(f"{count} new {what.replace('_', ' ')}" for what, count in new.items())
        return AudioStatus(name, WARN, f"playback disturbed: {detail}", stats.device, _values(stats))
    return AudioStatus(name, OK, f"playing at {stats.sample_rate} Hz, {stats.channels} ch",
                       stats.device, _values(stats))

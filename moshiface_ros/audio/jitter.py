"""A jitter buffer on an absolute timeline: chunks wait until the moment they are due.

The robot's audio arrives in 80 ms chunks, each stamped with the time its step began.
Network and model timing make arrivals uneven; the speaker needs an even stream. Rather
than a queue (which plays whatever is next, as soon as possible, and so drifts out of
sync with the face), this buffer places every chunk on a timeline indexed by absolute
sample number, ``round(due_time_ns * rate / 1e9)``, and the output reads the timeline at
the sample the speaker is about to play. So:

* a chunk that arrives before its time waits (up to ``capacity_s`` ahead);
* a chunk whose start is already behind the read position is dropped whole and
  counted (``late``): playing it late would desynchronise voice and face;
* where no chunk covers the read position the output is silence, never a repetition;
  when the chunk that continues a stream arrives after its start was due, the buffer ran
  dry in the middle of the stream: that is one ``underrun`` (however many late chunks
  follow it), while a stream that simply ends or pauses is not;
* consecutive chunks whose stamps differ by 80 ms give or take 5 ms are laid end to end
  (``snap_samples``), so a stamp that is slightly off cannot cut a click-sized hole or an
  overlap into continuous audio.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from moshiface_ros.constants import SAMPLE_RATE

__all__ = ["JitterBuffer", "JitterStats", "PutResult"]


@dataclass
class JitterStats:
    queued: int = 0
    played: int = 0  # chunks fully read out
    late: int = 0  # chunks dropped because their start had passed
    too_early: int = 0  # chunks dropped because they were due beyond the capacity
    overlaps: int = 0  # chunks dropped because their span was already taken
    underruns: int = 0  # times a stream's next chunk came after it was due


class PutResult:
    QUEUED = "queued"
    LATE = "late"
    TOO_EARLY = "too_early"
    OVERLAP = "overlap"


_DROP_COUNTERS = {PutResult.LATE: "late", PutResult.TOO_EARLY: "too_early",
                  PutResult.OVERLAP: "overlaps"}


@dataclass
class _Segment:
    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + self.samples.shape[0]


class JitterBuffer:
    """Mono float32 audio placed at absolute sample positions; thread-safe."""

    def __init__(self, rate: int = SAMPLE_RATE, capacity_s: float = 4.0, snap_samples: int = 120) -> None:
        self.rate = rate
        self.capacity = int(capacity_s * rate)
        self.snap = snap_samples
        self.stats = JitterStats()
        self._segments: list[_Segment] = []  # sorted by start, not overlapping
        self._read_pos: int | None = None
        self._last_end: int | None = None  # end of the last chunk queued, for snapping
        self._lock = threading.Lock()

    @property
    def read_position(self) -> int | None:
        """The next sample the output will read (None before the first read)."""
        return self._read_pos

    def buffered_samples(self) -> int:
        with self._lock:
            return sum(s.samples.shape[0] for s in self._segments)

    def put(self, samples: np.ndarray, start: int) -> str:
        """Place ``samples`` to be played from absolute sample ``start``."""
        samples = np.ascontiguousarray(samples, np.float32).reshape(-1)
        with self._lock:
            continues = self._last_end is not None and abs(start - self._last_end) <= self.snap
            if continues:
                start = self._last_end
            result = self._check(start, samples.shape[0])
            if result == PutResult.LATE and continues:
                self.stats.underruns += 1  # later late chunks do not continue this one
            if result != PutResult.QUEUED:
                counter = _DROP_COUNTERS[result]
                setattr(self.stats, counter, getattr(self.stats, counter) + 1)
                return result
            self._insert(_Segment(start, samples))
            self._last_end = start + samples.shape[0]
            self.stats.queued += 1
            return result

    def read(self, start: int, count: int) -> tuple[np.ndarray, bool]:
        """The ``count`` samples due from ``start`` (silence where nothing is queued) and
        whether any of them was audio. Reads move forward; anything before ``start`` that
        was not read is discarded."""
        out = np.zeros(count, np.float32)
        end = start + count
        with self._lock:
            self._read_pos = end
            covered = self._fill(out, start, end)
        return out, bool(covered)

    def clear(self) -> None:
        with self._lock:
            self._segments.clear()
            self._last_end = None

    # -- internals (called with the lock held) ----------------------------------------

    def _check(self, start: int, length: int) -> str:
        if self._read_pos is not None:
            if start < self._read_pos:
                return PutResult.LATE
            if start + length - self._read_pos > self.capacity:
                return PutResult.TOO_EARLY
        for segment in self._segments:
            if start < segment.end and segment.start < start + length:
                return PutResult.OVERLAP
        return PutResult.QUEUED

    def _insert(self, segment: _Segment) -> None:
        index = len(self._segments)
        while index and self._segments[index - 1].start > segment.start:
            index -= 1
        self._segments.insert(index, segment)

    def _fill(self, out: np.ndarray, start: int, end: int) -> bool:
        """Copy what overlaps [start, end) into out and drop what is used up; whether
        anything was copied."""
        covered = False
        keep = []
        for segment in self._segments:
            if segment.end <= start:
                continue  # passed without being read (reads skipped ahead): gone
            if segment.start < end:
                lo, hi = max(segment.start, start), min(segment.end, end)
                out[lo - start:hi - start] = segment.samples[lo - segment.start:hi - segment.start]
                covered = True
            if segment.end > end:
                keep.append(segment)
            else:
                self.stats.played += 1
        self._segments = keep
        return covered

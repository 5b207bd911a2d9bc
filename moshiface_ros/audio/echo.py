"""Acoustic echo cancellation: the robot must not hear (and answer) its own voice.

The robot's speaker is close to its microphone, so the user audio the model receives
contains the robot's own speech. Moshi is full duplex and would take that for the user
talking. :class:`EchoCanceller` removes it with WebRTC's audio processing module (AEC3,
through the ``livekit`` wheel), fed with what the speaker plays as the reference signal.

WebRTC wants both signals in 10 ms frames, the reference ("reverse stream") in step with
the microphone, and estimates the remaining delay itself (the sound card's buffers and
the acoustic path). Our streams are stamped on one wall clock, so the reference is kept
on a timeline too: :meth:`add_reference` places played audio at the time it reaches the
speaker, and :meth:`process` walks the timeline up to each microphone frame's capture
time before cleaning that frame. The capture and playback can therefore live in different
threads or processes (the ROS nodes: the capture node subscribes to the robot's audio and
schedules it at ``stamp + presentation delay``), as long as they share the clock.

Echo return loss enhancement (ERLE) is how much echo power is removed, in dB, measured
where only the far end (the robot) is active; :func:`erle_db` computes it, and the
canceller keeps a running figure over frames with reference signal for diagnostics.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from moshiface_ros.constants import NS_PER_S, SAMPLE_RATE
from moshiface_ros.errors import MoshifaceError

__all__ = ["EchoCanceller", "erle_db"]

_FRAME_S = 0.01
_FULL_SCALE = 32767.0
_ACTIVE_RMS = 1e-3  # a reference frame quieter than this counts as silence (-60 dBFS)
_MAX_REFERENCE_S = 10.0
_SILENT_FLOOR = 1e-12


def erle_db(before: np.ndarray, after: np.ndarray) -> float:
    """Echo return loss enhancement: 10 log10(power before / power after), in dB.

    Give it the microphone signal and the cancelled signal over a stretch where only the
    echo (no near-end talker) is present, after the canceller has converged.
    """
    before = np.asarray(before, np.float64)
    after = np.asarray(after, np.float64)
    return float(10.0 * np.log10(max(np.sum(before ** 2), _SILENT_FLOOR)
                                 / max(np.sum(after ** 2), _SILENT_FLOOR)))


def _to_pcm16(samples: np.ndarray) -> bytearray:
    return bytearray((np.clip(samples, -1.0, 1.0) * _FULL_SCALE).round().astype("<i2").tobytes())


class EchoCanceller:
    """WebRTC AEC on a mono stream at ``sample_rate``, with a time-aligned reference."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, stream_delay_ms: int = 0,
                 noise_suppression: bool = False) -> None:
        try:
            from livekit import rtc
        except ImportError as exc:
            raise MoshifaceError("echo cancellation needs the 'livekit' package "
                                 "(pip install livekit)") from exc
        self._rtc = rtc
        self.sample_rate = sample_rate
        self.frame = int(round(sample_rate * _FRAME_S))
        self.stream_delay_ms = int(stream_delay_ms)
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True,
                                              noise_suppression=noise_suppression)
        self._reference: deque[tuple[int, np.ndarray]] = deque()  # (start index, samples)
        self._ref_cursor: int | None = None  # next reference sample index to feed
        self._lock = threading.Lock()
        self.frames = 0
        self._energy_in = 0.0  # over frames with an active reference
        self._energy_out = 0.0

    # -- the two streams ---------------------------------------------------------------

    def add_reference(self, samples: np.ndarray, start_ns: int) -> None:
        """Audio at ``sample_rate`` that the speaker plays from wall time ``start_ns`` on."""
        start = self._index(start_ns)
        with self._lock:
            self._reference.append((start, np.asarray(samples, np.float32).reshape(-1).copy()))
            horizon = start - int(_MAX_REFERENCE_S * self.sample_rate)
            while self._reference and self._reference[0][0] < horizon:
                self._reference.popleft()

    def process(self, samples: np.ndarray, stamp_ns: int) -> np.ndarray:
        """Clean a microphone chunk captured from ``stamp_ns`` on; returns a new array.

        A trailing part shorter than 10 ms is passed through as is (our chunks are 80 ms,
        a whole number of frames).
        """
        samples = np.asarray(samples, np.float32).reshape(-1)
        out = samples.copy()
        first = self._index(stamp_ns)
        for offset in range(0, samples.shape[0] - self.frame + 1, self.frame):
            active = self._feed_reference_until(first + offset)
            out[offset:offset + self.frame] = self._process_frame(samples[offset:offset + self.frame])
            if active:
                self._energy_in += float(np.sum(samples[offset:offset + self.frame] ** 2, dtype=np.float64))
                self._energy_out += float(np.sum(out[offset:offset + self.frame] ** 2, dtype=np.float64))
        return out

    @property
    def erle_db(self) -> float | None:
        """Running ERLE over frames where the robot was speaking (None before any);
        includes double talk, so it underestimates what is removed from echo alone."""
        if self._energy_in <= 0.0:
            return None
        return float(10.0 * np.log10(self._energy_in / max(self._energy_out, _SILENT_FLOOR)))

    # -- internals ----------------------------------------------------------------------

    def _index(self, time_ns: int) -> int:
        return int(round(time_ns * self.sample_rate / NS_PER_S))

    def _feed_reference_until(self, index: int) -> bool:
        """Feed every reference frame that starts at or before ``index``; whether any of
        them carried sound."""
        if self._ref_cursor is None or index - self._ref_cursor > int(_MAX_REFERENCE_S * self.sample_rate):
            self._ref_cursor = index  # first frame, or a long pause: start at the microphone
        active = False
        while self._ref_cursor <= index:
            frame = self._reference_frame(self._ref_cursor)
            active |= bool(np.sqrt(np.mean(frame ** 2)) > _ACTIVE_RMS)
            pcm = self._rtc.AudioFrame(_to_pcm16(frame), self.sample_rate, 1, self.frame)
            self._apm.process_reverse_stream(pcm)
            self._ref_cursor += self.frame
        return active

    def _reference_frame(self, start: int) -> np.ndarray:
        """The reference samples of [start, start + frame), zeros where nothing played."""
        frame = np.zeros(self.frame, np.float32)
        end = start + self.frame
        with self._lock:
            while self._reference and self._reference[0][0] + self._reference[0][1].shape[0] <= start:
                self._reference.popleft()
            for seg_start, seg in self._reference:
                if seg_start >= end:
                    break
                lo, hi = max(seg_start, start), min(seg_start + seg.shape[0], end)
                if hi > lo:
                    frame[lo - start:hi - start] = seg[lo - seg_start:hi - seg_start]
        return frame

    def _process_frame(self, frame: np.ndarray) -> np.ndarray:
        pcm = self._rtc.AudioFrame(_to_pcm16(frame), self.sample_rate, 1, self.frame)
        self._apm.set_stream_delay_ms(self.stream_delay_ms)
        self._apm.process_stream(pcm)
        self.frames += 1
        return np.frombuffer(pcm.data, dtype=np.int16).astype(np.float32) / _FULL_SCALE

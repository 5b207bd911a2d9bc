"""Speaker output: robot audio chunks played at ``stamp + presentation delay``.

The output stream is opened once and never stopped while the robot runs: PortAudio (and
PulseAudio behind it) lose audio when a stream starts or stops, so between utterances it
plays silence. Its callback asks, for every block, "which audio is due at the moment this
block's first sample reaches the DAC?" (PortAudio's ``outputBufferDacTime`` mapped to the
wall clock, minus any lag the device does not report) and reads exactly that from a
:class:`~moshiface_ros.audio.jitter.JitterBuffer` kept on a 24 kHz timeline. So each chunk
is heard at ``stamp + presentation_delay`` on the same clock the face is retargeted
against (``moshiface_ros.timing``); chunks that come too late are dropped whole.

The 24 kHz timeline is resampled to the device rate by one ``soxr.ResampleStream`` that
runs for the life of the stream (silence included), so chunk boundaries never click and
no tail is ever stuck in the resampler. The device clock and the wall clock drift apart
slowly; when the DAC time and the timeline disagree by more than ``resync_ms`` the
timeline is re-anchored (counted as a resync).

With ``sync_to_stamps=False`` the stamps only order the chunks: the first chunk is due
``presentation_delay`` after it arrives and the rest follow at their stamp spacing; after
the buffer runs dry the next chunk re-anchors the same way. That is the mode for stamps
from another clock (a bag replay, simulated time, an unsynchronised host).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import soxr

from moshiface_ros.audio.devices import DeviceInfo, find_device, open_failed, sounddevice_module
from moshiface_ros.audio.jitter import JitterBuffer
from moshiface_ros.audio.streamclock import StreamClock
from moshiface_ros.constants import NS_PER_S, SAMPLE_RATE
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.timing import PRESENTATION_DELAY_MS, presentation_ns

__all__ = ["AudioPlayback", "PlaybackConfig", "PlaybackStats", "to_timeline"]

TIMELINE_RATE = SAMPLE_RATE
_PULL = 240  # timeline samples resampled at a time (10 ms)

# (24 kHz samples, wall time of the first one): what was just sent to the speaker.
PlayedCallback = Callable[[np.ndarray, int], None]


def to_timeline(chunk: AudioChunk) -> np.ndarray:
    """A chunk as 24 kHz mono float32 (the model's format passes through untouched).

    Other rates are resampled one chunk at a time, which is exact only for continuous
    24 kHz streams; the robot's audio always is one.
    """
    samples = np.asarray(chunk.samples, np.float32).reshape(-1, max(chunk.channels, 1))
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    if chunk.sample_rate != TIMELINE_RATE:
        mono = soxr.resample(mono, chunk.sample_rate, TIMELINE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, np.float32)


@dataclass
class PlaybackConfig:
    """How to open the speaker and when to play; 0 means "what the device says"."""

    device: str | int | None = None
    sample_rate: int = 0  # 0: the device's default rate
    channels: int = 0  # 0: the device's output channels, at most 2 (mono is copied to all)
    block_ms: float = 20.0
    latency: str | float = "high"  # PortAudio suggested latency ("low" underran at 44.1 kHz)
    presentation_delay_ms: float = PRESENTATION_DELAY_MS
    lag_ms: float = 0.0  # latency after the DAC the device does not report (e.g. Bluetooth)
    sync_to_stamps: bool = True
    capacity_s: float = 4.0  # how far ahead of its time a chunk may arrive
    resync_ms: float = 30.0


@dataclass
class PlaybackStats:
    device: str = ""
    sample_rate: int = 0
    channels: int = 0
    received: int = 0
    missing_chunks: int = 0  # sequence numbers that never arrived (lost upstream)
    queued: int = 0
    played: int = 0
    late_drops: int = 0
    early_drops: int = 0
    overlap_drops: int = 0
    underruns: int = 0  # the buffer ran dry while playing: silence was played instead
    device_underflows: int = 0  # PortAudio reported output underflow (callback too slow)
    resyncs: int = 0
    buffered_ms: float = 0.0
    cpu_ms_per_chunk: float = 0.0  # thread CPU time (push + callback) per 80 ms played

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AudioPlayback:
    """A speaker that presents stamped chunks on time: ``start()``, ``push()``, ``stop()``."""

    def __init__(self, config: PlaybackConfig | None = None,
                 on_played: PlayedCallback | None = None) -> None:
        self.config = config or PlaybackConfig()
        self.on_played = on_played
        self.device: DeviceInfo | None = None
        self.sample_rate = 0
        self.channels = 0
        self.buffer = JitterBuffer(TIMELINE_RATE, self.config.capacity_s)
        self._stream: Any = None
        self._clock = StreamClock()
        self._resampler: soxr.ResampleStream | None = None
        self._fifo = np.zeros(0, np.float32)  # device-rate samples not yet played
        self._pull_pos = 0  # next timeline sample to resample
        self._out_pos = 0.0  # timeline position of the next device sample
        self._anchored = False
        self._arrival_offset_ns: int | None = None  # sync_to_stamps=False: stamp -> due time
        self._received = 0
        self._missing = 0
        self._last_sequence: int | None = None
        self._underflows = 0
        self._resyncs = 0
        self._cpu_ns = 0
        self._frames_out = 0
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> AudioPlayback:
        sd = sounddevice_module()
        cfg = self.config
        self.device = find_device(cfg.device, "output")
        self.sample_rate, self.channels = self.device.stream_format("output", cfg.sample_rate, cfg.channels)
        self._anchored = False  # the first callback anchors the timeline to its DAC time
        self._fifo = np.zeros(0, np.float32)
        self._resampler = None
        if self.sample_rate != TIMELINE_RATE:
            self._resampler = soxr.ResampleStream(TIMELINE_RATE, self.sample_rate, 1,
                                                  dtype="float32", quality="HQ")
        blocksize = max(1, int(round(self.sample_rate * cfg.block_ms / 1000.0)))
        try:
            self._stream = sd.OutputStream(device=self.device.index, samplerate=self.sample_rate,
                                           channels=self.channels, dtype="float32",
                                           blocksize=blocksize, latency=cfg.latency,
                                           callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close_stream()
            raise open_failed(self.device, "output", self.sample_rate, self.channels, exc) from exc
        return self

    def stop(self) -> None:
        self._close_stream()

    close = stop

    def __enter__(self) -> AudioPlayback:
        return self.start() if self._stream is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- feeding ----------------------------------------------------------------------

    def due_ns(self, chunk: AudioChunk) -> int:
        """When the chunk's first sample must be heard (wall clock)."""
        cfg = self.config
        if cfg.sync_to_stamps:
            return presentation_ns(chunk.stamp_ns, cfg.presentation_delay_ms, cfg.lag_ms)
        with self._lock:
            if self._arrival_offset_ns is None or not self._arrival_anchor_valid(chunk):
                due = presentation_ns(time.time_ns(), cfg.presentation_delay_ms, cfg.lag_ms)
                self._arrival_offset_ns = due - chunk.stamp_ns
            return chunk.stamp_ns + self._arrival_offset_ns

    def push(self, chunk: AudioChunk) -> str:
        """Queue a chunk for its due time; returns what the jitter buffer did with it."""
        cpu = time.thread_time_ns()
        self._received += 1
        if self._last_sequence is not None and chunk.sequence > self._last_sequence + 1:
            self._missing += chunk.sequence - self._last_sequence - 1
        self._last_sequence = chunk.sequence
        samples = to_timeline(chunk)
        start = round(self.due_ns(chunk) * TIMELINE_RATE / NS_PER_S)
        result = self.buffer.put(samples, start)
        self._cpu_ns += time.thread_time_ns() - cpu
        return result

    def stats(self) -> PlaybackStats:
        s = self.buffer.stats
        steps = self._frames_out / (self.sample_rate * 0.08) if self.sample_rate else 0.0
        return PlaybackStats(
            device=self.device.name if self.device else "", sample_rate=self.sample_rate,
            channels=self.channels, received=self._received, missing_chunks=self._missing,
            queued=s.queued, played=s.played,
            late_drops=s.late, early_drops=s.too_early, overlap_drops=s.overlaps,
            underruns=s.underruns, device_underflows=self._underflows, resyncs=self._resyncs,
            buffered_ms=round(1000.0 * self.buffer.buffered_samples() / TIMELINE_RATE, 3),
            cpu_ms_per_chunk=round(self._cpu_ns / 1e6 / steps, 4) if steps >= 1 else 0.0)

    # -- the audio thread -------------------------------------------------------------

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        cpu = time.thread_time_ns()
        self._clock.update(time_info.currentTime)
        if status.output_underflow:
            self._underflows += 1
        fallback = time.time_ns() + int(self._stream_latency() * NS_PER_S)
        dac_ns = self._clock.to_wall_ns(time_info.outputBufferDacTime, fallback)
        self._follow_clock(dac_ns)
        block = self._take(frames)
        outdata[:] = block[:, np.newaxis]
        self._out_pos += frames * TIMELINE_RATE / self.sample_rate
        self._frames_out += frames
        self._cpu_ns += time.thread_time_ns() - cpu

    def _follow_clock(self, dac_ns: int) -> None:
        """Anchor the timeline to the DAC time; re-anchor when they drift apart."""
        due = dac_ns * TIMELINE_RATE / NS_PER_S
        if self._anchored and abs(due - self._out_pos) * 1000.0 / TIMELINE_RATE <= self.config.resync_ms:
            return
        if self._anchored:
            self._resyncs += 1
        self._anchored = True
        self._out_pos = float(round(due))
        self._pull_pos = int(self._out_pos)
        self._fifo = np.zeros(0, np.float32)
        if self._resampler is not None:
            self._resampler.clear()

    def _take(self, frames: int) -> np.ndarray:
        """``frames`` device-rate samples of the timeline from the current position."""
        while self._fifo.shape[0] < frames:
            pulled, audible = self.buffer.read(self._pull_pos, _PULL)
            if audible and self.on_played is not None:
                self.on_played(pulled, self._pull_pos * NS_PER_S // TIMELINE_RATE)
            self._pull_pos += _PULL
            if self._resampler is not None:
                pulled = self._resampler.resample_chunk(pulled)
            self._fifo = np.concatenate([self._fifo, pulled])
        block, self._fifo = self._fifo[:frames], self._fifo[frames:]
        return block

    def _stream_latency(self) -> float:
        stream = self._stream
        return float(stream.latency) if stream is not None else 0.0

    def _arrival_anchor_valid(self, chunk: AudioChunk) -> bool:
        """Keep the arrival mapping unless this chunk would be late under it while the
        buffer is empty (the producer paused or fell behind): then rebuffer."""
        assert self._arrival_offset_ns is not None
        due = chunk.stamp_ns + self._arrival_offset_ns
        read = self.buffer.read_position
        late = read is not None and due * TIMELINE_RATE / NS_PER_S < read
        return not (late and self.buffer.buffered_samples() == 0)

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
            finally:
                stream.close()

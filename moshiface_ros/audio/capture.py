"""Microphone capture: a PortAudio input stream -> the model's stamped 1920-sample chunks.

The device runs at its own rate and channel count, in blocks of its own size and on its
own clock. ``AudioCapture`` keeps all of that out of the model's way:

* the PortAudio callback only copies each block and its capture time into a queue (no
  work in the audio thread, so a busy Python process does not cause overflows);
* ``read()`` (on the caller's thread) feeds the blocks through :class:`ChunkAssembler`:
  downmix, streaming ``soxr`` resampling to 24 kHz (no clicks at block boundaries, see
  ``framer.py``), exact 1920-sample chunks, each stamped with the wall-clock capture time
  of its first sample and numbered;
* optionally an :class:`~moshiface_ros.audio.echo.EchoCanceller` removes the robot's own
  voice from each chunk before it leaves.

Timing: a chunk's stamp comes from a running model of the device clock (first sample's
wall time + samples counted / rate), nudged toward the ADC times PortAudio reports so it
follows drift without inheriting callback jitter. When the reported time jumps ahead of
the model (samples were lost: an input overflow, or the queue was full), the missing
stretch is filled with silence, so the chunk stream stays continuous and keeps pace with
the wall clock, and the loss is counted. A gap too long to fill restarts the timeline and
skips sequence numbers, which downstream sees as dropped chunks.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Protocol

import numpy as np

from moshiface_ros.audio.devices import DeviceInfo, find_device, open_failed, sounddevice_module
from moshiface_ros.audio.framer import AudioFramer
from moshiface_ros.audio.streamclock import StreamClock
from moshiface_ros.constants import FRAME_SIZE, NS_PER_S, SAMPLE_RATE
from moshiface_ros.messages.types import AudioChunk

__all__ = ["AudioCapture", "CaptureConfig", "CaptureStats", "ChunkAssembler"]

MODEL_RATE = SAMPLE_RATE  # what the capture delivers: the model's rate and step


class ChunkProcessor(Protocol):
    """Something that cleans a 24 kHz chunk in place of the raw one (echo cancellation)."""

    def process(self, samples: np.ndarray, stamp_ns: int) -> np.ndarray: ...


class ChunkAssembler:
    """Device blocks stamped with their capture time -> stamped, numbered model chunks.

    Pure (no device): the capture stream feeds it, and tests can feed it directly.

    Lost input is filled with silence only when a loss is known: ``lost`` samples the
    caller dropped itself (exact), or an ``overflow`` PortAudio reported (its length
    estimated from how far the block's time jumped). A time jump without a known loss is
    not trusted at once: after a stall of the process the host delivers its buffered
    blocks late and in a burst, with odd times, but nothing is missing. Only a
    disagreement that persists for ``persist_s`` re-anchors the stamps (a stepped clock).

    Drift is followed slowly and at a bounded rate (``max_slew_ppm``): sound cards drift
    by tens of ppm, while the reported times jitter by milliseconds, so following them
    closely would make consecutive stamps wobble around 80 ms for no reason.
    """

    def __init__(self, in_rate: int, in_channels: int, frame_id: str = "user_microphone",
                 out_rate: int = MODEL_RATE, frame_size: int = FRAME_SIZE,
                 tolerance_ms: float = 30.0, persist_s: float = 1.0, max_fill_s: float = 2.0,
                 drift_gain: float = 0.01, max_slew_ppm: float = 1000.0) -> None:
        self.framer = AudioFramer(in_rate, in_channels, out_rate, frame_size)
        self.in_rate, self.out_rate, self.frame_size = in_rate, out_rate, frame_size
        self.frame_id = frame_id
        self.tolerance_ns = tolerance_ms * 1e6
        self.persist_ns = persist_s * 1e9
        self.max_fill = int(max_fill_s * in_rate)
        self.drift_gain = drift_gain
        self.max_slew = max_slew_ppm * 1e-6
        self.filled_samples = 0  # input samples of silence put in for lost audio
        self.gaps = 0  # losses filled with silence
        self.restarts = 0  # losses too long to fill: the timeline started again
        self.resyncs = 0  # persistent clock disagreements followed
        self._sequence = 0
        self._anchor_ns: int | None = None
        self._offset_ns = 0.0
        self._outlier_since: int | None = None
        self._in_count = 0  # input samples since the anchor, fills included
        self._out_count = 0  # output chunks since the anchor

    @property
    def next_sequence(self) -> int:
        return self._sequence

    def push(self, block: np.ndarray, first_sample_ns: int, lost: int = 0,
             overflow: bool = False) -> list[AudioChunk]:
        """One device block (frames, channels) captured from ``first_sample_ns`` on;
        ``lost`` samples known to be missing just before it; ``overflow`` if PortAudio
        reported lost input."""
        chunks: list[AudioChunk] = []
        if self._anchor_ns is None:
            self._start(first_sample_ns)
        else:
            residual = first_sample_ns - self._expected_ns()
            if not lost and overflow and residual > self.tolerance_ns:
                lost = int(round(residual * self.in_rate / NS_PER_S))
            if lost:
                chunks += self._fill(lost, first_sample_ns)
            else:
                self._track(residual, first_sample_ns, block.shape[0])
        chunks += self._frame(block)
        return chunks

    def flush(self) -> list[AudioChunk]:
        """End of the stream: the last partial chunk, zero-padded."""
        chunks = self._stamp(self.framer.flush())
        self._anchor_ns = None
        return chunks

    def _start(self, first_sample_ns: int) -> None:
        self._anchor_ns = int(first_sample_ns)
        self._offset_ns = 0.0
        self._outlier_since = None
        self._in_count = 0
        self._out_count = 0

    def _expected_ns(self) -> float:
        assert self._anchor_ns is not None
        return self._anchor_ns + self._in_count * NS_PER_S / self.in_rate + self._offset_ns

    def _track(self, residual_ns: float, now_ns: int, frames: int) -> None:
        """Follow slow drift; ignore outliers unless they persist."""
        if abs(residual_ns) <= self.tolerance_ns:
            limit = self.max_slew * frames * NS_PER_S / self.in_rate
            self._offset_ns += float(np.clip(self.drift_gain * residual_ns, -limit, limit))
            self._outlier_since = None
        elif self._outlier_since is None:
            self._outlier_since = now_ns
        elif now_ns - self._outlier_since >= self.persist_ns:
            self._offset_ns += residual_ns
            self._outlier_since = None
            self.resyncs += 1

    def _fill(self, missing: int, first_sample_ns: int) -> list[AudioChunk]:
        """Samples were lost: silence keeps the timeline; too long a gap restarts it."""
        if missing > self.max_fill:
            chunks = self.flush()
            self.restarts += 1
            chunk_ns = self.frame_size * NS_PER_S / self.out_rate
            self._sequence += int(missing * NS_PER_S / self.in_rate // chunk_ns)
            self._start(first_sample_ns)  # downstream sees the skipped sequence numbers
            return chunks
        self.gaps += 1
        self.filled_samples += missing
        return self._frame(np.zeros((missing, self.framer.in_channels), np.float32))

    def _frame(self, block: np.ndarray) -> list[AudioChunk]:
        self._in_count += block.shape[0]
        return self._stamp(self.framer.push(block))

    def _stamp(self, arrays: list[np.ndarray]) -> list[AudioChunk]:
        chunks = []
        for samples in arrays:
            assert self._anchor_ns is not None
            offset = self._out_count * self.frame_size * NS_PER_S / self.out_rate
            stamp = int(round(self._anchor_ns + offset + self._offset_ns))
            chunks.append(AudioChunk(stamp, self.out_rate, samples, 1, self._sequence, self.frame_id))
            self._sequence += 1
            self._out_count += 1
        return chunks


@dataclass
class CaptureConfig:
    """How to open the microphone; 0 means "what the device says"."""

    device: str | int | None = None
    sample_rate: int = 0  # 0: the device's default rate
    channels: int = 0  # 0: the device's input channels, at most 2
    block_ms: float = 20.0  # PortAudio block; 10-20 ms keeps latency low
    latency: str | float = "low"  # PortAudio suggested latency: "low", "high" or seconds
    frame_id: str = "user_microphone"
    queue_seconds: float = 2.0  # device audio held for a slow reader before it is dropped


@dataclass
class CaptureStats:
    """Counters a robot builder watches (reported on /diagnostics by the node)."""

    device: str = ""
    sample_rate: int = 0
    channels: int = 0
    chunks: int = 0
    overflows: int = 0  # PortAudio reported lost input (the device buffer overran)
    dropped_blocks: int = 0  # blocks the reader did not take in time
    gaps: int = 0  # losses filled with silence
    filled_ms: float = 0.0  # silence put in for lost audio
    restarts: int = 0  # losses too long to fill: sequence numbers skipped
    resyncs: int = 0  # the device clock and the wall clock disagreed and were re-aligned
    last_stamp_ns: int = 0
    cpu_ms_per_chunk: float = 0.0  # thread CPU time of the callback + processing, per chunk

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AudioCapture:
    """A microphone as a source of model chunks: ``start()``, ``read()``, ``stop()``."""

    def __init__(self, config: CaptureConfig | None = None,
                 echo_canceller: ChunkProcessor | None = None) -> None:
        self.config = config or CaptureConfig()
        self.echo_canceller = echo_canceller
        self.device: DeviceInfo | None = None
        self.sample_rate = 0
        self.channels = 0
        self._stream: Any = None
        self._clock = StreamClock()
        self._blocks: queue.Queue = queue.Queue()
        self._assembler: ChunkAssembler | None = None
        self._ready: list[AudioChunk] = []
        self._lost = 0  # samples dropped since the last block that made it into the queue
        self._overflows = 0
        self._cpu_ns = 0
        self._dropped = 0
        self._chunks = 0
        self._last_stamp = 0
        self._stopped = threading.Event()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> AudioCapture:
        """Find and open the device, then start capturing; errors name existing devices."""
        sd = sounddevice_module()
        cfg = self.config
        self.device = find_device(cfg.device, "input")
        self.sample_rate, self.channels = self.device.stream_format("input", cfg.sample_rate, cfg.channels)
        self._assembler = ChunkAssembler(self.sample_rate, self.channels, cfg.frame_id)
        blocksize = max(1, int(round(self.sample_rate * cfg.block_ms / 1000.0)))
        self._blocks = queue.Queue(maxsize=max(2, int(cfg.queue_seconds * 1000 / cfg.block_ms)))
        self._stopped.clear()
        try:
            self._stream = sd.InputStream(device=self.device.index, samplerate=self.sample_rate,
                                          channels=self.channels, dtype="float32",
                                          blocksize=blocksize, latency=cfg.latency,
                                          callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close_stream()
            raise open_failed(self.device, "input", self.sample_rate, self.channels, exc) from exc
        return self

    def stop(self) -> None:
        """Stop the device; ``read`` then returns what is left and then None."""
        self._stopped.set()
        self._close_stream()

    close = stop

    def __enter__(self) -> AudioCapture:
        return self.start() if self._stream is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- reading ----------------------------------------------------------------------

    def read(self, timeout: float | None = None) -> AudioChunk | None:
        """The next chunk, waiting up to ``timeout`` s (None: until one comes or stop)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            if self._stopped.is_set() and self._blocks.empty():
                return None
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                block, first_ns, lost, overflow = self._blocks.get(timeout=wait)
            except queue.Empty:
                continue
            self._process(block, first_ns, lost, overflow)
        return self._ready.pop(0)

    def chunks(self) -> Iterator[AudioChunk]:
        """Chunks as they arrive, until :meth:`stop`."""
        while True:
            chunk = self.read()
            if chunk is None:
                return
            yield chunk

    def stats(self) -> CaptureStats:
        assembler = self._assembler
        return CaptureStats(
            device=self.device.name if self.device else "", sample_rate=self.sample_rate,
            channels=self.channels, chunks=self._chunks, overflows=self._overflows,
            dropped_blocks=self._dropped, gaps=assembler.gaps if assembler else 0,
            filled_ms=round(1000.0 * assembler.filled_samples / self.sample_rate, 3)
            if assembler else 0.0,
            restarts=assembler.restarts if assembler else 0,
            resyncs=assembler.resyncs if assembler else 0, last_stamp_ns=self._last_stamp,
            cpu_ms_per_chunk=round(self._cpu_ns / 1e6 / self._chunks, 4) if self._chunks else 0.0)

    # -- internals --------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: stamp and queue the block, nothing else."""
        cpu = time.thread_time_ns()
        self._clock.update(time_info.currentTime)
        fallback = time.time_ns() - frames * NS_PER_S // self.sample_rate
        first_ns = self._clock.to_wall_ns(time_info.inputBufferAdcTime, fallback)
        overflow = bool(status.input_overflow)
        if overflow:
            self._overflows += 1
        try:
            self._blocks.put_nowait((indata.copy(), first_ns, self._lost, overflow))
            self._lost = 0
        except queue.Full:
            self._dropped += 1
            self._lost += frames  # the next block tells the assembler to fill them
        self._cpu_ns += time.thread_time_ns() - cpu

    def _process(self, block: np.ndarray, first_ns: int, lost: int, overflow: bool) -> None:
        assert self._assembler is not None
        cpu = time.thread_time_ns()
        for chunk in self._assembler.push(block, first_ns, lost, overflow):
            if self.echo_canceller is not None:
                chunk.samples = self.echo_canceller.process(chunk.samples, chunk.stamp_ns)
            self._chunks += 1
            self._last_stamp = chunk.stamp_ns
            self._ready.append(chunk)
        self._cpu_ns += time.thread_time_ns() - cpu

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()  # stop() would wait for the pending blocks: nothing we need
            finally:
                stream.close()

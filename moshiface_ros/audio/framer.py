"""Turn audio blocks of any shape and rate into the model's exact input frames.

Microphones, WAV files and ROS topics deliver audio at 16, 44.1 or 48 kHz, in mono or
stereo, in blocks whose size has nothing to do with the model's step. The model wants
mono float32 at 24 kHz in chunks of exactly 1920 samples (80 ms). :class:`AudioFramer`
bridges the two.

Why streaming resampling: resampling each block on its own (``resample_poly`` or a
one-shot ``soxr.resample`` per block) treats every block edge as the edge of the signal,
so the filter sees an implicit zero-padding there and the output clicks at every block
boundary. ``soxr.ResampleStream`` keeps the filter history between calls, so pushing a
signal in pieces gives the same samples as resampling it whole. The price is that each
call returns a varying number of samples (and some delay), hence the FIFO that re-frames
them into exact chunks.
"""

from __future__ import annotations

import numpy as np
import soxr

from moshiface_ros.constants import FRAME_SIZE, SAMPLE_RATE

__all__ = ["AudioFramer"]

_QUALITY = "HQ"


class AudioFramer:
    """Downmix, resample and re-frame a stream of audio blocks into fixed-size chunks.

    ``push`` returns the chunks completed by each block; ``flush`` ends the stream,
    draining the resampler and zero-padding the last partial chunk. After ``flush`` the
    framer is ready for a new, unrelated stream.
    """

    def __init__(self, in_rate: int, in_channels: int, out_rate: int = SAMPLE_RATE,
                 frame_size: int = FRAME_SIZE) -> None:
        for name, value in (("in_rate", in_rate), ("in_channels", in_channels),
                            ("out_rate", out_rate), ("frame_size", frame_size)):
            if int(value) != value or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        self.in_rate = int(in_rate)
        self.in_channels = int(in_channels)
        self.out_rate = int(out_rate)
        self.frame_size = int(frame_size)
        self._resampler = self._make_resampler()
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._frames_out = 0
        self._samples_out = 0

    def _make_resampler(self) -> soxr.ResampleStream | None:
        """Equal rates need no filter at all, so passthrough adds no delay or error."""
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32",
                                   quality=_QUALITY)

    @property
    def frames_out(self) -> int:
        """Number of chunks produced so far (including a padded last one)."""
        return self._frames_out

    @property
    def samples_out(self) -> int:
        """Resampled samples emitted in chunks so far, not counting flush padding.

        Lets a caller trim the zero padding off the last chunk.
        """
        return self._samples_out

    @property
    def pending(self) -> int:
        """Resampled samples waiting in the FIFO for a chunk to fill."""
        return self._pending_len

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        """Feed one block; return the chunks it completed (possibly none)."""
        mono = self._downmix(self._validate(block))
        if mono.shape[0] == 0:
            return []
        if self._resampler is None:
            resampled = mono.copy() if not mono.flags.owndata else mono
        else:
            resampled = self._resampler.resample_chunk(mono)
        self._enqueue(resampled)
        return self._take_full_chunks()

    def flush(self) -> list[np.ndarray]:
        """End the stream: drain the resampler and zero-pad the last partial chunk."""
        if self._resampler is not None:
            self._enqueue(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            self._resampler.clear()
        chunks = self._take_full_chunks()
        if self._pending_len:
            tail = np.zeros(self.frame_size, np.float32)
            tail[:self._pending_len] = np.concatenate(self._pending)
            self._samples_out += self._pending_len
            self._pending, self._pending_len = [], 0
            self._frames_out += 1
            chunks.append(tail)
        return chunks

    def _validate(self, block: np.ndarray) -> np.ndarray:
        """Check shape, type and finiteness; return a (frames, channels) array."""
        array = np.asarray(block)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"expected floating-point audio samples, got dtype {array.dtype}")
        if array.ndim == 1:
            if self.in_channels != 1:
                raise ValueError(f"got a 1-D block but the framer expects {self.in_channels} "
                                 f"channels; pass shape (frames, {self.in_channels})")
            array = array[:, np.newaxis]
        elif array.ndim != 2:
            raise ValueError(f"expected a 1-D or (frames, channels) block, got {array.ndim}-D "
                             f"shape {array.shape}")
        if array.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} channels, got a block shaped "
                             f"{array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("audio block contains NaN or infinite samples")
        return array

    def _downmix(self, frames: np.ndarray) -> np.ndarray:
        """Average the channels into a contiguous float32 mono signal."""
        if frames.shape[1] == 1:
            return np.ascontiguousarray(frames[:, 0], dtype=np.float32)
        return np.ascontiguousarray(frames.mean(axis=1, dtype=np.float64), dtype=np.float32)

    def _enqueue(self, samples: np.ndarray) -> None:
        """Append to the FIFO; pieces are joined only when a chunk can be cut (O(n) total)."""
        if samples.shape[0]:
            self._pending.append(samples)
            self._pending_len += samples.shape[0]

    def _take_full_chunks(self) -> list[np.ndarray]:
        """Cut every complete chunk out of the FIFO, keeping the remainder."""
        count = self._pending_len // self.frame_size
        if count == 0:
            return []
        joined = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        used = count * self.frame_size
        chunks = [joined[i:i + self.frame_size].copy() for i in range(0, used, self.frame_size)]
        remainder = joined[used:].copy()
        self._pending = [remainder] if remainder.shape[0] else []
        self._pending_len = remainder.shape[0]
        self._frames_out += count
        self._samples_out += used
        return chunks

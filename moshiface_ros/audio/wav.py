"""WAV files in and out of the core.

Reading accepts whatever PCM or float WAV a user is likely to hand us (any bit depth and
channel count that ``scipy.io.wavfile`` understands) and normalises it to float32 in
[-1, 1], so everything downstream deals with one sample format. Writing is always IEEE
float32: the model produces float audio, and float WAV keeps it bit-exact (no dithering,
no clipping decisions) while every common tool can still open it.

``WavWriter`` streams: a session recorder appends one 80 ms chunk at a time for hours, so
the file must never be held in memory, and it must be a valid WAV whenever it is closed.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import scipy.io.wavfile

from moshiface_ros.errors import MoshifaceError

__all__ = ["read_wav", "WavWriter", "write_wav"]

_WAVE_FORMAT_IEEE_FLOAT = 3
_BYTES_PER_SAMPLE = 4
# RIFF sizes are 32-bit: the data chunk cannot grow past this without RF64.
_MAX_RIFF_SIZE = 0xFFFFFFFF

# Errors scipy (and struct/numpy under it) raise on malformed or non-WAV input.
_PARSE_ERRORS = (ValueError, EOFError, struct.error, ZeroDivisionError, IndexError,
                 TypeError, OverflowError, MemoryError)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 samples shaped (frames, channels) and its sample rate.

    Integer PCM is scaled to [-1, 1] (8-bit is unsigned and centred on 128); float files
    are returned as stored. Problems a user can fix are reported as a one-line
    :class:`MoshifaceError` naming the file, because a scipy traceback about chunk ids
    tells a robot builder nothing.
    """
    path = Path(path)
    _check_readable_path(path)
    rate, data = _parse_wav(path)
    if rate <= 0:
        raise MoshifaceError(f"{path} has an invalid sample rate ({rate} Hz)")
    samples = _to_float32(data)
    if samples.ndim == 1:
        samples = samples[:, np.newaxis]
    if samples.shape[1] == 0:
        raise MoshifaceError(f"{path} has no audio channels")
    if samples.shape[0] == 0:
        raise MoshifaceError(f"{path} is an empty WAV file (0 frames)")
    if not np.isfinite(samples).all():
        raise MoshifaceError(f"{path} contains NaN or infinite samples")
    return samples, int(rate)


def _check_readable_path(path: Path) -> None:
    """Turn the common path mistakes into messages before scipy sees them."""
    if not path.exists():
        raise MoshifaceError(f"{path} does not exist")
    if path.is_dir():
        raise MoshifaceError(f"{path} is a directory, not a WAV file")
    if path.is_file() and path.stat().st_size == 0:
        raise MoshifaceError(f"{path} is not a WAV file (the file is empty)")


def _parse_wav(path: Path) -> tuple[int, np.ndarray]:
    """Let scipy parse the file, mapping its many failure modes to one message.

    scipy's WavFileWarning (unknown chunks, a premature EOF after the data) is noise for
    our users: the samples it returns are still the right ones.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            rate, data = scipy.io.wavfile.read(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise MoshifaceError(f"{path} cannot be read ({reason})") from exc
    except _PARSE_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MoshifaceError(f"{path} is not a WAV file ({reason})") from exc
    return rate, np.asarray(data)


def _to_float32(data: np.ndarray) -> np.ndarray:
    """Scale scipy's native sample types to float32 in [-1, 1].

    scipy returns integer PCM left-justified in the smallest container (24-bit in int32
    with the low byte zero), so dividing by the container's full scale is right for any
    bit depth.
    """
    if data.dtype == np.uint8:
        return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if np.issubdtype(data.dtype, np.signedinteger):
        full_scale = float(2 ** (8 * data.dtype.itemsize - 1))
        return (data.astype(np.float64) / full_scale).astype(np.float32)
    if np.issubdtype(data.dtype, np.floating):
        with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf: caught later
            return data.astype(np.float32)
    raise MoshifaceError(f"unsupported WAV sample type {data.dtype}")


class WavWriter:
    """Stream float32 samples into an IEEE-float WAV file.

    The header is written up front with zero sizes and patched on :meth:`close`, so the
    writer needs no look-ahead and keeps nothing in memory. Any number of writes,
    including none, leaves a valid file once closed.
    """

    def __init__(self, path: str | Path, sample_rate: int, channels: int = 1) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
        if int(channels) != channels or channels <= 0:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        self._path = Path(path)
        self._sample_rate = int(sample_rate)
        self._channels = int(channels)
        self._frames = 0
        self._file: BinaryIO | None = open(self._path, "wb")
        header, self._fact_offset, self._data_size_offset = _float_wav_header(
            self._sample_rate, self._channels)
        self._header_size = len(header)
        self._file.write(header)

    @property
    def path(self) -> Path:
        """Where the file is being written."""
        return self._path

    @property
    def sample_rate(self) -> int:
        """Sample rate written into the header."""
        return self._sample_rate

    @property
    def channels(self) -> int:
        """Channel count written into the header."""
        return self._channels

    @property
    def frames_written(self) -> int:
        """Frames (samples per channel) written so far."""
        return self._frames

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._file is None

    def write(self, samples: np.ndarray) -> None:
        """Append samples: 1-D for a mono file, or shaped (frames, channels).

        Non-finite samples are refused because :func:`read_wav` would refuse the file
        later, far from the code that produced them.
        """
        if self._file is None:
            raise ValueError(f"cannot write to {self._path}: the WavWriter is closed")
        frames = self._validate(samples)
        data_bytes = (self._frames + frames.shape[0]) * self._channels * _BYTES_PER_SAMPLE
        if self._header_size - 8 + data_bytes > _MAX_RIFF_SIZE:
            raise ValueError(f"{self._path} would exceed the 4 GiB WAV size limit")
        self._file.write(frames.astype("<f4", copy=False).tobytes())
        self._frames += frames.shape[0]

    def _validate(self, samples: np.ndarray) -> np.ndarray:
        """Check shape and type, returning a (frames, channels) array."""
        array = np.asarray(samples)
        if not np.issubdtype(array.dtype, np.floating):
            # Integer PCM has no single right scale here; the caller knows its full scale.
            raise ValueError(f"expected floating-point samples in [-1, 1], got dtype {array.dtype}")
        if array.ndim == 1 and self._channels == 1:
            array = array[:, np.newaxis]
        if array.ndim != 2 or array.shape[1] != self._channels:
            raise ValueError(
                f"expected samples shaped (frames, {self._channels}), got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError("samples contain NaN or infinite values")
        return array

    def close(self) -> None:
        """Patch the RIFF, fact and data sizes and close the file; safe to call twice."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            data_bytes = self._frames * self._channels * _BYTES_PER_SAMPLE
            file.seek(4)
            file.write(struct.pack("<I", self._header_size - 8 + data_bytes))
            file.seek(self._fact_offset)
            file.write(struct.pack("<I", self._frames))
            file.seek(self._data_size_offset)
            file.write(struct.pack("<I", data_bytes))
        finally:
            file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _float_wav_header(sample_rate: int, channels: int) -> tuple[bytes, int, int]:
    """Build a float32 WAV header with zero sizes.

    Returns the header and the byte offsets of the fact sample count and the data size,
    which :meth:`WavWriter.close` fills in. Non-PCM formats carry an 18-byte fmt chunk
    (with cbSize) and a fact chunk per the RIFF spec; strict readers expect both.
    """
    block_align = channels * _BYTES_PER_SAMPLE
    fmt = struct.pack("<HHIIHHH", _WAVE_FORMAT_IEEE_FLOAT, channels, sample_rate,
                      sample_rate * block_align, block_align, 8 * _BYTES_PER_SAMPLE, 0)
    header = bytearray()
    header += b"RIFF" + struct.pack("<I", 0) + b"WAVE"
    header += b"fmt " + struct.pack("<I", len(fmt)) + fmt
    header += b"fact" + struct.pack("<I", 4)
    fact_offset = len(header)
    header += struct.pack("<I", 0)
    header += b"data"
    data_size_offset = len(header)
    header += struct.pack("<I", 0)
    return bytes(header), fact_offset, data_size_offset


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write samples (1-D mono or (frames, channels)) to a float32 WAV in one call."""
    array = np.asarray(samples)
    channels = 1 if array.ndim == 1 else (array.shape[1] if array.ndim == 2 else 0)
    if channels <= 0:
        raise ValueError(f"expected 1-D or (frames, channels) samples, got shape {array.shape}")
    with WavWriter(path, sample_rate, channels) as writer:
        try:
            writer.write(array)
        except ValueError:
            writer.close()
            Path(path).unlink(missing_ok=True)  # leave no empty file behind a refused write
            raise

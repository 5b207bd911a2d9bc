"""WAV files in and out of the core.

Reading accepts whatever PCM or float WAV a user is likely to hand us (any bit depth and
channel count that ``scipy.io.wavfile`` understands) and normalises it to float32 in
[-1, 1], so everything downstream deals with one sample format. Writing is always IEEE
float32: the model produces float audio, and float WAV keeps it bit-exact (no dithering,
no clipping decisions) while every common tool can still open it.

``WavWriter`` streams: a session recorder appends one 80 ms chunk at a time for hours, so
the file must never be held in memory, and it must be a valid WAV whenever it is closed.
Writes go through a buffer of about a second of a session's audio: ``sync`` (or, with
``sync_frames``, every that many frames) patches the header's sizes and hands everything
to the operating system, so a process killed outright leaves a file that reads back up to
the last sync, and ``repair_wav`` makes the sizes match whatever whole frames reached it.

Besides PCM and float, reading decodes G.711 μ-law and A-law (8-bit, format tags 7 and 6),
the encodings telephony and some recorders write; anything else is refused by name.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import scipy.io.wavfile

from moshiface_ros.errors import MoshifaceError

from .g711 import MULAW, TABLES as G711_TABLES

__all__ = ["read_wav", "repair_wav", "WavWriter", "WavSizeLimit", "write_wav"]

_WAVE_FORMAT_IEEE_FLOAT = 3
_BYTES_PER_SAMPLE = 4
# RIFF sizes are 32-bit: the data chunk cannot grow past this without RF64.
_MAX_RIFF_SIZE = 0xFFFFFFFF
# More than a second of 24 kHz mono float: a session's writes reach the OS when it syncs.
_BUFFER_BYTES = 1 << 18

# Errors scipy (and struct/numpy under it) raise on malformed or non-WAV input
# (UnboundLocalError: scipy's reader on a header whose sizes are 0).
_PARSE_ERRORS = (ValueError, EOFError, struct.error, ZeroDivisionError, IndexError,
                 TypeError, OverflowError, MemoryError, UnboundLocalError)


class WavSizeLimit(ValueError):
    """A write would take the file past the 4 GiB a RIFF size can describe."""


_HEAD_BYTES = 4096  # the chunks before the samples fit in this in every file we write or read
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


@dataclass(frozen=True)
class _Layout:
    """Where a WAV's samples start and what its header says about them."""

    data_offset: int
    data_size: int
    fact_offset: int | None  # the fact chunk's sample count, when there is one
    format_tag: int
    channels: int
    rate: int
    bits: int
    block_align: int


def _data_layout(head: bytes) -> _Layout | None:
    """The layout of a RIFF/WAVE file from its first bytes (None: not one, or no data chunk
    in them)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    fmt: tuple[int, ...] | None = None
    fact = None
    offset = 12
    while offset + 8 <= len(head):
        chunk_id, size = head[offset:offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        body = offset + 8
        if chunk_id == b"fmt " and size >= 16 and body + 16 <= len(head):
            fmt = struct.unpack_from("<HHIIHH", head, body)
            if fmt[0] == _WAVE_FORMAT_EXTENSIBLE and size >= 26 and body + 26 <= len(head):
                fmt = (struct.unpack_from("<H", head, body + 24)[0],) + fmt[1:]
        elif chunk_id == b"fact":
            fact = body
        elif chunk_id == b"data":
            if fmt is None:
                return None
            tag, channels, rate, _, align, bits = fmt
            return _Layout(body, size, fact, tag, channels, rate, bits, align)
        offset = body + size + (size & 1)
    return None


def _read_layout(path: Path) -> _Layout | None:
    with open(path, "rb") as file:
        return _data_layout(file.read(_HEAD_BYTES))


def read_g711(path: Path) -> tuple[int, np.ndarray] | None:
    """A μ-law or A-law WAV decoded to float32 (frames, channels); None for other encodings."""
    layout = _read_layout(path)
    if layout is None or layout.format_tag not in G711_TABLES:
        return None
    name = "mu-law" if layout.format_tag == MULAW else "A-law"
    if layout.bits != 8 or layout.channels <= 0:
        raise MoshifaceError(f"{path} is a {name} WAV with {layout.bits} bits and {layout.channels} "
                             "channels; G.711 is 8 bits and at least one channel")
    with open(path, "rb") as file:
        file.seek(layout.data_offset)
        codes = np.frombuffer(file.read(layout.data_size), dtype=np.uint8)
    codes = codes[:len(codes) // layout.channels * layout.channels]
    return layout.rate, G711_TABLES[layout.format_tag][codes].reshape(-1, layout.channels)


def repair_wav(path: str | Path) -> int:
    """Makes the header's sizes match the whole frames in the file (a recording whose
    writer was killed); drops a partial last frame. Returns the frames it holds."""
    path = Path(path)
    try:
        layout = _read_layout(path)
        if layout is None or layout.block_align <= 0:
            raise MoshifaceError(f"{path} is not a WAV file this can repair (no RIFF/WAVE header with fmt and data)")
        frames = max(0, path.stat().st_size - layout.data_offset) // layout.block_align
        data_bytes = frames * layout.block_align
        with open(path, "r+b") as file:
            file.truncate(layout.data_offset + data_bytes)
            _patch_sizes(file, layout.data_offset - 8 + data_bytes, layout.fact_offset, frames,
                         layout.data_offset - 4, data_bytes)
    except OSError as exc:
        raise MoshifaceError(f"cannot repair {path}: {exc.strerror or exc}") from exc
    return frames


def _patch_sizes(file: BinaryIO, riff_size: int, fact_offset: int | None, frames: int,
                 data_size_offset: int, data_bytes: int) -> None:
    """Writes a WAV's sizes into its header and returns to where the file was."""
    position = file.tell()
    file.seek(4)
    file.write(struct.pack("<I", riff_size))
    if fact_offset is not None:
        file.seek(fact_offset)
        file.write(struct.pack("<I", frames))
    file.seek(data_size_offset)
    file.write(struct.pack("<I", data_bytes))
    file.seek(position)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 samples shaped (frames, channels) and its sample rate.

    Integer PCM is scaled to [-1, 1] (8-bit is unsigned and centred on 128); float files
    are returned as stored. Problems a user can fix are reported as a one-line
    :class:`MoshifaceError` naming the file, because a scipy traceback about chunk ids
    tells a robot builder nothing.
    """
    path = Path(path)
    _check_readable_path(path)
    _check_sizes(path)
    g711 = read_g711(path)
    rate, data = g711 if g711 is not None else _parse_wav(path)
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


def _check_sizes(path: Path) -> None:
    """A header whose RIFF or data size is 0 over a longer file is a recording that was
    never closed: say so (and how to repair it) instead of a parser's confusion."""
    try:
        with open(path, "rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError as exc:
        raise MoshifaceError(f"{path} cannot be read ({exc.strerror or type(exc).__name__})") from exc
    layout = _data_layout(head)
    if layout is None or path.stat().st_size <= layout.data_offset:
        return
    if struct.unpack_from("<I", head, 4)[0] == 0 or layout.data_size == 0:
        raise MoshifaceError(f"{path} has 0 in its RIFF/data sizes: the recording was not closed "
                             "(repair a session with `moshiface recover SESSION`)")


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
    including none, leaves a valid file once closed. ``sync`` patches the sizes and hands
    what was written to the operating system; with ``sync_frames`` a write does that every
    that many frames.
    """

    def __init__(self, path: str | Path, sample_rate: int, channels: int = 1, sync_frames: int = 0) -> None:
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
        if int(channels) != channels or channels <= 0:
            raise ValueError(f"channels must be a positive integer, got {channels}")
        self._path = Path(path)
        self._sample_rate = int(sample_rate)
        self._channels = int(channels)
        self._frames = 0
        self._sync_frames = int(sync_frames)
        self._synced_frames = 0
        self._file: BinaryIO | None = open(self._path, "wb", buffering=_BUFFER_BYTES)
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
            raise WavSizeLimit(f"{self._path} reached the 4 GiB WAV size limit")
        self._file.write(frames.astype("<f4", copy=False).tobytes())
        self._frames += frames.shape[0]
        if self._sync_frames and self._frames - self._synced_frames >= self._sync_frames:
            self.sync()

    def sync(self) -> None:
        """Makes the header's sizes true and hands everything written to the operating
        system: a process killed after this leaves a file that reads back whole."""
        if self._file is None:
            raise ValueError(f"cannot sync {self._path}: the WavWriter is closed")
        self._write_sizes(self._file)
        self._file.flush()
        self._synced_frames = self._frames

    def _write_sizes(self, file: BinaryIO) -> None:
        data_bytes = self._frames * self._channels * _BYTES_PER_SAMPLE
        _patch_sizes(file, self._header_size - 8 + data_bytes, self._fact_offset, self._frames,
                     self._data_size_offset, data_bytes)

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
            self._write_sizes(file)
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

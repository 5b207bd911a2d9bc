"""WAV reading (every PCM flavour, clear errors) and the streaming float32 writer."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from hypothesis import given, settings
from hypothesis import strategies as st

from moshiface_ros.audio.wav import WavSizeLimit, WavWriter, read_wav, repair_wav, write_wav
from moshiface_ros.errors import MoshifaceError


def _pcm_wav_bytes(samples: np.ndarray, rate: int, bits: int, extensible: bool = False,
                   format_tag: int = 1) -> bytes:
    """Build a WAV by hand, for layouts scipy cannot write (24-bit, EXTENSIBLE)."""
    frames, channels = samples.shape
    width = bits // 8
    if format_tag == 3:
        payload = samples.astype(f"<f{width}").tobytes()
    else:
        ints = samples.astype(np.int64).reshape(-1)
        payload = b"".join(int(v).to_bytes(width, "little", signed=bits > 8) for v in ints)
    block = channels * width
    base = struct.pack("<HIIHH", channels, rate, rate * block, block, bits)
    if extensible:
        guid = struct.pack("<I", format_tag) + b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<H", 0xFFFE) + base + struct.pack("<HHI", 22, bits, 0) + guid
    else:
        fmt = struct.pack("<H", format_tag) + base
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(MoshifaceError, match=match) as info:
        read_wav(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# --- reading -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("dtype,full_scale", [(np.int16, 32768.0), (np.int32, 2.0**31)])
def test_read_signed_int_scaled(tmp_path, channels, dtype, full_scale):
    info = np.iinfo(dtype)
    data = np.array([info.min, -1, 0, 1, info.max, info.max // 2], dtype=dtype)
    data = np.repeat(data[:, None], channels, axis=1)
    scipy.io.wavfile.write(tmp_path / "x.wav", 22050, data if channels > 1 else data[:, 0])
    samples, rate = read_wav(tmp_path / "x.wav")
    assert rate == 22050
    assert samples.dtype == np.float32 and samples.shape == (6, channels)
    np.testing.assert_allclose(samples, data / full_scale, rtol=0, atol=1e-7)
    assert samples.min() == -1.0 and samples.max() <= 1.0  # float32 rounds (2**31-1)/2**31 up


def test_read_uint8_centred(tmp_path):
    data = np.array([0, 64, 128, 192, 255], dtype=np.uint8)
    scipy.io.wavfile.write(tmp_path / "u8.wav", 8000, data)
    samples, rate = read_wav(str(tmp_path / "u8.wav"))
    assert rate == 8000 and samples.shape == (5, 1)
    np.testing.assert_array_equal(samples[:, 0], [-1.0, -0.5, 0.0, 0.5, 127 / 128])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_read_float_as_stored(tmp_path, dtype):
    data = np.linspace(-1.0, 1.0, 101).astype(dtype).reshape(-1, 1).repeat(2, axis=1)
    scipy.io.wavfile.write(tmp_path / "f.wav", 48000, data)
    samples, rate = read_wav(tmp_path / "f.wav")
    assert rate == 48000 and samples.dtype == np.float32
    np.testing.assert_array_equal(samples, data.astype(np.float32))


@pytest.mark.parametrize("extensible", [False, True])
def test_read_24_bit(tmp_path, extensible):
    ints = np.array([[-(2**23), 2**23 - 1], [0, 1], [2**22, -(2**22)]])
    path = tmp_path / "24.wav"
    path.write_bytes(_pcm_wav_bytes(ints, 44100, 24, extensible=extensible))
    samples, rate = read_wav(path)
    assert rate == 44100 and samples.shape == (3, 2)
    np.testing.assert_allclose(samples, ints / 2.0**23, rtol=0, atol=1e-7)


def test_read_extensible_float(tmp_path):
    data = np.array([[0.25, -0.5], [1.0, -1.0]], dtype=np.float32)
    path = tmp_path / "ext.wav"
    path.write_bytes(_pcm_wav_bytes(data, 16000, 32, extensible=True, format_tag=3))
    samples, _ = read_wav(path)
    np.testing.assert_array_equal(samples, data)


def test_read_silences_scipy_warnings(tmp_path):
    good = _pcm_wav_bytes(np.zeros((4, 1)) + 7, 16000, 16)
    # An unknown chunk before the data makes scipy warn; the samples are still fine.
    odd = good[:36] + b"abcd" + struct.pack("<I", 2) + b"zz" + good[36:]
    odd = b"RIFF" + struct.pack("<I", len(odd) - 8) + odd[8:]
    path = tmp_path / "odd.wav"
    path.write_bytes(odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples, _ = read_wav(path)
    np.testing.assert_allclose(samples[:, 0], 7 / 32768)


# --- reading errors --------------------------------------------------------------------


def test_missing_file(tmp_path):
    _one_line_error(tmp_path / "nope.wav", "does not exist")


def test_directory(tmp_path):
    _one_line_error(tmp_path, "directory")


def test_text_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not samples\nsecond line\n")
    _one_line_error(path, "is not a WAV file")


@pytest.mark.parametrize("size", [0, 3, 200])
def test_random_bytes(tmp_path, size):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(size).bytes(size))
    _one_line_error(path, "is not a WAV file")


def test_truncated_header(tmp_path):
    path = tmp_path / "cut.wav"
    path.write_bytes(_pcm_wav_bytes(np.zeros((10, 1)), 16000, 16)[:30])
    _one_line_error(path, "is not a WAV file")


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    scipy.io.wavfile.write(path, 16000, np.zeros(0, np.int16))
    _one_line_error(path, "0 frames")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(tmp_path, bad):
    path = tmp_path / "nan.wav"
    scipy.io.wavfile.write(path, 16000, np.array([0.0, bad, 0.5], np.float32))
    _one_line_error(path, "NaN or infinite")


def test_float64_beyond_float32_range(tmp_path):
    path = tmp_path / "huge.wav"
    scipy.io.wavfile.write(path, 16000, np.array([0.0, 1e300], np.float64))
    _one_line_error(path, "NaN or infinite")


def test_zero_sample_rate(tmp_path):
    path = tmp_path / "rate0.wav"
    data = bytearray(_pcm_wav_bytes(np.zeros((4, 1)), 16000, 16))
    data[24:28] = struct.pack("<I", 0)  # nSamplesPerSec
    data[28:32] = struct.pack("<I", 0)  # nAvgBytesPerSec, kept consistent
    path.write_bytes(bytes(data))
    _one_line_error(path, "sample rate")


# --- writing ---------------------------------------------------------------------------


def _chunk_ids(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    ids, offset = [], 12
    while offset < len(raw):
        ids.append(raw[offset:offset + 4])
        offset += 8 + struct.unpack("<I", raw[offset + 4:offset + 8])[0]
    return ids


def test_writer_zero_writes_is_valid(tmp_path):
    path = tmp_path / "none.wav"
    with WavWriter(path, 24000) as writer:
        assert writer.frames_written == 0
    rate, data = scipy.io.wavfile.read(path)
    assert rate == 24000 and data.dtype == np.float32 and data.size == 0
    assert _chunk_ids(path) == [b"fmt ", b"fact", b"data"]


def test_writer_header_fields(tmp_path):
    path = tmp_path / "h.wav"
    with WavWriter(path, 16000, channels=2) as writer:
        writer.write(np.zeros((300, 2), np.float32))
        writer.write(np.zeros((21, 2), np.float32))
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (tag, channels, rate, byte_rate, align, bits) == (3, 2, 16000, 128000, 8, 32)
    fact = raw.index(b"fact")
    assert struct.unpack("<I", raw[fact + 8:fact + 12])[0] == 321
    data = raw.index(b"data")
    assert struct.unpack("<I", raw[data + 4:data + 8])[0] == 321 * 2 * 4
    assert len(raw) == data + 8 + 321 * 2 * 4


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 50), max_size=12), channels=st.integers(1, 3))
def test_writer_streams_bit_exactly(tmp_path_factory, sizes, channels):
    path = tmp_path_factory.mktemp("w") / "s.wav"
    rng = np.random.default_rng(len(sizes))
    parts = [rng.standard_normal((n, channels)).astype(np.float32) for n in sizes]
    with WavWriter(path, 44100, channels) as writer:
        for part in parts:
            writer.write(part[:, 0] if channels == 1 else part)
    expected = np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)
    assert writer.frames_written == expected.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rate, data = scipy.io.wavfile.read(path)
    assert rate == 44100
    np.testing.assert_array_equal(data.reshape(-1, channels), expected)
    if expected.shape[0]:
        samples, _ = read_wav(path)
        np.testing.assert_array_equal(samples, expected)


def test_writer_converts_float64(tmp_path):
    x = np.array([0.1, -0.2, 1 / 3])
    write_wav(tmp_path / "d.wav", x, 8000)
    samples, rate = read_wav(tmp_path / "d.wav")
    assert rate == 8000
    np.testing.assert_array_equal(samples[:, 0], x.astype(np.float32))


def test_write_after_close(tmp_path):
    writer = WavWriter(tmp_path / "c.wav", 16000)
    writer.write(np.zeros(10, np.float32))
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros(10, np.float32))
    assert read_wav(tmp_path / "c.wav")[0].shape == (10, 1)


@pytest.mark.parametrize("bad", [
    np.zeros((10, 2), np.float32),   # wrong channel count
    np.zeros((2, 2, 2), np.float32),  # wrong ndim
    np.zeros(10, np.int16),           # integers: ambiguous scale
    np.array([0.0, np.nan], np.float32),
])
def test_writer_rejects_bad_samples(tmp_path, bad):
    with WavWriter(tmp_path / "bad.wav", 16000) as writer:
        with pytest.raises(ValueError):
            writer.write(bad)
        assert writer.frames_written == 0
    assert scipy.io.wavfile.read(tmp_path / "bad.wav")[1].size == 0


def test_write_wav_stereo_and_refusal(tmp_path):
    x = np.array([[0.5, -0.5], [0.25, -0.25]], np.float32)
    write_wav(tmp_path / "st.wav", x, 32000)
    samples, rate = read_wav(tmp_path / "st.wav")
    assert rate == 32000
    np.testing.assert_array_equal(samples, x)
    with pytest.raises(ValueError):
        write_wav(tmp_path / "nan.wav", np.array([np.inf], np.float32), 32000)
    assert not (tmp_path / "nan.wav").exists()


@pytest.mark.parametrize("rate,channels", [(0, 1), (-5, 1), (16000, 0)])
def test_writer_rejects_bad_config(tmp_path, rate, channels):
    with pytest.raises(ValueError):
        WavWriter(tmp_path / "cfg.wav", rate, channels)


# -- G.711 (mu-law, A-law), killed writers, the size limit ---------------------------------


def _g711_wav(codes: np.ndarray, rate: int, tag: int, channels: int = 1) -> bytes:
    """A WAV of G.711 codes as telephony tools write it (18-byte fmt, fact chunk)."""
    fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * channels, channels, 8, 0)
    data = codes.astype(np.uint8).tobytes()
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4)
            + struct.pack("<I", len(codes) // channels) + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _mulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law by its definition (sign, biased magnitude, exponent, mantissa, inverted)."""
    value = np.clip(np.round(x * 32768), -32635, 32635).astype(np.int32)
    sign = np.where(value < 0, 0x80, 0)
    magnitude = np.abs(value) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa)) & 0xFF


@pytest.mark.parametrize("channels", [1, 2])
def test_mulaw_wav_is_decoded(tmp_path, channels):
    """A mu-law WAV used to be refused as "not a WAV file"; the decoded signal is the input
    to within mu-law's quantisation (about 3 % of the value)."""
    rate = 8000
    signal = 0.5 * np.sin(2 * np.pi * 300 * np.arange(800) / rate)
    codes = np.repeat(_mulaw_encode(signal), channels)
    path = tmp_path / "mulaw.wav"
    path.write_bytes(_g711_wav(codes, rate, 7, channels))
    samples, got_rate = read_wav(path)
    assert got_rate == rate and samples.shape == (800, channels) and samples.dtype == np.float32
    np.testing.assert_allclose(samples[:, 0], signal, atol=0.02)
    assert np.abs(samples[:, 0] - signal).max() > 0  # really quantised: this is the decoder's work


def test_alaw_wav_known_codes(tmp_path):
    """A-law codes from the G.711 tables: 0xD5 = +8, 0x55 = -8, 0xAA = +32256, 0x2A = -32256."""
    path = tmp_path / "alaw.wav"
    path.write_bytes(_g711_wav(np.array([0xD5, 0x55, 0xAA, 0x2A]), 8000, 6))
    samples, _ = read_wav(path)
    np.testing.assert_array_equal(samples[:, 0] * 32768, [8, -8, 32256, -32256])


def test_g711_with_16_bits_is_refused_by_name(tmp_path):
    path = tmp_path / "odd.wav"
    data = bytearray(_g711_wav(np.zeros(10), 8000, 7))
    data[34:36] = struct.pack("<H", 16)  # bits per sample
    path.write_bytes(bytes(data))
    with pytest.raises(MoshifaceError, match="mu-law WAV with 16 bits"):
        read_wav(path)


def test_synced_writer_leaves_a_readable_file_when_killed(tmp_path):
    """With sync_frames, the file reads back up to the last sync even if close never runs
    (the process was killed): the blocks after it are still in the writer's buffer, not in
    the file; repair_wav recovers every whole frame that did reach the file after a sync."""
    path = tmp_path / "robot.wav"
    writer = WavWriter(path, 24000, sync_frames=24000)
    for _ in range(20):  # 1.6 s in 80 ms blocks: one sync at 1.04 s
        writer.write(np.full(1920, 0.25, np.float32))
    # no close: as a SIGKILL leaves it
    rate, data = scipy.io.wavfile.read(path)
    assert rate == 24000 and len(data) == 13 * 1920 and path.stat().st_size == 58 + 13 * 1920 * 4
    writer.sync()  # by hand: the sizes true again, every block in the file
    rate, data = scipy.io.wavfile.read(path)
    assert len(data) == 20 * 1920 and np.all(data == 0.25)
    with open(path, "ab") as file:  # frames that reached the file after the sync, then half a frame
        file.write(np.full(2 * 1920, 0.5, "<f4").tobytes() + b"\x00\x00")
    assert repair_wav(path) == 22 * 1920
    samples, _ = read_wav(path)
    assert samples.shape == (22 * 1920, 1) and np.all(samples[:20 * 1920] == 0.25)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.sync()


def test_size_limit_is_its_own_error(tmp_path, monkeypatch):
    from moshiface_ros.audio import wav

    monkeypatch.setattr(wav, "_MAX_RIFF_SIZE", 50 + 100 * 4)
    with WavWriter(tmp_path / "x.wav", 24000) as writer:
        writer.write(np.zeros(100, np.float32))
        with pytest.raises(WavSizeLimit, match="4 GiB WAV size limit"):
            writer.write(np.zeros(1, np.float32))

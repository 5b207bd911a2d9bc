"""AudioFramer: any rate, channel count and block size in; exact 24 kHz model frames out."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from moshiface_ros.audio.framer import AudioFramer


def _sine(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _run(framer: AudioFramer, signal: np.ndarray, block_sizes) -> tuple[list[np.ndarray], int]:
    """Push signal in the given block sizes (cycled), flush, return chunks and real length."""
    chunks, start, sizes = [], 0, list(block_sizes)
    i = 0
    while start < signal.shape[0]:
        size = sizes[i % len(sizes)]
        chunks += framer.push(signal[start:start + size])
        start += size
        i += 1
    chunks += framer.flush()
    return chunks, framer.samples_out


def _random_sizes(seed: int, high: int = 5000) -> list[int]:
    return list(np.random.default_rng(seed).integers(1, high, size=64))


@pytest.mark.parametrize("in_rate", [16000, 24000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_sine_resampled_to_24k(in_rate, channels):
    signal = _sine(440.0, 2.0, in_rate)
    if channels == 2:
        signal = np.stack([signal, signal], axis=1)
    framer = AudioFramer(in_rate, channels)
    chunks, real = _run(framer, signal, _random_sizes(in_rate))
    assert all(c.shape == (1920,) and c.dtype == np.float32 for c in chunks)
    assert framer.frames_out == len(chunks)
    out = np.concatenate(chunks)
    expected = 2.0 * 24000
    assert abs(real - expected) <= 3
    assert len(chunks) == -(-real // 1920)
    assert not out[real:].any()  # flush padding is zeros
    spectrum = np.abs(np.fft.rfft(out[:real] * np.hanning(real)))
    freqs = np.fft.rfftfreq(real, 1 / 24000)
    assert abs(freqs[np.argmax(spectrum)] - 440.0) <= freqs[1]
    # Level survives: a 0.5 sine keeps its amplitude away from the edges.
    assert abs(np.max(np.abs(out[2000:real - 2000])) - 0.5) < 0.01


@pytest.mark.parametrize("in_rate", [16000, 44100, 48000])
def test_blocks_match_one_shot_resampling(in_rate):
    """Streaming output equals resampling the whole signal: no clicks at block edges."""
    rng = np.random.default_rng(1)
    signal = (_sine(440.0, 1.5, in_rate) + 0.1 * rng.standard_normal(int(1.5 * in_rate))
              ).astype(np.float32)
    chunks, real = _run(AudioFramer(in_rate, 1), signal, _random_sizes(7, 700))
    streamed = np.concatenate(chunks)[:real]
    whole = soxr.resample(signal, in_rate, 24000, quality="HQ")
    assert abs(len(whole) - real) <= 1
    n = min(len(whole), real)
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-5


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=20),
       in_rate=st.sampled_from([16000, 22050, 24000, 44100, 48000]))
def test_block_sizes_do_not_change_output(sizes, in_rate):
    signal = np.random.default_rng(3).uniform(-0.5, 0.5, int(0.7 * in_rate)).astype(np.float32)
    one_block, real_one = _run(AudioFramer(in_rate, 1), signal, [signal.shape[0]])
    pieces, real_pieces = _run(AudioFramer(in_rate, 1), signal, sizes)
    assert real_one == real_pieces
    assert len(one_block) == len(pieces)
    np.testing.assert_allclose(np.concatenate(pieces), np.concatenate(one_block),
                               rtol=0, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 2500), min_size=1, max_size=30),
       frame_size=st.sampled_from([1, 7, 480, 1920]))
def test_chunks_are_always_exact(sizes, frame_size):
    framer = AudioFramer(44100, 2, frame_size=frame_size)
    total = 0
    for size in sizes:
        out = framer.push(np.zeros((size, 2), np.float32))
        assert all(c.shape == (frame_size,) and c.dtype == np.float32 for c in out)
        total += len(out)
        assert 0 <= framer.pending < frame_size
    out = framer.flush()
    assert all(c.shape == (frame_size,) for c in out)
    assert framer.frames_out == total + len(out)
    assert framer.pending == 0


def test_passthrough_is_exact_and_copies():
    signal = np.random.default_rng(0).uniform(-1, 1, 5000).astype(np.float32)
    framer = AudioFramer(24000, 1, frame_size=1000)
    buffer = signal[:2500].copy()
    chunks = framer.push(buffer)
    buffer[:] = 9.0  # a device callback reusing its buffer must not change our output
    chunks += framer.push(signal[2500:])
    assert framer.flush() == []
    np.testing.assert_array_equal(np.concatenate(chunks), signal)


def test_downmix_averages_channels():
    rng = np.random.default_rng(2)
    left, right = rng.uniform(-1, 1, (2, 960)).astype(np.float32)
    framer = AudioFramer(24000, 2, frame_size=480)
    chunks = framer.push(np.stack([left, right], axis=1))
    np.testing.assert_allclose(np.concatenate(chunks), (left + right) / 2, atol=1e-7)
    # Opposite-phase channels cancel, also through the resampler.
    sine = _sine(300.0, 0.5, 48000)
    framer = AudioFramer(48000, 2)
    chunks = framer.push(np.stack([sine, -sine], axis=1)) + framer.flush()
    assert np.max(np.abs(np.concatenate(chunks))) < 1e-6


def test_flush_pads_and_resets():
    framer = AudioFramer(24000, 1, frame_size=100)
    assert framer.flush() == []
    assert framer.push(np.full(250, 0.25, np.float32)) and framer.pending == 50
    tail = framer.flush()
    assert len(tail) == 1 and framer.frames_out == 3 and framer.samples_out == 250
    np.testing.assert_array_equal(tail[0][:50], 0.25)
    np.testing.assert_array_equal(tail[0][50:], 0.0)
    assert framer.flush() == []


def test_resampling_framer_reusable_after_flush():
    signal = _sine(440.0, 0.3, 16000)
    framer = AudioFramer(16000, 1)
    first = _run(framer, signal, [1000])[0]
    samples_after_first = framer.samples_out
    second = _run(framer, signal, [333])[0]
    assert framer.samples_out == 2 * samples_after_first
    np.testing.assert_allclose(np.concatenate(first), np.concatenate(second), atol=1e-6)


def test_empty_and_float64_blocks():
    framer = AudioFramer(48000, 1, frame_size=10)
    assert framer.push(np.zeros(0, np.float32)) == []
    assert framer.push(np.zeros((0, 1))) == []
    chunks = framer.push(np.ones(2000, np.float64) * 0.1)  # more than the resampler delay
    assert chunks and all(c.dtype == np.float32 for c in chunks)


@pytest.mark.parametrize("framer_args,block,match", [
    ((16000, 2), np.zeros((10, 1), np.float32), "channels"),
    ((16000, 2), np.zeros(10, np.float32), "1-D"),
    ((16000, 1), np.zeros((10, 1, 1), np.float32), "3-D"),
    ((16000, 1), np.array([0.0, np.nan], np.float32), "NaN"),
    ((16000, 2), np.array([[0.0, np.inf]], np.float32), "infinite"),
    ((16000, 1), np.zeros(10, np.int16), "floating-point"),
])
def test_bad_blocks(framer_args, block, match):
    framer = AudioFramer(*framer_args)
    with pytest.raises(ValueError, match=match) as info:
        framer.push(block)
    assert "\n" not in str(info.value)
    assert framer.frames_out == 0 and framer.pending == 0


@pytest.mark.parametrize("kwargs", [
    dict(in_rate=0, in_channels=1), dict(in_rate=16000, in_channels=0),
    dict(in_rate=16000, in_channels=1, out_rate=-1),
    dict(in_rate=16000, in_channels=1, frame_size=0),
    dict(in_rate=16000.5, in_channels=1),
])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        AudioFramer(**kwargs)


def test_long_stream_small_blocks():
    """Many tiny blocks stay cheap and exact (the FIFO does not re-copy the backlog)."""
    framer = AudioFramer(48000, 1)
    block = np.zeros(48, np.float32)  # 1 ms blocks, 20 s of audio
    produced = sum(len(framer.push(block)) for _ in range(20000))
    produced += len(framer.flush())
    assert produced == framer.frames_out == 250

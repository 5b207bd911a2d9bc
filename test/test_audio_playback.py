"""Speaker playback through a real PulseAudio server, heard on the sinks' monitors.

Audio sent to ``AudioPlayback`` must come out of the speaker intact at 16, 44.1 and
48 kHz, mono or stereo; at ``stamp + presentation delay``; a stalled producer must give
counted underruns, dropped late chunks and silence, never repeated audio. The jitter
buffer's rules are also tested on their own.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soxr
from scipy.signal import correlate

from moshiface_ros.audio.diagnostics import OK, WARN, playback_status
from moshiface_ros.audio.jitter import JitterBuffer, PutResult
from moshiface_ros.audio.playback import AudioPlayback, PlaybackConfig
from moshiface_ros.audio.capture import AudioCapture, CaptureConfig
from moshiface_ros.audio.synth import synthetic_speech, tone
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.constants import NS_PER_S, PRESENTATION_DELAY_MS, STEP_NS
from moshiface_ros.messages.types import AudioChunk
from pulse_server import Microphone, Sink, Unavailable, pulse_or_skip

FORMATS = [(16000, 1), (44100, 2), (48000, 2)]


@pytest.fixture(scope="module")
def pulse():
    sinks = [Sink(f"speaker{rate // 1000}", rate, channels) for rate, channels in FORMATS]
    # the speaker's monitor as a microphone: what the speaker plays, stamped by capture
    mics = [Microphone("room", "speaker48")]
    with pulse_or_skip(sinks, mics, unavailable=[Unavailable("gone_speaker", "playback")]) as server:
        yield server


def _chunks(signal: np.ndarray, first_stamp_ns: int) -> list[AudioChunk]:
    return [AudioChunk(first_stamp_ns + (i // 1920) * STEP_NS, 24000, signal[i:i + 1920],
                       sequence=i // 1920) for i in range(0, signal.shape[0], 1920)]


def _aligned_error(heard: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Relative rms error of ``heard`` against ``expected`` at the best sub-sample lag.

    A chunk lands on the device's sample grid at a fraction of a sample that depends on
    the stream's start (24 kHz -> 16 kHz has three phases), so the comparison searches
    the fractional shift too (FFT phase shift), or high frequencies would look wrong.
    """
    lag = int(np.argmax(correlate(heard, expected, mode="valid", method="fft")))
    segment = heard[lag:lag + expected.shape[0]].astype(np.float64)
    spectrum = np.fft.rfft(expected, 2 * expected.shape[0])
    freqs = np.fft.rfftfreq(2 * expected.shape[0])
    best = np.inf
    for shift in np.linspace(-0.6, 0.6, 61):
        shifted = np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * shift))[:expected.shape[0]]
        best = min(best, float(np.sqrt(np.mean((segment - shifted) ** 2))))
    return best / float(np.sqrt(np.mean(expected.astype(np.float64) ** 2))), lag


def _record_while(pulse, sink: str, rate: int, channels: int, tmp_path, seconds: float, action):
    """Record a sink's monitor to a WAV file around ``action()``; the samples."""
    recording = pulse.record(f"{sink}.monitor", tmp_path / f"{sink}.wav", rate, channels)
    time.sleep(0.3)  # parec is connected and running
    result = action()
    time.sleep(seconds)
    samples, recorded_rate = recording.stop()
    assert recorded_rate == rate
    return samples, result


@pytest.mark.parametrize("rate, channels", FORMATS, ids=[f"{r}Hz-{c}ch" for r, c in FORMATS])
def test_audio_comes_out_of_the_speaker_intact(pulse, tmp_path, rate, channels):
    speech = synthetic_speech(1.2, 24000, seed=7)
    sink = f"speaker{rate // 1000}"
    with AudioPlayback(PlaybackConfig(sink, sample_rate=rate, channels=channels)) as playback:
        def send():
            for chunk in _chunks(speech, time.time_ns()):
                playback.push(chunk)
        # listen for the speech, the default presentation delay and 0.4 s of tail
        listen_s = 1.2 + PRESENTATION_DELAY_MS / 1000.0 + 0.4
        recorded, _ = _record_while(pulse, sink, rate, channels, tmp_path, listen_s, send)
        stats = playback.stats()
    assert stats.played == 15 and stats.late_drops == 0 and stats.underruns == 0
    assert stats.sample_rate == rate and stats.channels == channels
    for c in range(1, channels):  # mono is copied to every channel
        np.testing.assert_array_equal(recorded[:, c], recorded[:, 0])
    expected = soxr.resample(speech, 24000, rate, quality="HQ") if rate != 24000 else speech
    heard = recorded[:, 0]
    error, lag = _aligned_error(heard, expected)
    assert error < 0.01, error  # 16-bit sink quantisation, nothing else
    assert np.max(np.abs(heard[:lag])) < 1e-3  # silence before, no garbage
    assert np.max(np.abs(heard[lag + expected.shape[0] + rate // 100:])) < 1e-3


def test_each_chunk_is_heard_at_its_stamp_plus_the_presentation_delay(pulse):
    """The speaker's monitor, captured with stamps, hears each beep at stamp + delay."""
    delay_ms = 250.0
    beep = np.zeros(1920, np.float32)
    beep[:480] = tone(1000.0, 0.02, 24000)
    config = PlaybackConfig("speaker48", sample_rate=48000, presentation_delay_ms=delay_ms)
    errors = []
    with AudioPlayback(config) as playback, \
            AudioCapture(CaptureConfig("room", sample_rate=48000, channels=2)) as capture:
        for k in range(3):
            stamp = time.time_ns()
            playback.push(AudioChunk(stamp, 24000, beep, sequence=k))
            heard = []
            end = time.monotonic() + 0.45
            while time.monotonic() < end:
                chunk = capture.read(timeout=0.1)
                if chunk is not None:
                    heard.append(chunk)
            signal = np.concatenate([c.samples for c in heard])
            onset = np.flatnonzero(np.abs(signal) > 0.05)[0]
            onset_ns = heard[onset // 1920].stamp_ns + (onset % 1920) * NS_PER_S // 24000
            errors.append((onset_ns - stamp) / 1e6 - delay_ms)
    assert all(abs(e) < 30.0 for e in errors), errors


def _levels(samples: np.ndarray, step: float, min_run: int) -> list[int]:
    """The plateau levels (in units of ``step``) of a staircase signal, in order, with runs
    shorter than ``min_run`` samples (edges, resampler ringing) left out."""
    quantised = np.round(samples / step).astype(int)
    edges = np.flatnonzero(np.diff(quantised)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [quantised.shape[0]]])
    return [int(quantised[a]) for a, b in zip(starts, stops) if b - a >= min_run]


def test_a_stalled_producer_gives_counted_underruns_dropped_late_chunks_and_no_repeats(pulse, tmp_path):
    """Chunk i is a constant level (i + 1) * 0.04, sent in real time; after chunk 7 the
    sender stalls 0.5 s, then sends the backlog. What was due meanwhile is dropped as
    late, the gap is silence, and no level is ever heard twice."""
    step, count = 0.04, 20
    results: dict[int, str] = {}
    with AudioPlayback(PlaybackConfig("speaker48", sample_rate=48000, channels=2)) as playback:
        def produce():
            start = time.time_ns()
            for i in range(count):
                if i == 8:
                    time.sleep(0.5)
                target = start + i * STEP_NS
                time.sleep(max(0.0, (target - time.time_ns()) / NS_PER_S))
                chunk = AudioChunk(start + i * STEP_NS, 24000,
                                   np.full(1920, (i + 1) * step, np.float32), sequence=i)
                results[i] = playback.push(chunk)

        def run():
            thread = threading.Thread(target=produce)
            thread.start()
            return thread

        recorded, thread = _record_while(pulse, "speaker48", 48000, 2, tmp_path, 2.6, run)
        thread.join()
        stats = playback.stats()
    late = sorted(i for i, r in results.items() if r == PutResult.LATE)
    assert late and late[0] == 8 and late == list(range(8, 8 + len(late)))
    assert stats.late_drops == len(late) and stats.underruns == 1
    levels = _levels(recorded[:, 0], step, min_run=1920)  # 40 ms at 48 kHz
    heard = [level for level in levels if level != 0]
    assert heard == sorted(set(heard)), levels  # strictly increasing: nothing repeated
    assert heard == [i + 1 for i in range(count) if results[i] == PutResult.QUEUED]
    assert 0 in levels[levels.index(8):]  # silence where the late chunks would have been

    report = playback_status("audio_playback", stats, None)
    assert report.level == WARN and "underruns" in report.message and "late drops" in report.message
    assert playback_status("audio_playback", stats, stats).level == OK


def test_a_chunk_that_arrives_too_late_is_dropped_not_played(pulse, tmp_path):
    with AudioPlayback(PlaybackConfig("speaker48", sample_rate=48000)) as playback:
        time.sleep(0.1)  # the stream runs
        stale = AudioChunk(time.time_ns() - NS_PER_S, 24000, np.full(1920, 0.5, np.float32))

        def send():
            return playback.push(stale)

        recorded, result = _record_while(pulse, "speaker48", 48000, 2, tmp_path, 0.5, send)
        stats = playback.stats()
    assert result == PutResult.LATE and stats.late_drops == 1 and stats.played == 0
    assert np.max(np.abs(recorded)) < 1e-3


def test_stamps_from_another_clock_play_after_arrival_plus_delay(pulse, tmp_path):
    """sync_to_stamps=False: stamps near zero (a bag replay) only order the chunks."""
    speech = synthetic_speech(0.8, 24000, seed=3)
    config = PlaybackConfig("speaker48", sample_rate=48000, sync_to_stamps=False)
    with AudioPlayback(config) as playback:
        def send():
            for chunk in _chunks(speech, 1_000):
                assert playback.push(chunk) == PutResult.QUEUED
        recorded, _ = _record_while(pulse, "speaker48", 48000, 2, tmp_path, 1.2, send)
        stats = playback.stats()
    assert stats.played == 10 and stats.late_drops == 0
    expected = soxr.resample(speech, 24000, 48000, quality="HQ")
    error, _ = _aligned_error(recorded[:, 0], expected)
    assert error < 0.01, error


def test_missing_and_unavailable_speakers_are_clear_errors(pulse):
    with pytest.raises(MoshifaceError) as error:
        AudioPlayback(PlaybackConfig("no_such_speaker")).start()
    message = str(error.value)
    assert "no output device is named 'no_such_speaker'; output devices that exist:" in message
    assert "'speaker16'" in message and "'speaker48'" in message
    with pytest.raises(MoshifaceError, match=r"output device \d+ 'gone_speaker' could not be opened"):
        AudioPlayback(PlaybackConfig("gone_speaker")).start()


# ---------------------------------------------------------------- JitterBuffer (no device)


def test_jitter_buffer_plays_each_chunk_at_its_position_and_silence_between():
    buffer = JitterBuffer(24000, capacity_s=1.0)
    assert buffer.put(np.ones(100), 1000) == PutResult.QUEUED
    assert buffer.put(np.full(100, 2.0), 1300) == PutResult.QUEUED
    out, audible = buffer.read(950, 500)
    assert audible
    expected = np.zeros(500)
    expected[50:150] = 1.0
    expected[350:450] = 2.0
    np.testing.assert_array_equal(out, expected)
    out, audible = buffer.read(1450, 100)
    assert not audible and not out.any()  # nothing is ever repeated
    assert buffer.stats.played == 2 and buffer.stats.underruns == 0


def test_jitter_buffer_drops_late_early_and_overlapping_chunks():
    buffer = JitterBuffer(24000, capacity_s=0.1, snap_samples=10)
    buffer.read(0, 240)
    assert buffer.put(np.ones(10), 100) == PutResult.LATE  # starts before the read position
    assert buffer.put(np.ones(10), 240 + 2400) == PutResult.TOO_EARLY  # beyond 0.1 s ahead
    assert buffer.put(np.ones(100), 1000) == PutResult.QUEUED
    assert buffer.put(np.ones(100), 1500) == PutResult.QUEUED
    assert buffer.put(np.ones(100), 1550) == PutResult.OVERLAP
    s = buffer.stats
    assert (s.late, s.too_early, s.overlaps, s.queued) == (1, 1, 1, 2)


def test_jitter_buffer_snaps_near_contiguous_chunks_and_counts_one_underrun_per_stall():
    buffer = JitterBuffer(24000, snap_samples=48)
    buffer.put(np.ones(1920), 0)
    buffer.put(np.full(1920, 2.0), 1920 + 3)  # a stamp a few samples off: laid end to end
    out, _ = buffer.read(0, 3840)
    assert out[1919] == 1.0 and out[1920] == 2.0 and out.min() == 1.0
    buffer.read(3840, 1920)  # ran dry: silence, and nothing counted yet (maybe the end)
    assert buffer.stats.underruns == 0
    assert buffer.put(np.full(1920, 3.0), 3840) == PutResult.LATE  # it was the middle
    buffer.read(5760, 1920)
    assert buffer.put(np.full(1920, 4.0), 5760) == PutResult.LATE
    assert buffer.stats.underruns == 1 and buffer.stats.late == 2
    assert buffer.put(np.full(1920, 5.0), 9600) == PutResult.QUEUED

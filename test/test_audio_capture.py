"""Microphone capture through a real PulseAudio server (null sinks, virtual microphones).

A tone played into a microphone's feed sink must come out of ``AudioCapture`` as 24 kHz
1920-sample chunks with the tone's frequency, no gap or click, continuous sequence
numbers and wall-clock stamps; devices at 16, 44.1 and 48 kHz, mono and stereo, all work;
a missing, ambiguous or unavailable device is a one-line error naming the devices that
exist. The stamping and gap filling logic is also tested on its own (``ChunkAssembler``).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from moshiface_ros.audio.capture import AudioCapture, CaptureConfig, CaptureStats, ChunkAssembler
from moshiface_ros.audio.diagnostics import ERROR, OK, WARN, capture_status
from moshiface_ros.audio.synth import tone
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import NS_PER_S
from moshiface_ros.nodes.parameters import AUDIO_CAPTURE, AUDIO_PLAYBACK
from pulse_server import Microphone, Sink, Unavailable, pulse_or_skip

# (device rate, channels): each gets a feed sink and a virtual microphone of that format.
FORMATS = [(16000, 1), (44100, 2), (48000, 2)]


@pytest.fixture(scope="module")
def pulse():
    sinks = [Sink(f"feed{rate // 1000}", rate, channels) for rate, channels in FORMATS]
    mics = [Microphone(f"mic{rate // 1000}", f"feed{rate // 1000}") for rate, _ in FORMATS]
    with pulse_or_skip(sinks, mics, unavailable=[Unavailable("gone_mic", "capture")]) as server:
        yield server


def _capture_for(capture: AudioCapture, seconds: float) -> list:
    chunks, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        chunk = capture.read(timeout=0.2)
        if chunk is not None:
            chunks.append(chunk)
    return chunks


def _sine_fit_residual(signal: np.ndarray, freq: float, rate: int) -> tuple[float, float]:
    """Least-squares fit of a sine at ``freq``; (amplitude, rms of what the fit misses)."""
    t = np.arange(signal.shape[0]) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, signal, rcond=None)
    residual = signal - basis @ coef
    return float(np.hypot(*coef)), float(np.sqrt(np.mean(residual ** 2)))


@pytest.mark.parametrize("rate, channels", FORMATS, ids=[f"{r}Hz-{c}ch" for r, c in FORMATS])
def test_tone_comes_out_at_24k_with_its_frequency_and_no_gaps(pulse, rate, channels):
    freq = 997.0  # not a divisor of any rate: every block boundary cuts the wave differently
    name = f"mic{rate // 1000}"
    with AudioCapture(CaptureConfig(name, sample_rate=rate, channels=channels)) as capture:
        played_at = time.time_ns()
        samples = np.repeat(tone(freq, 1.2, rate)[:, np.newaxis], channels, axis=1)
        pulse.play(f"feed{rate // 1000}", samples, rate)
        chunks = _capture_for(capture, 1.8)
        stats = capture.stats()

    assert stats.sample_rate == rate and stats.channels == channels and stats.device == name
    assert stats.overflows == 0 and stats.gaps == 0 and stats.dropped_blocks == 0
    assert len(chunks) >= 18
    assert all(c.sample_rate == 24000 and c.channels == 1 and c.samples.shape == (1920,)
               for c in chunks)
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    steps_ms = np.diff([c.stamp_ns for c in chunks]) / 1e6
    assert np.all(np.abs(steps_ms - 80.0) < 2.0), steps_ms

    signal = np.concatenate([c.samples for c in chunks])
    loud = np.flatnonzero(np.abs(signal) > 0.1)
    onset, end = loud[0], loud[-1]
    onset_ns = chunks[onset // 1920].stamp_ns + (onset % 1920) * NS_PER_S // 24000
    # stamps are wall-clock capture times: the tone starts just after it was sent
    assert played_at - 20e6 < onset_ns < played_at + 400e6, (onset_ns - played_at) / 1e6
    assert 1.1 < (end - onset) / 24000 < 1.3
    steady = signal[onset + 1200:end - 1200]  # 50 ms in from each edge
    amplitude, residual = _sine_fit_residual(steady, freq, 24000)
    assert amplitude == pytest.approx(0.5, abs=0.01)
    # a dropout or click anywhere would leave far more than quantisation noise
    assert residual < 2e-3, residual
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    assert np.argmax(spectrum) * 24000 / steady.size == pytest.approx(freq, abs=24000 / steady.size)


def test_a_reader_that_falls_behind_gets_counted_silence_not_a_shifted_clock(pulse):
    """The capture queue holds 0.1 s; not reading for 0.6 s drops device blocks. They
    are counted, replaced by silence of the same length, and the sequence and the stamps
    go on as if nothing happened, so the model's clock keeps pace with the wall clock."""
    config = CaptureConfig("mic48", sample_rate=48000, channels=2, queue_seconds=0.1)
    with AudioCapture(config) as capture:
        first = capture.read(timeout=2.0)
        time.sleep(0.6)
        chunks = [first] + _capture_for(capture, 0.5)
        stats = capture.stats()
    assert stats.dropped_blocks > 0 and stats.gaps >= 1
    assert 300 < stats.filled_ms < 700
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    span_s = (chunks[-1].stamp_ns - chunks[0].stamp_ns) / NS_PER_S
    assert span_s == pytest.approx((len(chunks) - 1) * 0.08, abs=0.005)

    report = capture_status("audio_capture", stats, None)
    assert report.level == WARN and "dropped blocks" in report.message
    assert report.values["dropped_blocks"] == str(stats.dropped_blocks)
    assert capture_status("audio_capture", stats, stats).level == ERROR  # nothing new came
    quiet = CaptureStats(**{**stats.as_dict(), "chunks": stats.chunks + 12})
    assert capture_status("audio_capture", quiet, stats).level == OK


def test_missing_device_error_names_the_devices_that_exist(pulse):
    with pytest.raises(MoshifaceError) as error:
        AudioCapture(CaptureConfig("no_such_mic")).start()
    message = str(error.value)
    assert "no input device is named 'no_such_mic'" in message
    assert all(f"'mic{rate // 1000}'" in message for rate, _ in FORMATS)
    assert "\n" not in message
    with pytest.raises(MoshifaceError, match=r"no input device number 999; input devices that exist: .*'mic16'"):
        AudioCapture(CaptureConfig(999)).start()
    with pytest.raises(MoshifaceError, match=r"ambiguous.*'mic16'.*'mic44'"):
        AudioCapture(CaptureConfig("mic")).start()


def test_device_that_cannot_be_opened_is_named_with_the_reason(pulse):
    with pytest.raises(MoshifaceError) as error:
        AudioCapture(CaptureConfig("gone_mic")).start()
    message = str(error.value)
    assert "input device" in message and "'gone_mic' could not be opened" in message
    assert "busy" in message and "input devices that exist:" in message and "'mic48'" in message


def test_device_by_number_and_asking_for_more_channels_than_it_has(pulse):
    from moshiface_ros.audio.devices import find_device

    mic = find_device("mic16", "input")
    with AudioCapture(CaptureConfig(mic.index, sample_rate=16000, channels=1)) as capture:
        assert capture.read(timeout=2.0) is not None
    with pytest.raises(MoshifaceError, match="has 32 channel"):
        AudioCapture(CaptureConfig("mic16", channels=33)).start()


# -------------------------------------------------------------- ChunkAssembler (no device)


def _blocks(signal: np.ndarray, rate: int, sizes: list[int], start_ns: int):
    """Cut a signal into blocks of cycling sizes with their ideal capture times."""
    first, index = 0, 0
    while first < signal.shape[0]:
        size = sizes[index % len(sizes)]
        yield signal[first:first + size], start_ns + first * NS_PER_S // rate
        first += size
        index += 1


def test_assembler_stamps_numbers_and_resamples_without_clicks():
    rate, start = 44100, 5 * NS_PER_S
    stereo = np.repeat(tone(440.0, 2.0, rate)[:, np.newaxis], 2, axis=1)
    assembler = ChunkAssembler(rate, 2, frame_id="mic")
    chunks = []
    for block, first_ns in _blocks(stereo, rate, [441, 1000, 17, 2205], start):
        chunks += assembler.push(block, first_ns)
    chunks += assembler.flush()
    assert [c.sequence for c in chunks] == list(range(len(chunks)))
    assert [c.stamp_ns for c in chunks] == [start + i * 80_000_000 for i in range(len(chunks))]
    assert all(c.frame_id == "mic" for c in chunks)
    signal = np.concatenate([c.samples for c in chunks])[:48000]
    _, residual = _sine_fit_residual(signal[2400:-2400], 440.0, 24000)
    assert residual < 1e-3


def test_assembler_fills_known_losses_and_restarts_after_long_ones():
    rate, start, block = 48000, 10 * NS_PER_S, 960
    assembler = ChunkAssembler(rate, 1)
    ones = np.ones((block, 1), np.float32) * 0.25
    chunks = []
    for i in range(20):  # 0.4 s
        chunks += assembler.push(ones, start + i * 20_000_000)
    # PortAudio flags an overflow; the block's time says 100 ms are missing
    chunks += assembler.push(ones, start + 20 * 20_000_000 + 100_000_000, overflow=True)
    assert assembler.gaps == 1 and assembler.filled_samples == 4800
    # a late, odd time without a known loss is not trusted (a stall, nothing lost)
    chunks += assembler.push(ones, start + 30 * 20_000_000, overflow=False)
    assert assembler.gaps == 1 and assembler.resyncs == 0
    n = 21 * block + 4800
    chunks += assembler.push(ones, start + (n + block) * NS_PER_S // rate)
    before = assembler.next_sequence
    # 5 s lost: too long to fill; the timeline restarts and sequence numbers are skipped
    later = start + 6 * NS_PER_S
    chunks += assembler.push(ones, later, lost=5 * rate)
    restart = assembler.next_sequence
    assert assembler.restarts == 1 and restart - before >= 5 * 12
    chunks += assembler.push(ones, later + 20_000_000)
    chunks += assembler.flush()
    sequences = [c.sequence for c in chunks]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    continuous = [c for c in chunks if c.sequence <= before]  # up to the padded last one
    assert [c.stamp_ns for c in continuous] == [start + i * 80_000_000 for i in range(len(continuous))]
    assert chunks[-1].stamp_ns == later
    filled = np.concatenate([c.samples for c in continuous])[:13000]  # 0.4 s, gap, 0.14 s
    quiet = np.flatnonzero(np.abs(filled) < 0.01)
    assert 2300 < quiet.size <= 2400 and 9500 < quiet[0] and quiet[-1] < 12100  # the 100 ms gap


# -------------------------------------------------------- parameter file and launch file


ROOT = Path(__file__).resolve().parent.parent


def test_audio_parameter_file_lists_exactly_what_the_nodes_declare():
    data = yaml.safe_load((ROOT / "config" / "audio.yaml").read_text())
    assert set(data) == {"audio_capture", "audio_playback"}
    for node, declared in (("audio_capture", AUDIO_CAPTURE), ("audio_playback", AUDIO_PLAYBACK)):
        assert set(data[node]) == {"ros__parameters"}
        params = data[node]["ros__parameters"]
        assert params == declared, node
        for name, value in declared.items():  # same types, or ROS refuses the file
            assert type(params[name]) is type(value), (node, name)


def test_audio_launch_file_starts_both_nodes_with_the_parameter_file():
    tree = ast.parse((ROOT / "launch" / "audio.launch.py").read_text())
    executables = {ast.literal_eval(kw.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node"
                   for kw in node.keywords if kw.arg == "executable"}
    assert executables == {"audio_capture", "audio_playback"}
    assert '"audio.yaml"' in (ROOT / "launch" / "audio.launch.py").read_text()
    for script in executables:
        assert (ROOT / "scripts" / script).is_file()

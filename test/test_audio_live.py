"""LiveAudio (the runner's microphone + speaker) and echo cancellation, through a real
PulseAudio server; the echo canceller also on its own; the audio benchmark's smoke run.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

from moshiface_ros.audio.echo import EchoCanceller, erle_db
from moshiface_ros.audio.live import LiveAudio
from moshiface_ros.audio.jitter import PutResult
from moshiface_ros.audio.synth import synthetic_speech, tone
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import NS_PER_S, AudioChunk
from pulse_server import Loopback, Microphone, Sink, missing_binaries, pulse_or_skip

REPO = Path(__file__).resolve().parent.parent
RATE = 48000


@pytest.fixture(scope="module")
def pulse():
    sinks = [Sink("speaker", RATE, 2), Sink("mic_feed", RATE, 1)]
    with pulse_or_skip(sinks, [Microphone("mic", "mic_feed")]) as server:
        yield server


def test_live_audio_is_full_duplex_tone_in_and_robot_voice_out(pulse, tmp_path):
    """The user's tone comes in as numbered 24 kHz chunks while the robot's speech,
    stamped like the runner stamps it, goes out of the speaker intact."""
    speech = synthetic_speech(1.2, 24000, seed=2)
    recording = pulse.record("speaker.monitor", tmp_path / "speaker.wav", RATE, 2)
    # 400 ms: the runner sends robot audio ~150 ms after a chunk's stamp, and the output
    # reads ~110 ms ahead (PulseAudio's buffering); see docs/audio.md
    with LiveAudio("mic", "speaker", presentation_delay_ms=400.0, input_rate=RATE,
                   output_rate=RATE) as audio:
        pulse.play("mic_feed", tone(440.0, 1.0, RATE), RATE)
        chunks, results = [], []
        for chunk in audio.chunks():
            index = len(chunks)
            chunks.append(chunk)
            robot = speech[index * 1920:(index + 1) * 1920]
            if robot.size:
                results.append(audio.play(AudioChunk(chunk.stamp_ns, 24000, robot, sequence=index)))
                assert results[-1] == PutResult.QUEUED
            if len(chunks) == 25:
                break
        time.sleep(0.6)
        stats = audio.stats()
    heard, _ = recording.stop()

    assert [c.sequence for c in chunks] == list(range(25))
    assert all(c.sample_rate == 24000 and c.samples.shape == (1920,) for c in chunks)
    user = np.concatenate([c.samples for c in chunks])
    loud = np.flatnonzero(np.abs(user) > 0.1)
    steady = user[loud[0] + 1200:loud[-1] - 1200]
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    assert np.argmax(spectrum) * 24000 / steady.size == pytest.approx(440.0, abs=2.0)

    assert stats["playback"]["late_drops"] == 0 and stats["playback"]["played"] == 15
    assert stats["capture"]["overflows"] == 0
    from soxr import resample

    expected = resample(speech, 24000, RATE, quality="HQ")
    heard = heard[:, 0]
    lag = int(np.argmax(np.correlate(heard, expected, mode="valid")))
    segment = heard[lag:lag + expected.size]
    assert np.dot(segment, expected) / np.dot(expected, expected) == pytest.approx(1.0, abs=0.02)


def test_echo_cancellation_removes_the_robots_voice_from_the_microphone(pulse):
    """The speaker's monitor is looped back into the microphone (an echo path with
    delay and loss); the robot speaks, the user is silent. With cancellation on, the
    captured chunks carry far less of the robot's voice."""
    module = pulse.load_loopback(Loopback("speaker.monitor", "mic_feed", latency_ms=40, volume=0.7))
    speech = synthetic_speech(3.5, 24000, seed=4)
    residual = {}
    try:
        for echo_cancel in (False, True):
            with LiveAudio("mic", "speaker", echo_cancel=echo_cancel, input_rate=RATE,
                           output_rate=RATE, presentation_delay_ms=300.0, rescan=False) as audio:
                captured = []
                for chunk in audio.chunks():
                    index = len(captured)
                    captured.append(chunk.samples)
                    audio.play(AudioChunk(chunk.stamp_ns, 24000, speech[index * 1920:(index + 1) * 1920],
                                          sequence=index))
                    if len(captured) * 1920 >= speech.size:
                        break
                stats = audio.stats()
            tail = np.concatenate(captured[len(captured) // 2:])  # after convergence
            residual[echo_cancel] = float(np.mean(tail ** 2))
            assert stats["playback"]["played"] > 0.8 * len(captured)
    finally:
        pulse.unload_module(module)
    assert residual[False] > 1e-5  # the echo really reaches the microphone
    assert 10 * np.log10(residual[False] / residual[True]) > 20.0, residual
    assert stats["echo_erle_db"] is not None and stats["echo_erle_db"] > 10.0


def test_live_audio_with_a_missing_device_leaves_nothing_open(pulse):
    audio = LiveAudio("mic", "no_such_speaker", rescan=False)
    with pytest.raises(MoshifaceError, match="no output device is named 'no_such_speaker'"):
        audio.start()
    audio = LiveAudio("no_such_mic", "speaker", rescan=False)
    with pytest.raises(MoshifaceError, match="no input device is named 'no_such_mic'.*'mic'"):
        audio.start()
    assert audio.playback._stream is None  # the speaker opened first was closed again


# ------------------------------------------------------------- EchoCanceller (no device)


def _room_echo(far: np.ndarray, rate: int, delay_s: float = 0.05) -> np.ndarray:
    """The far-end voice as a microphone hears it: delayed, attenuated, two reflections."""
    response = np.zeros(int(0.02 * rate))
    response[int(0.002 * rate)] = 0.4
    response[int(0.009 * rate)] = -0.15
    response[int(0.017 * rate)] = 0.05
    delay = int(delay_s * rate)
    return np.concatenate([np.zeros(delay), lfilter(response, [1.0], far)])[:far.size].astype(np.float32)


def _run(canceller: EchoCanceller, mic: np.ndarray, far: np.ndarray | None) -> np.ndarray:
    start = 1_000 * NS_PER_S
    out = []
    for i in range(0, mic.size, 1920):
        stamp = start + i * NS_PER_S // 24000
        if far is not None:
            canceller.add_reference(far[i:i + 1920], stamp)
        out.append(canceller.process(mic[i:i + 1920], stamp))
    return np.concatenate(out)


def test_echo_canceller_removes_a_room_echo_of_speech():
    far = synthetic_speech(5.0, 24000, seed=1)
    echo = _room_echo(far, 24000)
    canceller = EchoCanceller(24000)
    cleaned = _run(canceller, echo, far)
    half = echo.size // 2
    assert erle_db(echo[half:], cleaned[half:]) > 25.0
    assert canceller.erle_db is not None and canceller.erle_db > 10.0


def _gain_at_best_lag(output: np.ndarray, source: np.ndarray, max_lag: int = 600) -> tuple[float, int]:
    """How much of ``source`` is in ``output`` (least-squares gain) at the best delay.

    WebRTC's processing delays the microphone signal by ~9 ms (220 samples at 24 kHz)."""
    gains = [np.dot(output[k:], source[:source.size - k]) / np.dot(source[:source.size - k],
                                                                 source[:source.size - k])
             for k in range(max_lag)]
    best = int(np.argmax(gains))
    return float(gains[best]), best


def test_echo_canceller_keeps_the_users_voice():
    """Near-end speech with no robot voice passes (delayed ~9 ms, level kept); during
    double talk the output still carries the user's voice and little of the robot's."""
    user = synthetic_speech(4.0, 24000, seed=9)
    alone = _run(EchoCanceller(24000), user, None)
    assert abs(erle_db(user[24000:], alone[24000:])) < 1.0
    gain, lag = _gain_at_best_lag(alone[24000:], user[24000:])
    assert gain > 0.6 and 150 < lag < 300

    far = synthetic_speech(4.0, 24000, seed=1)
    echo = _room_echo(far, 24000)
    cleaned = _run(EchoCanceller(24000), echo + 0.5 * user, far)
    tail = slice(48000, None)
    to_user, lag = _gain_at_best_lag(cleaned[tail], 0.5 * user[tail])
    to_echo, _ = _gain_at_best_lag(cleaned[tail], echo[tail])
    assert to_user > 0.2 and abs(to_echo) < 0.1, (to_user, to_echo)


# ------------------------------------------------------------------- benchmark smoke test


@pytest.mark.skipif(bool(missing_binaries()), reason="needs PulseAudio")
def test_audio_latency_benchmark_prints_every_figure():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "audio_latency.py"), "--beeps", "2",
         "--cpu-seconds", "0.8", "--erle-seconds", "2.5"],
        capture_output=True, text=True, timeout=120, check=True)
    lines = result.stdout.splitlines()
    number = r"-?[\d.]+"
    expected = {
        "output lead": rf"^output lead .*: {number} ms \(\d of 2 beeps on time\)$",
        "round trip speaker -> monitor -> capture":
            rf"^round trip .*: p50 {number} p95 {number} max {number} ms \(n=\d\)$",
        "capture cpu (": rf"^capture cpu \(.*\): {number} ms per 80 ms chunk \(n=\d+\)$",
        "capture cpu with echo": rf"^capture cpu with echo .*: {number} ms per 80 ms chunk \(n=\d+\)$",
        "playback cpu": rf"^playback cpu .*: {number} ms per 80 ms chunk \(n=\d+\)$",
        "echo return loss enhancement on speech":
            rf"^echo return loss enhancement on speech: {number} dB \(after 1 s, n=\d+ chunks\)$",
    }
    for start, pattern in expected.items():
        matching = [line for line in lines if line.startswith(start)]
        assert len(matching) == 1 and re.match(pattern, matching[0]), (start, lines)
    erle = float(re.search(r"speech: (-?[\d.]+) dB", result.stdout).group(1))
    assert erle > 10.0


# ------------------------------------------------------------------ the nodes (need ROS 2)


def test_capture_and_playback_nodes_with_ros(pulse):
    """With rclpy and the built messages: the capture node publishes numbered chunks of
    the microphone, the playback node plays what it receives, both report diagnostics."""
    rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")
    msgs = pytest.importorskip("moshiface_ros.msg", reason="needs the built moshiface_ros messages")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from moshiface_ros.messages import convert
    from moshiface_ros.nodes.audio_capture import AudioCaptureNode
    from moshiface_ros.nodes.audio_playback import AudioPlaybackNode
    from moshiface_ros.nodes.qos import AUDIO_QOS
    from moshiface_ros.nodes.rclpy_messages import RclpyFactory
    from moshiface_ros.topics import ROBOT_AUDIO, USER_AUDIO

    from rclpy.parameter import Parameter

    rclpy.init()
    capture = playback = peer = None
    try:
        capture = AudioCaptureNode(parameter_overrides=[
            Parameter("device", value="mic"), Parameter("sample_rate", value=48000),
            Parameter("diagnostics_period_s", value=0.3)])
        playback = AudioPlaybackNode(parameter_overrides=[
            Parameter("device", value="speaker"), Parameter("presentation_delay_ms", value=300.0),
            Parameter("diagnostics_period_s", value=0.3)])
        peer = rclpy.create_node("audio_test_peer")
        user, diagnostics = [], []
        peer.create_subscription(msgs.AudioChunk, USER_AUDIO, user.append, AUDIO_QOS)
        peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        robot = peer.create_publisher(msgs.AudioChunk, ROBOT_AUDIO, AUDIO_QOS)
        executor = SingleThreadedExecutor()
        for node in (capture, playback, peer):
            executor.add_node(node)
        deadline = time.monotonic() + 3.0
        sent = 0
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
            while sent < len(user):
                chunk = convert.audio_chunk_from_msg(user[sent])
                speech = np.full(1920, 0.1, np.float32)
                robot.publish(convert.audio_chunk_to_msg(
                    AudioChunk(chunk.stamp_ns, 24000, speech, sequence=sent), RclpyFactory()))
                sent += 1
        sequences = [m.sequence for m in user]
        assert len(sequences) >= 20 and sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        names = {s.name for d in diagnostics for s in d.status}
        assert any("microphone" in n for n in names) and any("speaker" in n for n in names)
        assert playback._playback.stats().played > 10
    finally:
        for node in (capture, playback, peer):
            if node is not None:
                node.destroy_node()
        rclpy.try_shutdown()


def test_runner_live_session_through_the_sound_server(pulse, tmp_path, read_session):
    """`moshiface run --live`: microphone chunks drive the same session as a file would,
    the robot's voice goes to the speaker, and the bag holds the live user audio."""
    import torch

    from moshiface_ros.runner.config import RunConfig
    from moshiface_ros.runner.pipeline import run_session

    torch.set_num_threads(1)
    recording = pulse.record("speaker.monitor", tmp_path / "speaker.wav", RATE, 2)
    pulse.play("mic_feed", tone(440.0, 2.0, RATE), RATE)
    summary = run_session(RunConfig(user_audio=None, out=tmp_path / "out", progress=False, live=True,
                                    input_device="mic", output_device="speaker", duration_s=1.2))
    time.sleep(0.5)
    heard, _ = recording.stop()
    session = read_session(tmp_path / "out")
    assert summary["user_audio"] == "live" and 10 <= summary["steps"] <= 16
    user = [m for _, _, m in session["bag"]["/moshiface/user/audio"]]
    assert [m.sequence for m in user] == list(range(len(user)))
    assert summary["live"]["playback"]["played"] > 0
    assert np.abs(heard).max() > 1e-3  # the robot's voice reached the speaker


def test_runner_live_duration_counts_from_the_first_chunk(pulse, tmp_path, monkeypatch):
    """--duration 2 records 2 s of the microphone (it used to start the timer before the
    stream, and record 0.8-1.1 s of it)."""
    import torch

    from moshiface_ros.runner.config import RunConfig
    from moshiface_ros.runner.pipeline import run_session

    torch.set_num_threads(1)
    real_chunks = LiveAudio.chunks

    def slow_start(self):
        """A device whose first blocks come 1 s late (as an idle PulseAudio source's do)."""
        opened, sequence = time.time_ns(), 0
        for chunk in real_chunks(self):
            if chunk.stamp_ns >= opened + NS_PER_S:
                yield dataclasses.replace(chunk, sequence=sequence)
                sequence += 1

    monkeypatch.setattr(LiveAudio, "chunks", slow_start)
    pulse.play("mic_feed", tone(440.0, 4.0, RATE), RATE)
    summary = run_session(RunConfig(user_audio=None, out=tmp_path / "out", progress=False, live=True,
                                    input_device="mic", output_device="speaker", duration_s=2.0))
    assert 24 <= summary["steps"] <= 26, summary["steps"]  # 25 steps of 80 ms


def test_runner_live_reports_late_drops_on_the_console(pulse, tmp_path, capfd):
    """A presentation delay far below the time a step takes: the robot's audio is dropped as
    late; the console says so while it runs (once, with a count) and gives the total at the end."""
    import torch

    from moshiface_ros.runner.config import RunConfig
    from moshiface_ros.runner.pipeline import run_session

    torch.set_num_threads(1)
    pulse.play("mic_feed", tone(440.0, 2.0, RATE), RATE)
    summary = run_session(RunConfig(user_audio=None, out=tmp_path / "out", progress=False, live=True,
                                    input_device="mic", output_device="speaker", duration_s=1.5,
                                    presentation_delay_ms=1.0))
    late = summary["live"]["playback"]["late_drops"]
    err = capfd.readouterr().err
    first = [line for line in err.splitlines() if "dropped" in line and "so far" in line]
    total = [line for line in err.splitlines() if line.startswith("moshiface: live: late drops:")]
    assert late > 0
    assert len(first) == 1 and "raise --presentation-delay-ms" in first[0], err
    assert total == [f"moshiface: live: late drops: {late} in all (robot audio arrived after its play time "
                     "and was dropped (raise --presentation-delay-ms))"], err

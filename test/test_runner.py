"""The embedded runner end to end, in-process: a user WAV in; robot.wav, text.jsonl,
summary.json and a rosbag2 (MCAP, version 8) out, all telling the same story.

Real parts only: the tiny random Moshi model, soxr resampling, the rosbags writer, and
rosbags' AnyReader reading the bag back from the definitions embedded in it.
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

os.environ.setdefault("NO_TORCH_COMPILE", "1")  # before moshi is imported

import torch  # noqa: E402

from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from bad_inputs import BAD_INPUTS  # noqa: E402
from moshiface_ros.audio.wav import read_wav, write_wav  # noqa: E402
from moshiface_ros.errors import MoshifaceError  # noqa: E402
from moshiface_ros.constants import FRAME_SIZE as FRAME, SAMPLE_RATE as RATE, STEP_NS  # noqa: E402
from moshiface_ros.runner.config import RunConfig  # noqa: E402
from moshiface_ros.runner.pipeline import run_session  # noqa: E402
from moshiface_ros.speech.session import SessionOptions  # noqa: E402

USER_AUDIO = "/moshiface/user/audio"
ROBOT_AUDIO = "/moshiface/robot/audio"
ROBOT_TEXT = "/moshiface/robot/text"
# The tiny model is a Moshi-Face model, so every session also has the face path's streams.
FACE_TOPICS = {"/moshiface/user/face_tokens", "/moshiface/robot/face_tokens", "/moshiface/robot/face",
               "/moshiface/user/face"}
AUDIO_TYPE = "moshiface_ros/msg/AudioChunk"
TEXT_TYPE = "moshiface_ros/msg/DialogueText"
SESSION_FILES = ("robot.wav", "text.jsonl", "summary.json", "bag")


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """The tiny model runs fastest (and deterministically) on one thread, without compile."""
    previous = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_TORCH_COMPILE", "1")
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _write_speech(path: Path, seconds: float, rate: int = RATE, channels: int = 1,
                  seed: int = 0) -> Path:
    mono = synthetic_speech(seconds, rate, seed=seed)
    samples = mono if channels == 1 else np.stack([mono, 0.5 * mono], axis=1)
    write_wav(path, samples, rate)
    return path


def _run(user_audio: Path, out: Path, overwrite: bool = False, **session: Any) -> dict[str, Any]:
    """A session of ``user_audio``; ``session`` are ``SessionOptions`` fields (seed, model, ...)."""
    return run_session(RunConfig(user_audio=user_audio, out=out, progress=False, overwrite=overwrite,
                                 session=SessionOptions(**session)))


def _stamp(message: Any) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


# -- one normal session, read back every way ------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory, read_session) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("session")
    user = _write_speech(root / "user.wav", 3.0)
    out = root / "out"
    returned = _run(user, out, seed=7)
    data = read_session(out)
    data.update(out=out, returned=returned, user=user)
    return data


def test_session_leaves_exactly_its_files(session):
    assert sorted(p.name for p in session["out"].iterdir()) == sorted(SESSION_FILES)
    assert sorted(p.name for p in (session["out"] / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]


def test_bag_is_version_8_mcap(session):
    info = session["metadata"]["rosbag2_bagfile_information"]
    assert info["version"] == 8
    assert info["storage_identifier"] == "mcap"
    assert all(name.endswith(".mcap") for name in info["relative_file_paths"])
    assert info["message_count"] == sum(session["summary"]["messages"].values())
    by_topic = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert set(by_topic) == {USER_AUDIO, ROBOT_AUDIO, ROBOT_TEXT} | FACE_TOPICS
    for topic, count in session["summary"]["messages"].items():
        assert by_topic[topic]["message_count"] == count
        assert by_topic[topic]["topic_metadata"]["serialization_format"] == "cdr"


def test_summary_file_matches_returned_summary(session):
    summary, returned = session["summary"], session["returned"]
    assert summary == returned
    steps = summary["steps"]
    assert steps == math.ceil(3.0 * RATE / FRAME)
    assert summary["interrupted"] is False and summary["signal"] is None
    assert summary["seed"] == 7
    assert summary["user_sample_rate"] == RATE and summary["user_channels"] == 1
    assert summary["audio_seconds"] == pytest.approx(steps * FRAME / RATE)
    for key in ("p50", "p95", "max"):
        assert summary["step_ms"][key] > 0
    assert summary["step_ms"]["p50"] <= summary["step_ms"]["p95"] <= summary["step_ms"]["max"]
    assert summary["real_time_factor"] > 0
    assert isinstance(summary["start_time_ns"], int) and summary["start_time_ns"] > 0


def test_message_counts_match_summary(session):
    bag, summary = session["bag"], session["summary"]
    assert set(bag) == {USER_AUDIO, ROBOT_AUDIO, ROBOT_TEXT} | FACE_TOPICS
    counts = {topic: len(messages) for topic, messages in bag.items()}
    assert counts == summary["messages"]
    assert counts[USER_AUDIO] == counts[ROBOT_AUDIO] == summary["steps"]
    assert counts[ROBOT_TEXT] == len(session["text"])
    assert {msgtype for _, msgtype, _ in bag[USER_AUDIO] + bag[ROBOT_AUDIO]} == {AUDIO_TYPE}
    assert {msgtype for _, msgtype, _ in bag[ROBOT_TEXT]} == {TEXT_TYPE}


def test_robot_audio_in_bag_equals_robot_wav(session):
    assert session["robot_rate"] == RATE
    wav = session["robot"]
    assert wav.dtype == np.float32 and wav.ndim == 1
    chunks = [m.samples for _, _, m in session["bag"][ROBOT_AUDIO]]
    joined = np.concatenate(chunks)
    assert wav.shape == (session["summary"]["steps"] * FRAME,)
    np.testing.assert_array_equal(joined, wav)  # bit for bit, no tolerance
    ours, rate = read_wav(session["out"] / "robot.wav")
    assert rate == RATE and ours.shape == (wav.size, 1)
    np.testing.assert_array_equal(ours[:, 0], wav)
    assert np.all(np.isfinite(wav)) and np.max(np.abs(wav)) <= 1.0


def test_user_audio_in_bag_is_the_input(session):
    # A 24 kHz mono input needs no resampling: the chunks are the file, zero-padded.
    user, _ = read_wav(session["user"])
    joined = np.concatenate([m.samples for _, _, m in session["bag"][USER_AUDIO]])
    np.testing.assert_array_equal(joined[:len(user)], user[:, 0])
    assert not np.any(joined[len(user):])


def test_text_in_bag_equals_text_jsonl(session):
    messages = [m for _, _, m in session["bag"][ROBOT_TEXT]]
    lines = session["text"]
    assert len(messages) == len(lines) > 0
    for message, line in zip(messages, lines):
        assert set(line) >= {"step", "time", "token", "piece"}
        assert (message.step, message.token_id, message.piece) == (line["step"], line["token"], line["piece"])
        assert line["time"] == pytest.approx(line["step"] * 0.08)
    steps = [line["step"] for line in lines]
    assert steps == sorted(set(steps))  # at most one token per step, in order
    assert all(0 <= step < session["summary"]["steps"] for step in steps)


def test_audio_chunks_are_whole_steps_in_sequence(session):
    for topic in (USER_AUDIO, ROBOT_AUDIO):
        messages = [m for _, _, m in session["bag"][topic]]
        assert [m.sequence for m in messages] == list(range(len(messages)))
        for m in messages:
            assert (m.sample_rate, m.channels, len(m.samples)) == (RATE, 1, FRAME)
    assert {m.header.frame_id for _, _, m in session["bag"][USER_AUDIO]} == {"user_microphone"}
    assert {m.header.frame_id for _, _, m in session["bag"][ROBOT_AUDIO]} == {"robot_head"}


def test_stamps_share_one_clock(session):
    start = session["summary"]["start_time_ns"]
    for topic in (USER_AUDIO, ROBOT_AUDIO):
        for index, (log_ns, _, message) in enumerate(session["bag"][topic]):
            assert _stamp(message) == start + index * STEP_NS, (topic, index)
            assert log_ns == _stamp(message), (topic, index)
    robot_stamps = {m.sequence: _stamp(m) for _, _, m in session["bag"][ROBOT_AUDIO]}
    user_stamps = {m.sequence: _stamp(m) for _, _, m in session["bag"][USER_AUDIO]}
    assert robot_stamps == user_stamps
    for log_ns, _, message in session["bag"][ROBOT_TEXT]:
        assert _stamp(message) == start + message.step * STEP_NS == robot_stamps[message.step]
        assert log_ns == _stamp(message)


# -- any rate and channel count ----------------------------------------------------------


@pytest.mark.parametrize("rate, channels, seconds", [(44100, 2, 2.5), (16000, 1, 2.3)])
def test_other_rates_and_channels(tmp_path, read_session, rate, channels, seconds):
    user = _write_speech(tmp_path / "user.wav", seconds, rate, channels)
    out = tmp_path / "out"
    summary = _run(user, out)
    expected = math.ceil(seconds * RATE / FRAME)
    assert abs(summary["steps"] - expected) <= 1, (summary["steps"], expected)
    assert summary["user_sample_rate"] == rate and summary["user_channels"] == channels
    data = read_session(out)
    assert data["summary"]["steps"] == summary["steps"]
    assert {t: len(m) for t, m in data["bag"].items()} == summary["messages"]
    users = [m for _, _, m in data["bag"][USER_AUDIO]]
    assert len(users) == summary["steps"]
    assert all((m.sample_rate, m.channels, len(m.samples)) == (RATE, 1, FRAME) for m in users)
    assert data["robot_rate"] == RATE and data["robot"].shape == (summary["steps"] * FRAME,)
    # the user chunks are the input downmixed and resampled (streaming soxr equals one-shot)
    joined = np.concatenate([m.samples for m in users])
    samples, _ = read_wav(user)
    expected_audio = soxr.resample(samples.mean(axis=1), rate, RATE, quality="HQ")
    n = min(len(expected_audio), len(joined))
    assert n >= len(joined) - FRAME
    np.testing.assert_allclose(joined[:n], expected_audio[:n], atol=1e-4)


# -- determinism -------------------------------------------------------------------------


def test_same_seed_same_outputs_other_seed_other_audio(tmp_path):
    user = _write_speech(tmp_path / "user.wav", 2.0, 16000)
    outs = {name: tmp_path / name for name in ("a", "b", "c")}
    _run(user, outs["a"], seed=123)
    _run(user, outs["b"], seed=123)
    _run(user, outs["c"], seed=124)
    for name in ("robot.wav", "text.jsonl"):
        assert (outs["a"] / name).read_bytes() == (outs["b"] / name).read_bytes(), name
    assert (outs["a"] / "robot.wav").read_bytes() != (outs["c"] / "robot.wav").read_bytes()


# -- bad input: one-line error, nothing left behind --------------------------------------




def _assert_one_line(error: BaseException, *words: str) -> None:
    message = str(error)
    assert message and "\n" not in message, repr(message)
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("out_exists", [False, True], ids=["new-out", "existing-out"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_and_leaves_nothing(tmp_path, case, out_exists):
    make, words = BAD_INPUTS[case]
    user = make(tmp_path)
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
        (out / "mine.txt").write_text("the user's own file")
    with pytest.raises(MoshifaceError) as info:
        _run(user, out)
    _assert_one_line(info.value, *words)
    if out_exists:
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    else:
        assert not out.exists()


def test_unwritable_output_dir(tmp_path, speech_wav):
    user = speech_wav(1.0)
    afile = tmp_path / "afile"
    afile.write_text("a regular file, not a directory")
    out = afile / "out"
    with pytest.raises(MoshifaceError) as info:
        _run(user, out)
    _assert_one_line(info.value, str(out), "not writable")
    assert afile.read_text() == "a regular file, not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", user.name])


@pytest.mark.parametrize("moment", ["probe written", "directory made"])
def test_a_signal_while_the_output_dir_is_prepared_leaves_nothing(tmp_path, speech_wav, monkeypatch, moment):
    """SIGTERM right after the write probe is written, or right after the directory is
    made (the window the command-line test hit about one run in four): the run aborts and
    neither the probe nor the directory it created is left."""
    user = speech_wav(1.0)
    out = tmp_path / "out"
    real_write, real_mkdir = Path.write_bytes, Path.mkdir

    def write_bytes(self: Path, data: bytes) -> int:
        written = real_write(self, data)
        if moment == "probe written" and self.parent == out:
            os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler raises on the next bytecode
        return written

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        real_mkdir(self, *args, **kwargs)
        if moment == "directory made" and self == out:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(KeyboardInterrupt) as info:
        _run(user, out)
    assert info.value.signum == signal.SIGTERM
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handler is gone again


def test_output_path_is_a_file(tmp_path, speech_wav):
    user = speech_wav(1.0)
    out = tmp_path / "out"
    out.write_text("keep me")
    with pytest.raises(MoshifaceError) as info:
        _run(user, out)
    _assert_one_line(info.value, str(out), "not a directory")
    assert out.read_text() == "keep me"


def test_bad_model_dir_leaves_nothing(tmp_path, speech_wav):
    user = speech_wav(1.0)
    out = tmp_path / "out"
    with pytest.raises(MoshifaceError) as info:
        _run(user, out, model=str(tmp_path / "no-such-checkpoint"))
    _assert_one_line(info.value, "no-such-checkpoint")
    assert not out.exists()


def test_existing_session_is_kept_without_overwrite(tmp_path, speech_wav):
    user = speech_wav(1.0)
    out = tmp_path / "out"
    _run(user, out, seed=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(MoshifaceError) as info:
        _run(user, out, seed=2)
    _assert_one_line(info.value, str(out), "--overwrite")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_overwrite_replaces_an_old_session(tmp_path, speech_wav, read_session):
    old_user = speech_wav(2.0, seed=1)
    new_user = speech_wav(1.0, seed=2)
    out = tmp_path / "out"
    _run(old_user, out, seed=1)
    old_wav = (out / "robot.wav").read_bytes()
    (out / "bag" / "stale.mcap").write_bytes(b"left over from an older session")
    (out / "mine.txt").write_text("the user's own file")
    summary = _run(new_user, out, seed=2, overwrite=True)
    assert summary["seed"] == 2 and summary["steps"] == math.ceil(1.0 * RATE / FRAME)
    assert sorted(p.name for p in out.iterdir()) == sorted(SESSION_FILES + ("mine.txt",))
    assert sorted(p.name for p in (out / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
    assert (out / "robot.wav").read_bytes() != old_wav
    data = read_session(out)
    assert data["summary"]["user_audio"] == str(new_user)
    assert {t: len(m) for t, m in data["bag"].items()} == summary["messages"]
    assert data["robot"].shape == (summary["steps"] * FRAME,)

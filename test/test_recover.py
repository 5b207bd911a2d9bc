"""A run killed outright (SIGKILL) and ``moshiface recover``: the session whole again.

Real parts only: the ``moshiface`` console script in a subprocess with the tiny model and
its face path, a real SIGKILL, and the bag read back by two independent readers (rosbags'
``AnyReader`` and the ``mcap`` library's indexed reader).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.audio.wav import read_wav, write_wav
from moshiface_ros.constants import FRAME_SIZE as FRAME, NS_PER_S, STEP_NS
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.recording.bag import SessionBag
from moshiface_ros.recording.recover import reindex_bag
from moshiface_ros.runner.outputs import OutputDir
from moshiface_ros.runner.recovery import recover_session

MOSHIFACE = Path(sys.executable).with_name("moshiface")
ROBOT_AUDIO = "/moshiface/robot/audio"
WAV_HEADER = 58  # our float WAV header: RIFF, fmt (18), fact, data
STEPS_PER_S = NS_PER_S / STEP_NS
KILLS = 5


def _both_readers(bag: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Messages per topic as rosbags' AnyReader and the mcap library read them."""
    rosbags_counts: dict[str, int] = {}
    with AnyReader([bag]) as reader:
        for connection, _, raw in reader.messages():
            reader.deserialize(raw, connection.msgtype)  # every message decodes, not only counts
            rosbags_counts[connection.topic] = rosbags_counts.get(connection.topic, 0) + 1
    mcap_counts: dict[str, int] = {}
    with open(next(bag.glob("*.mcap")), "rb") as file:
        for _, channel, _ in make_reader(file).iter_messages():
            mcap_counts[channel.topic] = mcap_counts.get(channel.topic, 0) + 1
    return rosbags_counts, mcap_counts


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kill") / "user.wav"
    write_wav(path, synthetic_speech(60.0, 16000, seed=3), 16000)
    return path


def _kill_at_random(out: Path, user: Path, rng: random.Random) -> int:
    """Starts a run, SIGKILLs it at a random moment once it steps; returns the steps
    robot.wav held at the kill (it reaches the OS at each checkpoint, just before the bag)."""
    env = dict(os.environ, NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([str(MOSHIFACE), "run", "--user-audio", str(user), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wav, deadline = out / "robot.wav", time.monotonic() + 60
        while not (wav.exists() and wav.stat().st_size > WAV_HEADER + FRAME * 4):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return (wav.stat().st_size - WAV_HEADER) // (FRAME * 4)


@pytest.mark.skipif(not MOSHIFACE.exists(), reason=f"no console script at {MOSHIFACE}")
def test_sigkill_at_random_moments_then_recover(tmp_path, long_wav):
    rng = random.Random(13)
    lost = []
    for kill in range(KILLS):
        out = tmp_path / f"kill{kill}"
        reached = _kill_at_random(out, long_wav, rng)
        with pytest.raises(Exception):  # killed: neither reader takes the bag as it is
            _both_readers(out / "bag")
        result = subprocess.run([str(MOSHIFACE), "recover", str(out)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["recovered"] is True and summary["complete"] is False
        steps = summary["steps"]
        rosbags_counts, mcap_counts = _both_readers(out / "bag")
        assert rosbags_counts == mcap_counts == {t: n for t, n in summary["messages"].items() if n}
        assert rosbags_counts[ROBOT_AUDIO] == steps == rosbags_counts["/moshiface/user/audio"]
        assert 2 * steps - 4 <= rosbags_counts["/moshiface/robot/face"] <= 2 * steps  # 25 fps, whole steps
        rate, robot = scipy.io.wavfile.read(out / "robot.wav")  # valid sizes: a strict reader agrees
        assert rate == 24000 and robot.shape == (steps * FRAME,)
        text = [json.loads(line) for line in (out / "text.jsonl").read_text().splitlines()]
        assert [line["step"] for line in text] == sorted(line["step"] for line in text)
        assert all(line["step"] < steps for line in text)
        lost.append(reached - steps)
        assert 0 <= reached - steps <= STEPS_PER_S + 2, (reached, steps)  # at most ~1 s at risk
    print(f"steps lost per kill (robot.wav at the kill - recovered): {lost}")


def _write_unclosed_bag(path: Path, steps: int) -> tuple[SessionBag, int]:
    bag = SessionBag(path)
    bag.add_topic(ROBOT_AUDIO, AudioChunk)
    for step in range(steps):
        stamp = step * STEP_NS
        bag.write(ROBOT_AUDIO, AudioChunk(stamp, 24000, np.full((FRAME, 1), step / steps, np.float32),
                                          channels=1, sequence=step, frame_id="robot"))
        bag.checkpoint(stamp + STEP_NS)
    return bag, bag.checkpoints


def test_reindex_keeps_every_checkpointed_message(tmp_path):
    bag, checkpoints = _write_unclosed_bag(tmp_path / "bag", 40)
    killed = (tmp_path / "bag" / "bag.mcap").read_bytes()  # the file as a SIGKILL would leave it
    bag.close()
    (tmp_path / "bag" / "metadata.yaml").unlink()
    assert checkpoints == 3  # 13 steps (1.04 s) per chunk; the 40th step was still in memory
    (tmp_path / "bag" / "bag.mcap").write_bytes(killed)
    assert reindex_bag(tmp_path / "bag") == {ROBOT_AUDIO: 39}
    (tmp_path / "bag" / "bag.mcap").write_bytes(killed[:-2000])  # a write cut inside the last chunk
    (tmp_path / "bag" / "metadata.yaml").unlink()
    assert reindex_bag(tmp_path / "bag") == {ROBOT_AUDIO: 26}
    rosbags_counts, mcap_counts = _both_readers(tmp_path / "bag")
    assert rosbags_counts == mcap_counts == {ROBOT_AUDIO: 26}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no staging left behind
    with AnyReader([tmp_path / "bag"]) as reader:
        stamps = [stamp for _, stamp, _ in reader.messages()]
    assert stamps == [step * STEP_NS for step in range(26)]


def test_reindex_refuses_what_is_not_a_bag(tmp_path):
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "bag.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(MoshifaceError, match="not an MCAP file"):
        reindex_bag(tmp_path / "bag")
    with pytest.raises(MoshifaceError, match="holds no .mcap files"):
        reindex_bag(tmp_path)


def test_recover_refuses_a_session_another_process_writes(tmp_path):
    (tmp_path / "bag").mkdir()
    writer = OutputDir(tmp_path)
    writer.lock()
    try:
        with pytest.raises(MoshifaceError, match="another moshiface process is writing"):
            recover_session(tmp_path)
    finally:
        writer.unlock()


def test_read_wav_of_an_unclosed_recording_says_so(tmp_path):
    """A header with 0 sizes (the writer never closed it) used to end in scipy's
    UnboundLocalError; now one line says what happened."""
    path = tmp_path / "robot.wav"
    write_wav(path, np.zeros(4800, np.float32), 24000)
    data = bytearray(path.read_bytes())
    data[4:8] = data[54:58] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    with pytest.raises(MoshifaceError) as info:
        read_wav(path)
    assert "\n" not in str(info.value) and "not closed" in str(info.value)


@pytest.mark.skipif(not MOSHIFACE.exists(), reason=f"no console script at {MOSHIFACE}")
def test_bag_reindex_command(tmp_path):
    bag, _ = _write_unclosed_bag(tmp_path / "bag", 30)
    killed = (tmp_path / "bag" / "bag.mcap").read_bytes()
    bag.close()
    (tmp_path / "bag" / "metadata.yaml").unlink()
    (tmp_path / "bag" / "bag.mcap").write_bytes(killed)
    result = subprocess.run([str(MOSHIFACE), "bag", "reindex", str(tmp_path / "bag")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"reindexed: {tmp_path / 'bag'} ({ROBOT_AUDIO} 26)"
    assert _both_readers(tmp_path / "bag") == ({ROBOT_AUDIO: 26}, {ROBOT_AUDIO: 26})
    missing = subprocess.run([str(MOSHIFACE), "recover", str(tmp_path / "nothing")], capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"moshiface: error: session directory {tmp_path / 'nothing'} does not exist"]

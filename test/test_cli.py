"""The ``moshiface`` console script, run for real in a subprocess.

Covers a normal run, user mistakes (one line on stderr, exit 1, nothing left behind),
SIGINT/SIGTERM in the middle of a run (exit 130/143 with a complete, readable session
of the steps so far), the demo, and real-weights model specs on an offline machine.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io.wavfile

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FRAME_SIZE as FRAME, SAMPLE_RATE as RATE
from bad_inputs import BAD_INPUTS  # noqa: E402

MOSHIFACE = Path(sys.executable).with_name("moshiface")
USER_AUDIO = "/moshiface/user/audio"
ROBOT_AUDIO = "/moshiface/robot/audio"
ROBOT_TEXT = "/moshiface/robot/text"
SESSION_FILES = ("robot.wav", "text.jsonl", "summary.json", "bag")
TIMEOUT_S = 120

pytestmark = pytest.mark.skipif(not MOSHIFACE.exists(), reason=f"no console script at {MOSHIFACE}")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No torch.compile, and an empty, offline Hugging Face cache (so the demo picks tiny)."""
    hf_home = tmp_path / "hf-home"
    hf_home.mkdir()
    environment = dict(os.environ)
    environment.update(NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1", HF_HOME=str(hf_home),
                       PYTHONUNBUFFERED="1")
    environment.pop("HF_HUB_CACHE", None)
    environment.pop("HUGGINGFACE_HUB_CACHE", None)
    return environment


def moshiface(args: list[str], env: dict[str, str], cwd: Path,
              timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(MOSHIFACE), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 1 and exactly one stderr line ``moshiface: error: ...`` naming the problem."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), repr(result.stderr)
    assert result.stderr.startswith("moshiface: error: "), repr(result.stderr)
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def check_session_is_whole(data: dict[str, Any]) -> None:
    """The bag, robot.wav and text.jsonl of one session agree with each other and the summary."""
    summary, bag = data["summary"], data["bag"]
    counts = {topic: len(messages) for topic, messages in bag.items()}
    assert counts == summary["messages"]
    assert counts[USER_AUDIO] == counts[ROBOT_AUDIO] == summary["steps"]
    info = data["metadata"]["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == "mcap"
    assert info["message_count"] == sum(counts.values())
    robot = [m for _, _, m in bag[ROBOT_AUDIO]]
    assert [m.sequence for m in robot] == list(range(len(robot)))
    assert data["robot_rate"] == RATE
    assert data["robot"].shape == (len(robot) * FRAME,)
    np.testing.assert_array_equal(np.concatenate([m.samples for m in robot]), data["robot"])
    texts = [m for _, _, m in bag[ROBOT_TEXT]]
    assert [(m.step, m.token_id, m.piece) for m in texts] == \
        [(line["step"], line["token"], line["piece"]) for line in data["text"]]
    for topic in bag:
        for log_ns, _, m in bag[topic]:
            assert log_ns == m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec


def write_speech(path: Path, seconds: float, rate: int = RATE, seed: int = 0) -> Path:
    from moshiface_ros.audio.wav import write_wav

    write_wav(path, synthetic_speech(seconds, rate, seed=seed), rate)
    return path


# -- a normal run ------------------------------------------------------------------------


def test_run_writes_a_session_and_says_where(tmp_path, env, read_session):
    user = write_speech(tmp_path / "user.wav", 3.0, 16000)
    out = tmp_path / "session"
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out), "--seed", "5", "--quiet"],
                       env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("robot.wav", "text.jsonl", "summary.json", "bag"):
        assert str(out / name) in result.stdout, (name, result.stdout)
    assert "tiny" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(SESSION_FILES)
    data = read_session(out)
    check_session_is_whole(data)
    assert data["summary"]["steps"] == math.ceil(3.0 * RATE / FRAME)
    assert data["summary"]["seed"] == 5 and data["summary"]["interrupted"] is False
    assert f"steps: {data['summary']['steps']}" in result.stdout


def test_run_options_default_to_the_dataclasses_and_reach_face_sampling():
    """Every flag left out means the default of RunConfig / SessionOptions / Sampling, and
    the face sampling flags land in the session's Sampling."""
    from moshiface_ros.cli import _run_config, build_parser
    from moshiface_ros.runner.config import RunConfig
    from moshiface_ros.speech.engine import Sampling
    from moshiface_ros.speech.session import SessionOptions

    parse = build_parser().parse_args
    plain = _run_config(parse(["run", "--user-audio", "u.wav", "--out", "o"]))
    assert plain == RunConfig(user_audio=Path("u.wav"), out=Path("o"))
    tuned = _run_config(parse(["run", "--user-audio", "u.wav", "--out", "o", "--face-temperature", "0.6",
                               "--face-top-k", "7", "--top-k", "9", "--seed", "4", "--threads", "2"]))
    assert tuned.session == SessionOptions(seed=4, threads=2,
                                           sampling=Sampling(top_k=9, face_temperature=0.6, face_top_k=7))


def test_face_sampling_flags_change_the_robot_face(tmp_path, env, read_session):
    user = write_speech(tmp_path / "user.wav", 1.0)
    tokens = {}
    for name, flags in (("default", []), ("greedy", ["--face-temperature", "0", "--face-top-k", "1"])):
        out = tmp_path / name
        result = moshiface(["run", "--user-audio", str(user), "--out", str(out), "--quiet", *flags], env, tmp_path)
        assert result.returncode == 0, result.stderr
        tokens[name] = [list(m.tokens) for _, _, m in read_session(out)["bag"]["/moshiface/robot/face_tokens"]]
    assert tokens["default"] and len(tokens["default"]) == len(tokens["greedy"])
    assert tokens["default"] != tokens["greedy"]


# -- user mistakes -------------------------------------------------------------------------




@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_user_audio(tmp_path, env, case):
    make, words = BAD_INPUTS[case]
    user = make(tmp_path)
    out = tmp_path / "out"
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out)], env, tmp_path)
    assert_one_line_error(result, *words)
    assert not out.exists()


def test_unwritable_out(tmp_path, env):
    user = write_speech(tmp_path / "user.wav", 1.0)
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    out = afile / "out"
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out)], env, tmp_path)
    assert_one_line_error(result, str(out), "not writable")
    assert afile.read_text() == "a regular file"


def test_negative_threads_is_a_one_line_error(tmp_path, env):
    user = write_speech(tmp_path / "user.wav", 1.0)
    out = tmp_path / "out"
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out), "--threads", "-1"], env, tmp_path)
    assert_one_line_error(result, "threads", "-1")
    assert not out.exists()


def test_existing_session_needs_overwrite(tmp_path, env):
    user = write_speech(tmp_path / "user.wav", 1.0)
    out = tmp_path / "out"
    args = ["run", "--user-audio", str(user), "--out", str(out), "--quiet"]
    assert moshiface(args, env, tmp_path).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = moshiface(args + ["--seed", "9"], env, tmp_path)
    assert_one_line_error(result, str(out), "--overwrite")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    replaced = moshiface(args + ["--seed", "9", "--overwrite"], env, tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads((out / "summary.json").read_text())["seed"] == 9


# -- SIGINT / SIGTERM in the middle of a run --------------------------------------------


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory) -> Path:
    """60 s of speech: ~12 s for the tiny model, far longer than the tests wait."""
    return write_speech(tmp_path_factory.mktemp("long") / "long.wav", 60.0, 16000)


def _wait_for_steps(proc: subprocess.Popen, out: Path, steps: int, deadline_s: float) -> None:
    """Waits until robot.wav holds ``steps`` chunks and the bag file exists (the stepping
    loop, and with it the signal handlers, is running)."""
    wav, deadline = out / "robot.wav", time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "moshiface ended before it could be interrupted"
        if wav.exists() and wav.stat().st_size > 100 + steps * FRAME * 4 and list((out / "bag").glob("*.mcap")):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {steps} steps written within {deadline_s} s")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_closes_a_whole_session(tmp_path, env, read_session, long_wav, signum, code):
    out = tmp_path / "out"
    full_steps = math.ceil(60.0 * RATE / FRAME)
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen([str(MOSHIFACE), "run", "--user-audio", str(long_wav), "--out", str(out),
                                 "--quiet"], env=env, cwd=tmp_path, stdout=stdout, stderr=stderr)
        try:
            _wait_for_steps(proc, out, steps=25, deadline_s=60)
            proc.send_signal(signum)
            returncode = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out_text, err_text = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert returncode == code, (returncode, err_text)
    assert "Traceback" not in err_text, err_text
    assert f"interrupted by {signal.Signals(signum).name}" in out_text
    data = read_session(out)
    summary = data["summary"]
    assert summary["interrupted"] is True
    assert summary["signal"] == signal.Signals(signum).name
    assert 25 <= summary["steps"] < full_steps
    check_session_is_whole(data)
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_while_the_model_loads_leaves_nothing(tmp_path, env, long_wav, signum, code):
    """A signal after --out is created but before the first step (the model is loading:
    a fraction of a second for tiny, minutes for real weights; `docker stop`, systemd and
    `ros2 launch` shutdowns send SIGTERM) must still exit 128 + signum and leave either
    nothing or a whole, readable session."""
    out = tmp_path / "out"
    proc = subprocess.Popen([str(MOSHIFACE), "run", "--user-audio", str(long_wav), "--out", str(out),
                             "--quiet"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert out.exists(), "the output directory never appeared"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, (proc.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    if out.exists():  # the signal landed after the loop had started: a whole session
        left = sorted(p.name for p in out.iterdir())
        assert left == sorted(SESSION_FILES), f"{out} was left holding {left}"
        assert json.loads((out / "summary.json").read_text())["interrupted"] is True


# -- the demo --------------------------------------------------------------------------


DEMO_FILES = ("user.wav", "user_face.npy") + SESSION_FILES


def test_demo_runs_twice_into_the_same_dir(tmp_path, env, read_session):
    out = tmp_path / "demo"
    for attempt in range(2):
        result = moshiface(["demo", "--out", str(out), "--seconds", "3"], env, tmp_path)
        assert result.returncode == 0, (attempt, result.stderr)
        assert "Traceback" not in result.stderr
        assert "demo model: tiny" in result.stdout, result.stdout
        assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_FILES), attempt
        assert sorted(p.name for p in (out / "bag").iterdir()) == ["bag.mcap", "metadata.yaml"]
        data = read_session(out)
        check_session_is_whole(data)
        assert data["summary"]["user_sample_rate"] == 16000
        assert abs(data["summary"]["steps"] - math.ceil(3.0 * RATE / FRAME)) <= 1
        rate, user = scipy.io.wavfile.read(out / "user.wav")
        assert rate == 16000 and len(user) == 3 * 16000
    _user_face_speaks_the_user_audio(out, user.astype(np.float64))


def _user_face_speaks_the_user_audio(out: Path, user: np.ndarray) -> None:
    """The demo's user face is the synthetic head speaking user.wav: its mouth opens with it."""
    from moshiface_ros.flame.motion_head import LipGauge, motion_head

    face = np.load(out / "user_face.npy")
    head = motion_head(5143)
    assert face.shape == (75, 5143, 3)
    aperture = LipGauge(head.neutral, head.regions)(head.neutral + face)
    loud = np.sqrt((user[: 75 * 640].reshape(75, 640) ** 2).mean(1))  # 40 ms frames at 16 kHz
    assert np.corrcoef(aperture, loud)[0, 1] > 0.5


def test_demo_with_an_unusable_out_is_a_one_line_error(tmp_path, env):
    # BUG (cli.py cmd_demo): args.out.mkdir(...) runs outside any MoshifaceError handling,
    # so an --out below a regular file ends in a NotADirectoryError traceback.
    afile = tmp_path / "afile"
    afile.write_text("a regular file")
    result = moshiface(["demo", "--out", str(afile / "demo"), "--seconds", "1"], env, tmp_path)
    assert_one_line_error(result, str(afile / "demo"))
    assert afile.read_text() == "a regular file"


def test_demo_rejects_non_positive_seconds(tmp_path, env):
    out = tmp_path / "demo"
    result = moshiface(["demo", "--out", str(out), "--seconds", "0"], env, tmp_path)
    assert_one_line_error(result, "--seconds")
    assert not out.exists()


# -- models that are not there ----------------------------------------------------------


def test_hf_model_offline_without_cache(tmp_path, env):
    user = write_speech(tmp_path / "user.wav", 1.0)
    out = tmp_path / "out"
    started = time.monotonic()
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out),
                        "--model", "hf:kyutai/moshiko-pytorch-bf16"], env, tmp_path, timeout=60)
    elapsed = time.monotonic() - started
    assert_one_line_error(result, "kyutai/moshiko-pytorch-bf16", "Hugging Face cache")
    assert "huggingface-cli download" in result.stderr or "--model" in result.stderr
    assert elapsed < 20, f"took {elapsed:.1f} s to say the weights are not there"
    assert not out.exists()
    assert not any(Path(env["HF_HOME"]).rglob("*.safetensors"))


def test_model_dir_that_does_not_exist(tmp_path, env):
    user = write_speech(tmp_path / "user.wav", 1.0)
    out = tmp_path / "out"
    result = moshiface(["run", "--user-audio", str(user), "--out", str(out),
                        "--model", "/nonexistent/dir"], env, tmp_path)
    assert_one_line_error(result, "/nonexistent/dir")
    assert not out.exists()

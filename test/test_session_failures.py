"""A session that cannot be written to the end keeps what is complete; one writer per --out.

Real runs of the tiny model in-process; a full disk is a write that raises
``OSError(ENOSPC)`` where the real one would (the bag's file, the summary's rename), and the
WAV size limit is lowered so that a short run reaches it.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_TORCH_COMPILE", "1")

from moshiface_ros import cli  # noqa: E402
from moshiface_ros.audio import wav as wav_module  # noqa: E402
from moshiface_ros.constants import FRAME_SIZE as FRAME  # noqa: E402
from moshiface_ros.errors import MoshifaceError  # noqa: E402
from rosbags.rosbag2 import Writer  # noqa: E402
from moshiface_ros.runner import outputs as outputs_module  # noqa: E402
from moshiface_ros.runner.config import RunConfig  # noqa: E402
from moshiface_ros.runner.outputs import OutputDir  # noqa: E402
from moshiface_ros.runner.pipeline import run_session  # noqa: E402
from moshiface_ros.runner.recovery import recover_session  # noqa: E402
from moshiface_ros.speech.session import SessionOptions  # noqa: E402

SESSION_FILES = ["bag", "robot.wav", "summary.json", "text.jsonl"]


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _run(user: Path, out: Path, overwrite: bool = False, **session: Any) -> dict[str, Any]:
    return run_session(RunConfig(user_audio=user, out=out, progress=False, overwrite=overwrite,
                                 session=SessionOptions(**session)))


def _one_line(error: BaseException, *words: str) -> str:
    message = str(error)
    assert message and "\n" not in message, repr(message)
    for word in words:
        assert word in message, (word, message)
    return message


def _full_disk_after(monkeypatch, writes: int) -> None:
    """The bag's file refuses every write after ``writes`` messages, as a full disk does."""
    real = Writer.write
    count = {"n": 0}

    def write(self, connection, timestamp, data):
        count["n"] += 1
        if count["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path / f"{self.path.name}.mcap"))
        return real(self, connection, timestamp, data)

    monkeypatch.setattr(Writer, "write", write)


def test_disk_full_mid_run_keeps_the_steps_before_it(tmp_path, speech_wav, read_session, monkeypatch):
    out = tmp_path / "out"
    _full_disk_after(monkeypatch, writes=60)
    with pytest.raises(MoshifaceError) as info:
        _run(speech_wav(3.0), out)
    _one_line(info.value, "disk is full", str(out), "kept")
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == SESSION_FILES
    data = read_session(out)  # closed, readable: robot.wav, text.jsonl, bag and summary agree
    summary = data["summary"]
    assert summary["complete"] is True and "disk is full" in summary["stopped_by_error"]
    assert 0 < summary["steps"] < 38
    # robot.wav is written first: it may also hold the step the bag failed in
    assert data["robot"].shape in {(summary["steps"] * FRAME,), ((summary["steps"] + 1) * FRAME,)}
    assert {t: len(m) for t, m in data["bag"].items()} == summary["messages"]
    assert len(data["bag"]["/moshiface/robot/audio"]) - summary["steps"] in (0, 1)  # the same cut step


def test_disk_full_at_the_summary_keeps_the_closed_session(tmp_path, speech_wav, read_session, monkeypatch):
    """The bag and robot.wav were complete when the summary could not be written: they
    used to be deleted with the whole session; now they stay, and recover adds the summary."""
    out = tmp_path / "out"
    real = outputs_module.atomic_write_text

    def atomic_write_text(path, text):
        if json.loads(text).get("complete"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, text)

    monkeypatch.setattr(outputs_module, "atomic_write_text", atomic_write_text)
    with pytest.raises(MoshifaceError) as info:
        _run(speech_wav(2.0), out)
    _one_line(info.value, "disk is full", "summary.json", "moshiface recover")
    monkeypatch.undo()
    assert json.loads((out / "summary.json").read_text())["complete"] is False  # the one from the start
    summary = recover_session(out)
    data = read_session(out)
    assert summary["recovered"] is True and summary["steps"] == 25
    assert data["robot"].shape == (25 * FRAME,)
    assert len(data["bag"]["/moshiface/robot/audio"]) == 25


def test_wav_size_limit_ends_the_run_and_keeps_it(tmp_path, speech_wav, read_session, monkeypatch):
    out, user = tmp_path / "out", speech_wav(3.0)
    monkeypatch.setattr(wav_module, "_MAX_RIFF_SIZE", 50 + 10 * FRAME * 4)  # room for 10 steps
    with pytest.raises(MoshifaceError) as info:
        _run(user, out)
    _one_line(info.value, "4 GiB WAV size limit", "kept the 10 steps", str(out))
    data = read_session(out)
    assert data["summary"]["steps"] == 10 and data["robot"].shape == (10 * FRAME,)
    assert len(data["bag"]["/moshiface/robot/audio"]) == 10


def test_overwrite_keeps_the_old_session_when_the_new_run_is_refused(tmp_path, speech_wav):
    """The user face is checked against the model only once the model is loaded: the old
    session used to be deleted by then."""
    out = tmp_path / "out"
    _run(speech_wav(1.0), out, seed=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    np.save(tmp_path / "face.npy", np.zeros((10, 5000, 3), np.float32))  # not the codec's 5,143 vertices
    with pytest.raises(MoshifaceError) as info:
        run_session(RunConfig(user_audio=speech_wav(1.0), out=out, progress=False, overwrite=True,
                              user_face=tmp_path / "face.npy"))
    _one_line(info.value, "5000 vertices")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("exists", [False, True], ids=["new-out", "old-session"])
def test_a_second_writer_fails_at_once(tmp_path, speech_wav, exists):
    out = tmp_path / "out"
    if exists:
        _run(speech_wav(1.0), out, seed=1)
    before = sorted(p.name for p in out.iterdir()) if exists else []
    first = OutputDir(out)
    first.lock()  # another run holds --out
    try:
        with pytest.raises(MoshifaceError) as info:
            _run(speech_wav(1.0), out, overwrite=True)
        _one_line(info.value, "another moshiface process is writing", str(out))
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        first.unlock()
    _run(speech_wav(1.0), out, overwrite=True)  # once it is free, the run goes ahead
    assert sorted(p.name for p in out.iterdir()) == SESSION_FILES


def test_disk_full_on_the_command_line_is_one_line(tmp_path, speech_wav, monkeypatch, capsys):
    out = tmp_path / "out"
    _full_disk_after(monkeypatch, writes=30)
    code = cli.main(["run", "--user-audio", str(speech_wav(2.0)), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moshiface: error: the disk is full"), err
    assert (out / "bag" / "metadata.yaml").exists()

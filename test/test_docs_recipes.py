"""The shell recipes of the docs, run as written: a user who pastes them gets what the docs say.

docs/audio.md's "Try `--live` without hardware" starts a private PulseAudio server with a
virtual microphone and speaker, runs `moshiface run --live` through it while the demo's
voice plays into the microphone, and stops the server. This test takes its bash blocks
from the file, changes only the directory, the length and the path of the `moshiface`
program, and runs them in one real shell against the real sound server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.audio.wav import read_wav, write_wav
from moshiface_ros.constants import PRESENTATION_DELAY_MS

from pulse_server import missing_binaries

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DOC = ROOT / "docs" / "audio.md"
LIVE_SECTION = "## Try `--live` without hardware"


def bash_blocks(markdown: str, heading: str) -> list[str]:
    """The ```bash blocks of the section under ``heading`` (up to the next ## heading)."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"the recipe no longer contains {old!r} exactly once"
    return text.replace(old, new)


def _moshiface_program() -> str:
    script = Path(sys.executable).parent / "moshiface"
    return str(script) if script.exists() else f"{sys.executable} -m moshiface_ros.cli"


def _stop_leftover_server(pulse_dir: Path) -> bool:
    """Kills a server the recipe failed to stop (by its pid file); True when there was one."""
    pid_file = pulse_dir / "pulse" / "pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    except (ValueError, ProcessLookupError):
        pass
    return True


def test_live_recipe_has_three_blocks_and_the_runs_default_delay():
    text = AUDIO_DOC.read_text(encoding="utf-8")
    setup, run, stop = bash_blocks(text, LIVE_SECTION)
    assert "pulseaudio --daemonize=yes" in setup and "moshiface run --live" in run and "pulseaudio --kill" in stop
    # the presentation delay the docs give is the one every entry point uses
    said = {float(v) for v in re.findall(r"`presentation_delay_ms`\*\* \(default (\d+) ms", text)}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    said_there = re.findall(r"`--presentation-delay-ms`, default (\d+) ms|`presentation_delay_ms` \(default (\d+)",
                            readme)
    assert said and len(said_there) == 2
    assert said | {float(v) for pair in said_there for v in pair if v} == {PRESENTATION_DELAY_MS}


@pytest.mark.skipif(bool(missing_binaries()) or shutil.which("paplay") is None,
                    reason="PulseAudio is not installed (make test installs it)")
def test_live_recipe_runs_a_session_through_a_private_sound_server(read_session):
    setup, run, stop = bash_blocks(AUDIO_DOC.read_text(encoding="utf-8"), LIVE_SECTION)
    work = Path(tempfile.mkdtemp(prefix="mf-doc-", dir="/tmp"))  # short: a socket path has 108 bytes
    pulse_dir = work / "pulse"
    try:
        (work / "demo-output").mkdir()
        write_wav(work / "demo-output" / "user.wav", synthetic_speech(12.0, 16000, seed=3), 16000)  # as make demo
        setup = _replace_once(setup, "/tmp/moshiface-audio", str(pulse_dir))
        run = _replace_once(_replace_once(run, "--duration 10", "--duration 2"), ".venv/bin/moshiface",
                            _moshiface_program())
        script = f"set -eu\nstop_server() {{\nset +e\n{stop}\n}}\ntrap stop_server EXIT\n{setup}\n{run}\n"
        env = {**os.environ, "HOME": str(work), "NO_TORCH_COMPILE": "1"}
        for name in ("PULSE_SERVER", "ALSA_CONFIG_PATH", "XDG_RUNTIME_DIR", "PULSE_CLIENTCONFIG"):
            env.pop(name, None)
        done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        assert not pulse_dir.exists(), "the recipe's last block did not remove the server's directory"

        summary = json.loads((work / "live-session" / "summary.json").read_text())
        assert summary["user_audio"] == "live" and summary["steps"] >= 10, summary
        assert summary["live"]["playback"]["played"] > 0, json.dumps(summary["live"])
        session = read_session(work / "live-session")
        user = [m for _, _, m in session["bag"]["/moshiface/user/audio"]]
        assert len(user) == summary["steps"] and [m.sequence for m in user] == list(range(len(user)))
        heard = np.concatenate([np.asarray(m.samples, np.float32) for m in user])
        assert np.abs(heard).max() > 1e-3, "the microphone heard nothing of the user's voice"
        robot, _ = read_wav(work / "robot-heard.wav")
        assert np.abs(robot).max() > 1e-3, "nothing of the robot's voice came out of the speaker"
    finally:
        leftover = _stop_leftover_server(pulse_dir)
        shutil.rmtree(work, ignore_errors=True)
    assert not leftover, "the recipe left its PulseAudio server running"

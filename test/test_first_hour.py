"""A new user's first hour: set-up, messages and output that must not get in the way.

Each test drives the real thing: the system-package script as a real unprivileged user, the
installed livekit against the pinned requirement, MediaPipe's real graph in a subprocess
(what reaches the terminal), a real codec training, the real OpenCV text metrics.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.cli import main
from moshiface_ros.errors import MoshifaceError

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install_system_packages.sh"
MOSHIFACE = Path(sys.executable).parent / "moshiface"


# -- set-up ---------------------------------------------------------------------------------

def _requirement(name: str) -> str:
    for line in (ROOT / "requirements" / "runtime.txt").read_text().splitlines():
        if re.match(rf"{name}\s*[=<>!~]", line):
            return line.split("#")[0].strip()
    raise AssertionError(f"{name} is not in requirements/runtime.txt")


def test_livekit_is_pinned_to_a_release_that_takes_mediapipes_protobuf():
    """An open `livekit>=1.0` next to `protobuf<5` made pip download and reject one livekit
    wheel after another; the pin names the release whose protobuf range includes <5."""
    pinned = _requirement("livekit")
    assert re.fullmatch(r"livekit==[\d.]+", pinned), pinned
    assert _requirement("protobuf") == "protobuf>=4.25,<5"
    assert metadata.version("livekit") == pinned.split("==")[1]
    needs = [r for r in metadata.requires("livekit") or [] if r.startswith("protobuf")]
    assert needs and all(">=5" not in r and ">= 5" not in r for r in needs), needs
    assert int(metadata.version("protobuf").split(".")[0]) < 5


def _as_nobody(packages: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MOSHIFACE_SYSTEM_PACKAGES": packages}
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env",
                           "env", *[f"{k}={v}" for k, v in env.items()], "bash", str(INSTALL_SCRIPT)],
                          capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("dpkg-query") is None,
                    reason="needs root (to become an unprivileged user), setpriv and dpkg")
def test_system_packages_as_a_user_say_in_one_line_what_to_install():
    installed = "bash"  # on every Debian/Ubuntu
    missing = "moshiface-no-such-package"
    done = _as_nobody(f"{installed} {missing}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.rstrip().endswith(f"sudo apt-get install --no-install-recommends {missing}")
    assert f" {installed}" not in done.stderr.split("apt-get install", 1)[1]
    nothing_missing = _as_nobody(installed)
    assert nothing_missing.returncode == 0 and nothing_missing.stderr == ""


# -- MediaPipe's start-up chatter -----------------------------------------------------------

def _face_video(path: Path, frames: int = 20) -> Path:
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (image.shape[1], image.shape[0]))
    for _ in range(frames):
        writer.write(image)
    writer.release()
    return path


@pytest.mark.skipif(not MOSHIFACE.exists(), reason="no moshiface console script")
def test_tracking_a_video_prints_no_third_party_chatter(tmp_path):
    pytest.importorskip("mediapipe")
    from moshiface_ros.audio.synth import synthetic_speech
    from moshiface_ros.audio.wav import write_wav

    write_wav(tmp_path / "user.wav", synthetic_speech(0.8, 16000, seed=1), 16000)
    video = _face_video(tmp_path / "user.avi")
    env = {**os.environ, "NO_TORCH_COMPILE": "1"}
    done = subprocess.run([str(MOSHIFACE), "run", "--user-audio", "user.wav", "--user-video", str(video),
                           "--out", "out", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "user face seen on 10 steps" in done.stdout  # the face really went through MediaPipe
    assert done.stderr == "", done.stderr


def test_the_chatter_filter_passes_every_other_line_through():
    """What else reaches fd 2 while the graph starts (a real error) still shows, in order."""
    code = ("import os, sys\n"
            "from moshiface_ros.tracking.landmarks import native_chatter_filtered\n"
            "with native_chatter_filtered():\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "    os.write(2, b'W0000 00:00:1700000000.000001    42 inference_feedback_manager.cc:114] x\\n')\n"
            "    os.write(2, b'first real line\\n')\n"
            "    print('second real line', file=sys.stderr)\n"
            "print('after', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "first real line\nsecond real line\nafter\n"


# -- messages -------------------------------------------------------------------------------

def test_a_model_repository_without_hf_suggests_the_hf_form():
    from moshiface_ros.speech.models import ModelSpec

    with pytest.raises(MoshifaceError, match=re.escape("write --model hf:kyutai/moshiko-pytorch-bf16")):
        ModelSpec.parse("kyutai/moshiko-pytorch-bf16")
    with pytest.raises(MoshifaceError) as not_a_repo:
        ModelSpec.parse("./checkpoints/missing")
    assert "hf:" not in str(not_a_repo.value).split("nor an existing")[1]
    assert ModelSpec.parse("hf:kyutai/moshiko-pytorch-bf16").location == "kyutai/moshiko-pytorch-bf16"


def test_codec_train_prints_perplexity_as_a_plain_number(tmp_path, capsys):
    from moshiface_ros.face_codec.synthetic import write_dataset

    write_dataset(tmp_path / "data", vertices=40, speakers=1, sequences=4, frames=40)
    assert main(["codec", "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "codec"),
                 "--config", "small", "--epochs", "1", "--window", "16", "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "units" not in line
    value = float(re.search(r"perplexity (\S+) ", line).group(1))
    assert 0.0 < value <= 1.0  # normalised by the codebook size, as docs/face-codec.md defines it
    assert re.search(r"MVE [\d.]+ x1e-3 m", line), line


# -- the render's bar panel title -----------------------------------------------------------

@pytest.mark.parametrize("width", [900, 408, 260, 150])
def test_bar_title_always_fits_its_panel(width):
    import cv2

    from moshiface_ros.render.video import BACKGROUND, TITLE_MARGIN, _draw_title, title_lines

    title = "actuators (recorded; bars span the recorded range)"
    scale, lines = title_lines(title, width - 2 * TITLE_MARGIN)
    assert " ".join(lines) == title
    for line in lines:
        assert cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width - 2 * TITLE_MARGIN
    canvas = np.full((540, width, 3), BACKGROUND, np.uint8)
    first_bar_row = _draw_title(canvas, title)
    drawn = np.any(canvas != np.array(BACKGROUND, np.uint8), axis=2)
    rows, columns = np.nonzero(drawn)
    assert rows.size and rows.max() < first_bar_row  # the bars start below the last title line
    assert columns.min() >= TITLE_MARGIN - 1 and columns.max() <= width - TITLE_MARGIN  # nothing cut at the edge

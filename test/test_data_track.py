"""`moshiface data track`: a real face video (the astronaut photo under in-plane rotations,
written as MP4 at 30 and 29.97 fps) through MediaPipe and the FLAME fit to 25 fps motion.

What must hold: the frame count is the 25 fps resampling of the video's duration (no drift at
29.97 fps), the head's rotation is in the vertices (a vertex at the top of the head moves
sideways with the warp angle: |correlation| > 0.9), and a bad video is one clear line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
skimage_data = pytest.importorskip("skimage.data")

from moshiface_ros.cli import main  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def warp_angle(k: int, count: int) -> float:
    return 12.0 * math.sin(2 * math.pi * k / count)


def write_face_video(path: Path, frames: int, fps: float, size: int = 256) -> np.ndarray:
    """The astronaut's face rolled by ``warp_angle``; returns the angle of each video frame."""
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)[:320, 60:380]
    image = cv2.resize(image, (size, size))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    angles = np.array([warp_angle(k, frames) for k in range(frames)])
    for angle in angles:
        M = cv2.getRotationMatrix2D((size * 0.5, size * 0.45), float(angle), 1.0)
        writer.write(cv2.warpAffine(image, M, (size, size), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    assert path.stat().st_size > 1000
    return angles


def expected_frames(frames: int, fps: float) -> int:
    """Output frame k exists while the video frame shown at k x 40 ms exists."""
    return sum(1 for k in range(10 * frames) if math.floor(k * 0.04 * fps + 1e-9) < frames)


@pytest.mark.parametrize("fps", [30.0, 29.97])
def test_track_resamples_to_25_fps_with_the_head_pose_in_the_vertices(tmp_path, capsys, fps):
    video = tmp_path / "face.mp4"
    angles = write_face_video(video, 60, fps)
    assert main(["data", "track", str(video), "--out", str(tmp_path / "out")]) == 0
    assert "face on" in capsys.readouterr().out
    motion = np.load(tmp_path / "out" / "face.npy")
    info = json.loads((tmp_path / "out" / "face.track.json").read_text())
    assert motion.shape == (expected_frames(60, fps), 5023, 3) and motion.dtype == np.float32
    assert info["fps"] == 25 and abs(info["source_fps"] - fps) < 0.01
    assert info["frames_with_face"] >= len(motion) - 2
    # the video frame each output frame shows, and its roll
    shown = np.floor(np.arange(len(motion)) * 0.04 * fps + 1e-9).astype(int)
    top = int(np.argmax(_neutral_heights()))  # the crown of the head
    sideways = motion[:, top, 0]
    corr = np.corrcoef(sideways, angles[shown])[0, 1]
    assert abs(corr) > 0.9, corr
    assert np.ptp(sideways) > 0.005  # metres: a 12 degree roll moves the crown by centimetres


def _neutral_heights() -> np.ndarray:
    from moshiface_ros.flame.synthetic import build_synthetic_flame

    model = build_synthetic_flame(0)
    return model.neutral()[:, 1]


def test_a_bad_video_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert main(["data", "track", str(tmp_path / "junk.mp4"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "junk.mp4" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "junk.npy").exists()
    assert main(["data", "track", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err

"""`moshiface render`: a session written as a real bag becomes a real MP4 (read back with
OpenCV), with the robot's audio muxed in by ffmpeg when there is one."""

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.audio.wav import write_wav
from moshiface_ros.cli import main
from moshiface_ros.messages.types import AudioChunk, BlendshapeWeights, FaceFrame
from moshiface_ros.recording.bag import SessionBag
from moshiface_ros.render.video import ffmpeg_binary
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.synthetic import synthetic_face
from moshiface_ros.timing import FACE_FRAME_NS, STEP_NS
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE

ROOT = Path(__file__).resolve().parents[1]
START = 5 * 10**9
STEPS = 6  # 0.48 s: 12 face frames


def _session(tmp_path: Path, faces: bool = True, name: str = "session") -> Path:
    out = tmp_path / name
    out.mkdir()
    face = synthetic_face(5023)
    speech = synthetic_speech(STEPS * 0.08, 24000, seed=2)
    speech[:4000] = 0.4 * np.sin(np.arange(4000) * 2 * np.pi * 220 / 24000)
    with SessionBag(out / "bag") as bag:
        bag.add_topic(ROBOT_AUDIO, AudioChunk)
        if faces:
            bag.add_topic(ROBOT_FACE, FaceFrame)
            bag.add_topic(ROBOT_BLENDSHAPES, BlendshapeWeights)
        for step in range(STEPS):
            stamp = START + step * STEP_NS
            bag.write(ROBOT_AUDIO, AudioChunk(stamp, 24000, speech[step * 1920:(step + 1) * 1920], sequence=step))
            for k in range(2 if faces else 0):
                t = stamp + k * FACE_FRAME_NS
                w = np.zeros(52)
                w[ARKIT_52.index("jawOpen")] = (step * 2 + k) / (2 * STEPS)
                bag.write(ROBOT_FACE, FaceFrame(t, face.rig.synthesise(w)))
                bag.write(ROBOT_BLENDSHAPES, BlendshapeWeights(t, list(ARKIT_52), w))
    write_wav(out / "robot.wav", speech, 24000)
    (out / "summary.json").write_text("{}")
    return out


def _read_video(path: Path) -> tuple[int, int, int, list[np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    return len(frames), width, height, frames


def _has_audio_stream(path: Path) -> bool:
    probe = subprocess.run([ffmpeg_binary(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return "Audio:" in probe.stderr


def test_render_a_runner_session_with_audio(tmp_path, capsys):
    session = _session(tmp_path)
    assert main(["render", str(session), "--size", "480x240"]) == 0
    out = session / "preview.mp4"
    count, width, height, frames = _read_video(out)
    assert (count, width, height) == (2 * STEPS, 480, 240)
    # the mesh panel is drawn (not just background) and the bars panel changes as the jaw opens
    assert frames[0][:, :240].std() > 10
    assert np.abs(frames[-1][:, 240:].astype(int) - frames[0][:, 240:].astype(int)).sum() > 1000
    # the jaw opens: the face's lower part changes between the first and last frame
    assert np.abs(frames[-1][120:, :240].astype(int) - frames[0][120:, :240].astype(int)).mean() > 1
    if ffmpeg_binary() is None:
        pytest.skip("no ffmpeg: the video is written without audio")
    assert _has_audio_stream(out)
    text = capsys.readouterr().out
    assert "12 frames" in text and "with the robot's audio" in text and "synthetic stand-in" in text
    assert not list(session.glob(".render-*")), "temporary files left behind"


def test_render_a_bare_bag_with_a_head_and_no_faces(tmp_path):
    """An audio-only session: the servo head's actuators move from the speech fallback."""
    session = _session(tmp_path, faces=False)
    out = tmp_path / "servo.mp4"
    assert main(["render", str(session / "bag"), "--out", str(out), "--size", "320x160", "--no-audio",
                 "--head", str(ROOT / "config" / "heads" / "servo_head.yaml")]) == 0
    count, width, height, frames = _read_video(out)
    assert (count, width, height) == (2 * STEPS, 320, 160)
    assert np.abs(frames[3].astype(int) - frames[0].astype(int)).sum() > 1000  # the jaw bar moved


def test_render_errors_are_one_line(tmp_path, capsys):
    assert main(["render", str(tmp_path / "nothing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["render", str(tmp_path / "empty")]) == 1
    assert "neither a session directory" in capsys.readouterr().err
    session = _session(tmp_path, faces=False, name="audio-only")
    assert main(["render", str(session), "--out", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err
    assert "pass --head FILE" in err and err.count("\n") == 1
    assert not (tmp_path / "x.mp4").exists()
    assert main(["render", str(session), "--out", str(tmp_path / "x.avi")]) == 1
    assert "--out must be an .mp4" in capsys.readouterr().err

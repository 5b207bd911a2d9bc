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
from moshiface_ros.render.preview import render_session
from moshiface_ros.render.video import ffmpeg_binary
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.synthetic import synthetic_face
from moshiface_ros.timing import FACE_FRAME_NS, STEP_NS
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE, USER_FACE

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
    # layout at 480x240: the face in the 192 x 192 square top left, the bars to its right, the strip below
    # the mesh panel is drawn (not just background) and the bars panel changes as the jaw opens
    assert frames[0][:192, :192].std() > 10
    assert np.abs(frames[-1][:192, 192:].astype(int) - frames[0][:192, 192:].astype(int)).sum() > 1000
    # the jaw opens: the face's lower part changes between the first and last frame
    assert np.abs(frames[-1][96:192, :192].astype(int) - frames[0][96:192, :192].astype(int)).mean() > 1
    # the face is shaded in skin colours (red above blue in BGR), not grey
    face = frames[0][40:160, 50:140].reshape(-1, 3).astype(int)
    skin = face[(face.sum(1) > 200)]
    assert len(skin) > 500 and (skin[:, 2] - skin[:, 0]).mean() > 30
    # the strip plots the voice and moves its cursor
    assert np.abs(frames[-1][192:].astype(int) - frames[0][192:].astype(int)).sum() > 500
    if ffmpeg_binary() is None:
        pytest.skip("no ffmpeg: the video is written without audio")
    assert _has_audio_stream(out)
    text = capsys.readouterr().out
    assert "12 frames" in text and "with the robot's audio" in text and "synthetic head" in text
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


def _talking_session(tmp_path: Path, seconds: float = 3.0, user_face: bool = False) -> Path:
    """A session with only the robot's voice (pauses included), and optionally the user's face."""
    out = tmp_path / "talk"
    out.mkdir()
    speech = synthetic_speech(seconds, 24000, seed=5)
    steps = int(seconds / 0.08)
    with SessionBag(out / "bag") as bag:
        bag.add_topic(ROBOT_AUDIO, AudioChunk)
        if user_face:
            bag.add_topic(USER_FACE, FaceFrame)
        for step in range(steps):
            stamp = START + step * STEP_NS
            bag.write(ROBOT_AUDIO, AudioChunk(stamp, 24000, speech[step * 1920:(step + 1) * 1920], sequence=step))
            for k in range(2 if user_face else 0):
                w = np.zeros(52)
                w[ARKIT_52.index("eyeBlinkLeft")] = float(step % 2)
                bag.write(USER_FACE, FaceFrame(stamp + k * FACE_FRAME_NS, synthetic_face(5143).rig.synthesise(w)))
    write_wav(out / "robot.wav", speech[: steps * 1920], 24000)
    (out / "summary.json").write_text("{}")
    return out


def test_face_from_voice_opens_the_mouth_on_voiced_frames(tmp_path, capsys):
    """--face-from-voice: the robot's voice drives the synthetic head; the preview's own sync data
    show the lips apart where the voice is loud and together in its pauses."""
    session = _talking_session(tmp_path)
    summary = render_session(session, tmp_path / "voice.mp4", size=(480, 240), face_from_voice=True)
    envelope, aperture = summary["envelope"], summary["aperture_mm"]
    assert len(envelope) == len(aperture) == summary["frames"] == 74  # 37 steps of 80 ms
    voiced, silent = envelope > 0.3 * envelope.max(), envelope < 0.02 * envelope.max()
    assert voiced.sum() > 10 and silent.sum() > 5
    assert np.median(aperture[voiced]) > np.median(aperture[silent]) + 2.0  # mm
    assert np.corrcoef(aperture, envelope)[0, 1] > 0.6
    count, _, _, frames = _read_video(tmp_path / "voice.mp4")
    assert count == 74
    loud, quiet = int(np.argmax(aperture)), int(np.flatnonzero(silent)[0])
    mouth = (slice(110, 170), slice(60, 130))  # the lower face in the 192 x 192 face panel
    assert np.abs(frames[loud][mouth].astype(int) - frames[quiet][mouth].astype(int)).mean() > 2
    assert main(["render", str(session), "--out", str(tmp_path / "v2.mp4"), "--size", "320x160", "--no-audio",
                 "--face-from-voice"]) == 0
    text = capsys.readouterr().out
    assert "driven from the robot's recorded voice" in text and "without audio: --no-audio" in text


def test_user_face_is_drawn_beside_the_robot(tmp_path, capsys):
    session = _talking_session(tmp_path, seconds=0.8, user_face=True)
    assert main(["render", str(session), "--out", str(tmp_path / "both.mp4"), "--size", "480x240",
                 "--face-from-voice"]) == 0
    assert "user face: drawn" in capsys.readouterr().out
    _, _, _, frames = _read_video(tmp_path / "both.mp4")
    user = (slice(0, 192), slice(192, 384))  # the second face panel: no bars, two faces of 192
    assert frames[0][user].std() > 10
    # the user's left eye blinks every other step: the panel changes between frames 0 and 2
    assert np.abs(frames[2][user].astype(int) - frames[0][user].astype(int)).sum() > 200


def test_without_ffmpeg_the_video_is_kept_and_the_message_says_what_to_install(tmp_path, monkeypatch):
    import moshiface_ros.render.video as video

    monkeypatch.setattr(video, "ffmpeg_binary", lambda: None)
    summary = render_session(_session(tmp_path), tmp_path / "silent.mp4", size=(320, 160))
    assert summary["audio"] is False and "imageio-ffmpeg" in summary["audio_note"]
    assert _read_video(tmp_path / "silent.mp4")[0] == 2 * STEPS


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

"""The runner's face path with the tiny Moshi-Face model and the tiny causal codec:
user face motion in, user and robot face tokens and robot face frames out, in the bag,
on the audio's clock, and equal to the codec run over the whole sequence."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import torch  # noqa: E402

from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.audio.wav import write_wav  # noqa: E402
from moshiface_ros.errors import MoshifaceError  # noqa: E402
from moshiface_ros.face_codec.stream import tiny_codec  # noqa: E402
from moshiface_ros.face_codec.synthetic import SyntheticFace  # noqa: E402
from moshiface_ros.constants import FACE_FRAME_NS as FRAME_NS, SAMPLE_RATE, STEP_NS, VHAP_VERTICES  # noqa: E402
from moshiface_ros.runner.config import RunConfig  # noqa: E402
from moshiface_ros.runner.pipeline import run_session  # noqa: E402



def _stamp(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


@pytest.fixture(scope="module")
def face_session(tmp_path_factory, read_session):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("face")
    write_wav(root / "user.wav", synthetic_speech(2.0, SAMPLE_RATE, seed=1), SAMPLE_RATE)
    motion = SyntheticFace(vertices=VHAP_VERTICES).motion(46, seed=3)  # 1.84 s: the last steps see no face
    np.save(root / "face.npy", motion)
    summary = run_session(RunConfig(user_audio=root / "user.wav", out=root / "out", progress=False,
                                    user_face=root / "face.npy"))
    return summary, read_session(root / "out"), motion


def test_face_streams_are_recorded_on_the_step_clock(face_session):
    summary, session, motion = face_session
    bag = session["bag"]
    steps = summary["steps"]
    assert steps == 25
    assert len(bag["/moshiface/user/face"]) == len(motion)
    assert summary["face"]["user_steps_with_face"] == len(motion) // 2 == len(bag["/moshiface/user/face_tokens"])
    robot_frames = [m for _, _, m in bag["/moshiface/robot/face"]]
    assert len(robot_frames) == 2 * steps == summary["face"]["robot_face_frames"]
    audio_stamps = [_stamp(m) for _, _, m in bag["/moshiface/robot/audio"]]
    frame_stamps = [_stamp(m) for m in robot_frames]
    assert frame_stamps[0::2] == audio_stamps  # each step's first frame carries the audio's stamp
    assert [b - a for a, b in zip(frame_stamps[0::2], frame_stamps[1::2])] == [FRAME_NS] * steps
    assert all(len(m.vertices) == VHAP_VERTICES * 3 for m in robot_frames)


def test_face_tokens_equal_the_codec_over_the_whole_sequence(face_session):
    _, session, motion = face_session
    codec = tiny_codec()
    user_tokens = np.stack([m.tokens for _, _, m in session["bag"]["/moshiface/user/face_tokens"]])
    whole = codec.encode(torch.from_numpy(motion)[None])[0].numpy()
    np.testing.assert_array_equal(user_tokens, whole)
    robot = session["bag"]["/moshiface/robot/face_tokens"]
    robot_tokens = np.stack([m.tokens for _, _, m in robot]).astype(np.int64)
    assert robot_tokens.shape[1] == 8 and robot_tokens.max() < 256
    decoded = codec.decode(torch.from_numpy(robot_tokens)[None])[0].numpy()
    first = [_stamp(m) for _, _, m in robot][0]
    frames = [m for _, _, m in session["bag"]["/moshiface/robot/face"] if _stamp(m) >= first]
    streamed = np.stack([np.asarray(m.vertices).reshape(-1, 3) for m in frames])
    np.testing.assert_allclose(streamed, decoded, atol=1e-5)


@pytest.mark.parametrize("motion, match", [
    (np.zeros((10, 5000, 3), np.float32), f"5000 vertices, the face codec expects {VHAP_VERTICES}"),
    (np.full((10, VHAP_VERTICES, 3), np.nan, np.float32), "NaN"),
    (np.zeros((10, VHAP_VERTICES), np.float32), r"\(frames, vertices, 3\)"),
])
def test_bad_user_face_is_one_error_and_leaves_nothing(tmp_path, motion, match):
    write_wav(tmp_path / "user.wav", synthetic_speech(0.5, SAMPLE_RATE), SAMPLE_RATE)
    np.save(tmp_path / "face.npy", motion)
    with pytest.raises(MoshifaceError, match=match):
        run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                              user_face=tmp_path / "face.npy"))
    assert not (tmp_path / "out").exists()


def test_user_video_is_tracked_into_the_face_path(tmp_path, read_session):
    """A real photo (skimage's astronaut) as a 1.2 s video, tracked with the synthetic FLAME."""
    cv2 = pytest.importorskip("cv2")
    skimage_data = pytest.importorskip("skimage.data")
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(tmp_path / "user.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0,
                             (image.shape[1], image.shape[0]))
    for k in range(30):
        shift = np.float32([[1, 0, 2 * np.sin(k / 5)], [0, 1, 0]])
        writer.write(cv2.warpAffine(image, shift, (image.shape[1], image.shape[0])))
    writer.release()
    write_wav(tmp_path / "user.wav", synthetic_speech(1.2, SAMPLE_RATE, seed=2), SAMPLE_RATE)
    summary = run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                                    user_video=tmp_path / "user.avi"))
    bag = read_session(tmp_path / "out")["bag"]
    frames = [m for _, _, m in bag["/moshiface/user/face"]]
    assert len(frames) == 30 and all(m.face_present for m in frames)
    assert all(len(m.vertices) == VHAP_VERTICES * 3 and len(m.global_pose) == 3 for m in frames)
    assert summary["face"]["user_steps_with_face"] == 15 == len(bag["/moshiface/user/face_tokens"])


def test_head_file_retargets_every_robot_face_frame_into_the_bag(face_session, tmp_path, read_session):
    """--head: the servo head's blendshape weights and actuator trajectories, one per face frame."""
    head = Path(__file__).resolve().parents[1] / "config" / "heads" / "servo_head.yaml"
    write_wav(tmp_path / "user.wav", synthetic_speech(1.0, SAMPLE_RATE, seed=4), SAMPLE_RATE)
    summary = run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                                    head=head))
    bag = read_session(tmp_path / "out")["bag"]
    faces = len(bag["/moshiface/robot/face"])
    assert summary["head"]["outputs"]["face"] == faces == 2 * summary["steps"]
    blendshapes = [m for _, _, m in bag["/moshiface/robot/blendshapes"]]
    actuators = [m for _, msgtype, m in bag["/moshiface/robot/actuators"]]
    assert len(blendshapes) == len(actuators) == sum(summary["head"]["outputs"].values())
    assert {msgtype for _, msgtype, _ in bag["/moshiface/robot/actuators"]} == {"trajectory_msgs/msg/JointTrajectory"}
    assert all(len(m.joint_names) == 12 and np.isfinite(m.points[0].positions).all() for m in actuators)


def test_face_frames_after_the_last_step_are_not_recorded(tmp_path, read_session):
    """1 s of speech with 3 s of motion: only the frames of the 13 steps are fed and recorded
    (the 2 s after them used to be recorded too)."""
    write_wav(tmp_path / "user.wav", synthetic_speech(1.0, SAMPLE_RATE, seed=5), SAMPLE_RATE)
    np.save(tmp_path / "face.npy", SyntheticFace(vertices=VHAP_VERTICES).motion(75, seed=5))
    summary = run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                                    user_face=tmp_path / "face.npy"))
    frames = [m for _, _, m in read_session(tmp_path / "out")["bag"]["/moshiface/user/face"]]
    end = summary["start_time_ns"] + summary["steps"] * STEP_NS
    assert summary["steps"] == 13 and len(frames) == 26
    assert max(_stamp(m) for m in frames) < end


def test_user_face_is_memory_mapped_not_copied(tmp_path):
    """A 37 MB float64 motion file: reading it allocates almost nothing (it used to load the
    whole file and copy it to float32: 55 MB here, 2 GB for an hour of motion)."""
    import tracemalloc

    from moshiface_ros.runner.inputs import read_user_face, user_face_frames

    path = tmp_path / "face.npy"
    np.save(path, np.zeros((300, VHAP_VERTICES, 3), np.float64))
    tracemalloc.start()
    try:
        motion = read_user_face(path)
        first = next(user_face_frames(motion, 0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(motion, np.memmap) and motion.shape == (300, VHAP_VERTICES, 3)
    assert first.vertices.dtype == np.float32 and first.vertices.shape == (VHAP_VERTICES, 3)
    assert peak < 4 * 2**20, peak


@pytest.mark.parametrize("damage, words", [
    (lambda data: b"PK\x03\x04" + data[4:], "not a .npy file"),
    (lambda data: data[:-5000], "truncated"),
    (lambda data: data[:10] + b"\0" * 40 + data[50:], "header is damaged"),
])
def test_corrupt_motion_file_says_what_is_wrong(tmp_path, damage, words):
    """Not "Cannot load file containing pickled data when allow_pickle=False"."""
    from moshiface_ros.runner.inputs import read_user_face

    path = tmp_path / "face.npy"
    np.save(path, np.zeros((10, VHAP_VERTICES, 3), np.float32))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MoshifaceError) as info:
        read_user_face(path)
    message = str(info.value)
    assert words in message and "\n" not in message and "pickled data" not in message, message


def test_user_video_without_a_face_warns(tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(tmp_path / "wall.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (320, 240))
    for k in range(20):
        writer.write(np.full((240, 320, 3), 90 + k, np.uint8))  # a blank wall: no face anywhere
    writer.release()
    write_wav(tmp_path / "user.wav", synthetic_speech(0.8, SAMPLE_RATE, seed=6), SAMPLE_RATE)
    summary = run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                                    user_video=tmp_path / "wall.avi"))
    assert summary["face"]["user_steps_with_face"] == 0
    assert len(summary["warnings"]) == 1 and "no user face was seen" in summary["warnings"][0]
    from moshiface_ros.cli import _report

    _report(summary, tmp_path / "out")
    assert "warning: no user face was seen in the video" in capsys.readouterr().out


def test_head_uses_the_presentation_delay_and_reports_readably(tmp_path, capsys):
    """A 350 ms actuator needs a delay above 300 ms: --presentation-delay-ms 400 is what
    the head is built with (it used to be built with the default and refuse)."""
    source = Path(__file__).resolve().parents[1] / "config" / "heads" / "servo_head.yaml"
    head = tmp_path / "slow_head.yaml"
    text = source.read_text()
    at = text.index("latency_ms:")
    head.write_text(text[:at] + "latency_ms: 350.0" + text[text.index("\n", at):])
    write_wav(tmp_path / "user.wav", synthetic_speech(0.5, SAMPLE_RATE, seed=7), SAMPLE_RATE)
    with pytest.raises(MoshifaceError, match="presentation_delay_ms"):
        run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "refused", progress=False,
                              head=head))
    summary = run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                                    head=head, presentation_delay_ms=400.0))
    from moshiface_ros.cli import _report

    _report(summary, tmp_path / "out")
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("head:"))
    assert "{" not in line and f"retargeted {summary['head']['outputs']['face']} face frames" in line, line


def test_a_face_missing_for_two_seconds_is_said_once_while_it_runs(tmp_path, capsys):
    write_wav(tmp_path / "user.wav", synthetic_speech(3.5, SAMPLE_RATE, seed=8), SAMPLE_RATE)
    np.save(tmp_path / "face.npy", SyntheticFace(vertices=VHAP_VERTICES).motion(12, seed=8))  # 0.48 s
    run_session(RunConfig(user_audio=tmp_path / "user.wav", out=tmp_path / "out", progress=False,
                          user_face=tmp_path / "face.npy"))
    lines = [line for line in capsys.readouterr().err.splitlines() if "no user face seen" in line]
    assert len(lines) == 1 and lines[0].startswith("moshiface: no user face seen for 2 s"), lines

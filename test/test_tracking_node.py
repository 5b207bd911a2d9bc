"""The face_tracker node on a video file: FaceFrames at 25 fps with the face box, and
face-absent frames while the camera is missing.

Needs a ROS 2 environment (rclpy, sensor_msgs and this package's generated messages);
skipped otherwise, or failed under ``MOSHIFACE_REQUIRE_ROS=1``. Everything the node wraps is
tested without ROS in test_tracking_*.py and test_node_logic.py.
"""

import time

import numpy as np
import pytest

import ros_harness

ros_harness.require_ros_module()

import rclpy  # noqa: E402
import sensor_msgs.msg as sensor_msgs  # noqa: E402

import moshiface_ros.msg as msgs  # noqa: E402

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.nodes.face_tracker import FACE_BOX, FaceTrackerNode  # noqa: E402
from moshiface_ros.nodes.qos import FACE_QOS  # noqa: E402
from moshiface_ros.topics import USER_FACE  # noqa: E402


def write_video(path, seconds=2.0):
    face = skimage_data.astronaut()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, face.shape[1::-1])
    for k in range(int(seconds * 25)):
        M = cv2.getRotationMatrix2D((230, 180), 8 * np.sin(k / 8), 1.0)
        writer.write(cv2.cvtColor(cv2.warpAffine(face, M, face.shape[1::-1]), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run_node(source, seconds, arrivals=None):
    rclpy.init()
    # node options as a launch file or a composition would give them
    node = FaceTrackerNode(parameter_overrides=[Parameter("flame_model", value="synthetic"),
                                                Parameter("source", value=str(source)),
                                                Parameter("reopen_interval", value=0.2)])
    peer = rclpy.create_node("face_tracker_test_peer")
    faces, boxes, arrivals = [], [], arrivals if arrivals is not None else []

    def on_face(msg):
        arrivals.append(time.monotonic())
        faces.append(convert.face_frame_from_msg(msg))

    peer.create_subscription(msgs.FaceFrame, USER_FACE, on_face, FACE_QOS)
    peer.create_subscription(sensor_msgs.RegionOfInterest, FACE_BOX, boxes.append, FACE_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
    finally:
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()
        rclpy.try_shutdown()
    return faces, boxes


def test_publishes_tracked_faces_at_25_fps(tmp_path):
    arrivals = []
    faces, boxes = run_node(write_video(tmp_path / "user.avi"), seconds=4.0, arrivals=arrivals)
    assert 60 <= len(faces) <= 110 and len(boxes) == len(faces)
    steady = np.diff(arrivals[len(arrivals) // 4:])  # after start-up
    rate = 1.0 / np.median(steady)
    print(f"\n/moshiface/user/face: {rate:.1f} Hz (median interval), {len(faces)} frames in 4 s")
    assert 22.0 <= rate <= 28.0
    present = [f for f in faces if f.face_present]
    assert len(present) > 0.7 * len(faces)
    assert present[-1].vertices.shape == (5143, 3) and present[-1].frame_id == "user_camera"  # VHAP teeth by default
    assert any(b.width > 50 for b in boxes)


def test_missing_camera_gives_face_absent_frames_and_keeps_running(tmp_path):
    faces, _ = run_node(tmp_path / "no-camera.avi", seconds=1.5)
    assert len(faces) > 20 and not any(f.face_present for f in faces)

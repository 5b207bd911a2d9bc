"""The face_tracker node on a video file: FaceFrames at 25 fps with the face box, and
face-absent frames while the camera is missing.

Needs a ROS 2 environment (rclpy, sensor_msgs and this package's generated messages);
skipped otherwise. Everything the node wraps is tested without ROS in test_tracking_*.py.
"""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")
msgs = pytest.importorskip("moshiface_ros.msg", reason="needs the built moshiface_ros messages")
sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="needs sensor_msgs")
cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from rclpy.executors import SingleThreadedExecutor

from moshiface_ros.messages import convert
from moshiface_ros.nodes.face_tracker import FACE_BOX, FaceTrackerNode
from moshiface_ros.nodes.qos import FACE_QOS
from moshiface_ros.topics import USER_FACE


def write_video(path, seconds=2.0):
    face = skimage_data.astronaut()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, face.shape[1::-1])
    for k in range(int(seconds * 25)):
        M = cv2.getRotationMatrix2D((230, 180), 8 * np.sin(k / 8), 1.0)
        writer.write(cv2.cvtColor(cv2.warpAffine(face, M, face.shape[1::-1]), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def run_node(source, seconds):
    rclpy.init(args=["--ros-args", "-p", "flame_model:=synthetic", "-p", f"source:={source}",
                     "-p", "reopen_interval:=0.2"])
    node = FaceTrackerNode()
    peer = rclpy.create_node("face_tracker_test_peer")
    faces, boxes = [], []
    peer.create_subscription(msgs.FaceFrame, USER_FACE, lambda m: faces.append(convert.face_frame_from_msg(m)),
                             FACE_QOS)
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
    faces, boxes = run_node(write_video(tmp_path / "user.avi"), seconds=4.0)
    assert 60 <= len(faces) <= 110 and len(boxes) == len(faces)
    present = [f for f in faces if f.face_present]
    assert len(present) > 0.7 * len(faces)
    assert present[-1].vertices.shape == (5023, 3) and present[-1].frame_id == "user_camera"
    assert any(b.width > 50 for b in boxes)


def test_missing_camera_gives_face_absent_frames_and_keeps_running(tmp_path):
    faces, _ = run_node(tmp_path / "no-camera.avi", seconds=1.5)
    assert len(faces) > 20 and not any(f.face_present for f in faces)

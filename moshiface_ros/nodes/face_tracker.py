"""face_tracker: the user's face from a camera as FLAME motion, 25 frames per second.

Reads a camera (device index), a video file or URL, or a GStreamer pipeline (``source``),
tracks the face with MediaPipe's face mesh and a FLAME fit, and publishes one FaceFrame per
40 ms on ``/moshiface/user/face`` (vertex displacement from the user's neutral face, FLAME
parameters, ``face_present``) and the face's box in the image as a
``sensor_msgs/RegionOfInterest`` on ``/moshiface/user/face_box`` (all zeros when no face).
All the work is the core's ``LiveCamera`` and ``FaceTracker``.

When the camera disappears the node says so once, publishes face-absent frames and keeps
reopening it; with no face in view it publishes face-absent frames, never stale ones (a
tracked frame is repeated only while its camera frame is less than ``max_frame_age`` old).

    ros2 run moshiface_ros face_tracker --ros-args -p flame_model:=/path/to/flame2023.pkl -p source:=0
"""

from __future__ import annotations

import sys
from dataclasses import replace

from rclpy.node import Node
from sensor_msgs.msg import RegionOfInterest

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.msg import FaceFrame
from moshiface_ros.nodes.parameters import FACE_TRACKER
from moshiface_ros.nodes.qos import FACE_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import run_node
from moshiface_ros.topics import USER_FACE

PARAMETERS = FACE_TRACKER
FACE_BOX = "/moshiface/user/face_box"


class FaceTrackerNode(Node):
    def __init__(self) -> None:
        super().__init__("face_tracker")
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if p["publish_rate"] <= 0:
            raise MoshifaceError(f"publish_rate must be positive, got {p['publish_rate']}")
        self._tracker = self._build_tracker(p)
        from moshiface_ros.tracking.camera import LiveCamera

        self._camera = LiveCamera(p["source"], width=p["width"], height=p["height"], fps=p["camera_fps"],
                                  reopen_interval_s=p["reopen_interval"], loop_file=p["loop_file"]).start()
        self._max_age_ns = int(p["max_frame_age"] * 1e9)
        self._factory = RclpyFactory()
        self._sequence = 0
        self._last = None  # (FaceFrame, box, camera stamp ns)
        self._face_pub = self.create_publisher(FaceFrame, USER_FACE, FACE_QOS)
        self._box_pub = self.create_publisher(RegionOfInterest, FACE_BOX, FACE_QOS)
        self.create_timer(1.0 / p["publish_rate"], self._tick)
        self.get_logger().info(f"ready: {self._tracker.flame.source}, {self._tracker.flame.num_vertices} vertices; "
                               f"camera {p['source']}; publishing {USER_FACE} at {p['publish_rate']:g} Hz")

    def _build_tracker(self, p: dict):
        from moshiface_ros.tracking.fit import FitConfig
        from moshiface_ros.tracking.models import load_tracking_model
        from moshiface_ros.tracking.tracker import FaceTracker, TrackerConfig

        if not p["flame_model"]:
            raise MoshifaceError("set the parameter flame_model to your FLAME pickle (see docs/face-tracking.md), "
                                 "or to 'synthetic' for the stand-in model")
        flame, embedding = load_tracking_model(p["flame_model"], p["embedding"] or None, teeth=p["teeth"])
        fit = FitConfig(num_expression=p["num_expression"], num_shape=p["num_shape"], iterations=p["iterations"],
                        focal_length=p["focal_length"])
        config = TrackerConfig(fit=fit, calibration_frames=p["calibration_frames"],
                               filter_min_cutoff=p["filter_min_cutoff"], filter_beta=p["filter_beta"],
                               head_pose_in_vertices=p["head_pose_in_vertices"], frame_id=p["frame_id"])
        return FaceTracker(flame, embedding, config)

    def _tick(self) -> None:
        while not self._camera.events.empty():
            message = self._camera.events.get()
            (self.get_logger().warning if "lost" in message else self.get_logger().info)(message)
        now = self.get_clock().now().nanoseconds
        frame = self._camera.latest(self._sequence)
        if frame is not None:
            self._sequence = frame.sequence
            try:
                tracked = self._tracker.process(frame.rgb, now)
            except MoshifaceError as exc:
                self.get_logger().warning(f"frame {frame.sequence} skipped: {exc}", throttle_duration_sec=10.0)
                return
            box = tracked.landmarks.box() if tracked.frame.face_present and tracked.landmarks else (0, 0, 0, 0)
            self._last = (tracked.frame, box, frame.stamp_ns)
        elif self._camera.status != "open":
            self._tracker.reset()
            self._last = None
        if self._last is None or self._camera.status != "open" or \
                (frame is None and self._camera_age(self._last[2]) > self._max_age_ns):
            face, box = self._tracker.absent_frame(now), (0, 0, 0, 0)
        else:
            face, box = replace(self._last[0], stamp_ns=now), self._last[1]
        self._face_pub.publish(convert.face_frame_to_msg(face, self._factory))
        self._box_pub.publish(RegionOfInterest(x_offset=box[0], y_offset=box[1], width=box[2], height=box[3],
                                               do_rectify=False))

    @staticmethod
    def _camera_age(stamp_ns: int) -> int:
        import time

        return time.time_ns() - stamp_ns

    def destroy_node(self) -> None:
        self._camera.stop()
        self._tracker.close()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(FaceTrackerNode, "face_tracker", args)


if __name__ == "__main__":
    sys.exit(main())

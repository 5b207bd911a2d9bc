"""face_tracker: the user's face from a camera as FLAME motion, 25 frames per second.

Reads a camera (device index), a video file or URL, or a GStreamer pipeline (``source``),
tracks the face with MediaPipe's face mesh and a FLAME fit, and publishes one FaceFrame per
40 ms on ``/moshiface/user/face`` (vertex displacement from the user's neutral face, FLAME
parameters, ``face_present``) and the face's box in the image as a
``sensor_msgs/RegionOfInterest`` on ``/moshiface/user/face_box`` (all zeros when no face).
All the work is the core's ``LiveCamera``, ``FaceTracker`` and ``FaceTickSource``, which
decides what each tick publishes.

When the camera disappears the node says so once, publishes face-absent frames and keeps
reopening it; with no face in view it publishes face-absent frames, never stale ones (a
tracked frame is repeated only while its camera frame is less than ``max_frame_age`` old).

    ros2 run moshiface_ros face_tracker --ros-args -p flame_model:=/path/to/flame2023.pkl -p source:=0
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import RegionOfInterest

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import face_box_to_msg
from moshiface_ros.msg import FaceFrame
from moshiface_ros.nodes.parameters import FaceTrackerSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError
from moshiface_ros.nodes.qos import FACE_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, run_node
from moshiface_ros.topics import USER_FACE, USER_FACE_BOX

FACE_BOX = USER_FACE_BOX


def build_tracker(s: FaceTrackerSettings):
    """The core tracker for the node's settings (a bad model file names ``flame_model``)."""
    from moshiface_ros.tracking.fit import FitConfig
    from moshiface_ros.tracking.models import load_tracking_model
    from moshiface_ros.tracking.tracker import FaceTracker, TrackerConfig

    try:
        flame, embedding = load_tracking_model(s.flame_model, s.embedding or None, teeth=s.teeth)
    except MoshifaceError as exc:
        raise ParameterError("flame_model", str(exc)) from None
    fit = FitConfig(num_expression=s.num_expression, num_shape=s.num_shape, iterations=s.iterations,
                    focal_length=s.focal_length)
    config = TrackerConfig(fit=fit, calibration_frames=s.calibration_frames, filter_min_cutoff=s.filter_min_cutoff,
                           filter_beta=s.filter_beta, head_pose_in_vertices=s.head_pose_in_vertices,
                           frame_id=s.frame_id)
    return FaceTracker(flame, embedding, config)


class FaceTrackerNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("face_tracker", **node_options)  # options: e.g. parameter_overrides (tests)
        self._node_parameters = NodeParameters(self, FaceTrackerSettings, self._on_change)
        s: FaceTrackerSettings = self._node_parameters.settings
        from moshiface_ros.tracking.camera import LiveCamera
        from moshiface_ros.tracking.publisher import FaceTickSource

        self._tracker = build_tracker(s)
        self._camera = LiveCamera(s.source, width=s.width, height=s.height, fps=s.camera_fps,
                                  reopen_interval_s=s.reopen_interval, loop_file=s.loop_file)
        self._ticks = FaceTickSource(self._tracker, self._camera, s.max_frame_age)
        self._factory = RclpyFactory()
        self._face_pub = self.create_publisher(FaceFrame, USER_FACE, FACE_QOS)
        self._box_pub = self.create_publisher(RegionOfInterest, USER_FACE_BOX, FACE_QOS)
        self._camera.start()
        self.create_timer(1.0 / s.publish_rate, self._tick)
        self.get_logger().info(f"ready: {self._tracker.flame.source}, {self._tracker.flame.num_vertices} vertices; "
                               f"camera {s.source}; publishing {USER_FACE} at {s.publish_rate:g} Hz")

    def _on_change(self, settings: FaceTrackerSettings) -> None:
        self._ticks.max_frame_age_s = settings.max_frame_age

    def _tick(self) -> None:
        tick = self._ticks.tick(self.get_clock().now().nanoseconds)
        for warning, message in tick.events or ():
            (self.get_logger().warning if warning else self.get_logger().info)(message)
        if tick.skipped is not None:
            self.get_logger().warning(tick.skipped, throttle_duration_sec=10.0)
        if tick.face is None:
            return
        self._face_pub.publish(convert.face_frame_to_msg(tick.face, self._factory))
        self._box_pub.publish(face_box_to_msg(tick.box, self._factory))

    def release(self) -> None:
        """Stop reading the camera (releases the device) and close the landmark model."""
        self._camera.stop()
        self._tracker.close()


def main(args=None) -> int:
    return run_node(FaceTrackerNode, "face_tracker", args)


if __name__ == "__main__":
    sys.exit(main())

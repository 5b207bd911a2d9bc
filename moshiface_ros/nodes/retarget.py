"""retarget: the robot's face (and, without one, its voice) to a real or virtual head.

Subscribes the robot's face frames (``/moshiface/robot/face``) and audio
(``/moshiface/robot/audio``, for the speech fallback) and, per frame, publishes:

* the head's blendshape weights on ``/moshiface/robot/blendshapes`` (at once, stamped);
* actuator commands on ``command_topic`` (``/moshiface/robot/actuators`` by default):
  ``trajectory_msgs/JointTrajectory`` (``command_mode: trajectory``, for a
  joint_trajectory_controller) sent at once, stamped with the frame and reaching its
  positions at ``stamp + presentation_delay_ms`` -- the message a ``moshiface run`` bag
  records -- or ``std_msgs/Float64MultiArray`` (``forward``, for a
  forward_command_controller), each actuator's value sent at
  ``stamp + presentation_delay_ms - latency_ms``;
* Unreal Live Link Face UDP packets (``livelink_enabled``), sent at
  ``stamp + presentation_delay_ms - livelink_latency_ms``;
* the face mesh as a ``visualization_msgs/Marker`` (TRIANGLE_LIST) for rviz2.

All the work is the core's ``HeadRetargeter`` and ``HeadPresenter`` (what goes out when);
this node only owns parameters, message conversion, timers and QoS.

    ros2 run moshiface_ros retarget --ros-args -p head_file:=my_head.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import (
    forward_command_to_msg,
    joint_trajectory_to_msg,
    triangle_marker_to_msg,
)
from moshiface_ros.msg import AudioChunk, BlendshapeWeights, FaceFrame
from moshiface_ros.nodes.parameters import RetargetSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError
from moshiface_ros.nodes.qos import AUDIO_QOS, COMMAND_QOS, FACE_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.retarget.livelink import LiveLinkSender
from moshiface_ros.retarget.presenter import FORWARD, HeadPresenter
from moshiface_ros.retarget.retargeter import HeadRetargeter, RetargetOutput
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE


def _default_head_file() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("moshiface_ros")) / "config" / "heads" / "servo_head.yaml"
    except Exception:  # not installed in a ROS workspace: the source tree's copy
        return Path(__file__).resolve().parents[2] / "config" / "heads" / "servo_head.yaml"


def load_head(s: RetargetSettings) -> tuple[HeadRetargeter, Path]:
    """The head for the node's settings; a bad file names the parameter that gave it."""
    head_file = Path(s.head_file) if s.head_file else _default_head_file()
    regions = Path(s.regions_file) if s.regions_file else None
    if regions is not None and not regions.is_file():
        raise ParameterError("regions_file", f"{regions} does not exist")
    try:
        head = HeadRetargeter.from_file(head_file, regions=regions, presentation_delay_ms=s.presentation_delay_ms)
    except MoshifaceError as exc:
        raise ParameterError("head_file", str(exc)) from None
    return head, head_file


class RetargetNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("retarget", **node_options)  # options: e.g. parameter_overrides (tests)
        self._node_parameters = NodeParameters(self, RetargetSettings, self._on_change)
        s: RetargetSettings = self._node_parameters.settings
        self._head, head_file = load_head(s)
        self._presenter = HeadPresenter(self._head, command_mode=s.command_mode, livelink=s.livelink_enabled,
                                        livelink_latency_ms=s.livelink_latency_ms, frame_id=s.frame_id)
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._livelink = LiveLinkSender(s.livelink_host, s.livelink_port) if s.livelink_enabled else None
        self._blendshape_pub = self.create_publisher(BlendshapeWeights, ROBOT_BLENDSHAPES, COMMAND_QOS)
        self._command_pub = None
        if self._presenter.has_actuators:
            kind = Float64MultiArray if s.command_mode == FORWARD else JointTrajectory
            self._command_pub = self.create_publisher(kind, s.command_topic, COMMAND_QOS)
        self._marker_pub = self.create_publisher(Marker, s.marker_topic, COMMAND_QOS) if s.marker_enabled else None
        self.create_subscription(FaceFrame, ROBOT_FACE, self._on_face, FACE_QOS)
        self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_audio, AUDIO_QOS)
        # The send timer runs only while something is held for later (see _wake_sender).
        self._send_timer = None
        if self._presenter.sends_later:
            self._send_timer = self.create_timer(1.0 / s.command_rate_hz, self._on_send_timer)
            self._send_timer.cancel()
        if self._marker_pub is not None:
            self.create_timer(1.0 / s.marker_rate_hz, self._on_marker_timer)
        self.get_logger().info(
            f"ready: head {self._head.config.name!r} from {head_file}; {len(self._head.names)} blendshapes, "
            f"{len(self._head.bank.specs)} actuators -> "
            f"{f'{s.command_topic} ({s.command_mode})' if self._command_pub else 'none'}"
            f"{f'; Live Link to {s.livelink_host}:{s.livelink_port}' if self._livelink else ''}")

    def _on_change(self, settings: RetargetSettings) -> None:
        self._presenter.frame_id = settings.frame_id
        if self._presenter.livelink is not None:
            self._presenter.livelink.latency_ms = settings.livelink_latency_ms

    # -- input --------------------------------------------------------------------------

    def _on_face(self, msg: FaceFrame) -> None:
        try:
            frame = convert.face_frame_from_msg(msg)
        except ValueError as exc:
            self._warn_once("face-msg", f"dropping bad face frame on {ROBOT_FACE}: {exc}")
            return
        output = self._head.step_face(frame)
        if output.source == "none" and self._head.bad_frames:
            self._warn_once("face-frame", f"cannot retarget a face frame: {self._head.last_problem}")
        self._handle(output)

    def _on_audio(self, msg: AudioChunk) -> None:
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once("audio-msg", f"dropping bad audio on {ROBOT_AUDIO}: {exc}")
            return
        for output in self._head.step_audio(chunk):
            self._handle(output)

    def _handle(self, output: RetargetOutput) -> None:
        command = self._presenter.accept(output)
        if output.blendshapes is not None:
            self._blendshape_pub.publish(convert.blendshape_weights_to_msg(output.blendshapes, self._factory))
        if command is not None and self._command_pub is not None:
            delay_ms = self._head.presentation_delay_ms
            self._command_pub.publish(joint_trajectory_to_msg(command, self._factory, delay_ms))
        if self._send_timer is not None and self._send_timer.is_canceled() and self._presenter.pending():
            self._send_timer.reset()

    # -- output -------------------------------------------------------------------------

    def _on_send_timer(self) -> None:
        due = self._presenter.due(self.get_clock().now().nanoseconds)
        if due.positions is not None and self._command_pub is not None:
            self._command_pub.publish(forward_command_to_msg(due.positions, self._factory))
        if due.livelink is not None and self._livelink is not None:
            try:
                self._livelink.send(due.livelink)
            except (OSError, ValueError) as exc:
                self._warn_once("livelink", f"cannot send Live Link packets: {exc}")
        if not self._presenter.pending():
            self._send_timer.cancel()  # nothing held: sleep until _handle queues again

    def _on_marker_timer(self) -> None:
        if self._marker_pub.get_subscription_count() == 0:
            return
        try:
            points = self._presenter.marker_points(self._node_parameters.settings.marker_max_triangles)
        except ValueError as exc:
            self._warn_once("marker", str(exc))
            return
        if points is not None:
            now = self.get_clock().now().nanoseconds
            self._marker_pub.publish(triangle_marker_to_msg(points, now, self._presenter.frame_id, self._factory))

    def release(self) -> None:
        """Close the Live Link socket."""
        if self._livelink is not None:
            self._livelink.close()


def main(args=None) -> int:
    return run_node(RetargetNode, "retarget", args)


if __name__ == "__main__":
    sys.exit(main())

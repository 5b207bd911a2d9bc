"""retarget: the robot's face (and, without one, its voice) to a real or virtual head.

Subscribes the robot's face frames (``/moshiface/robot/face``) and audio
(``/moshiface/robot/audio``, for the speech fallback) and, per frame, publishes:

* the head's blendshape weights on ``/moshiface/robot/blendshapes`` (at once, stamped);
* actuator commands for ros2_control on ``command_topic``: ``std_msgs/Float64MultiArray``
  (forward_command_controller) or ``trajectory_msgs/JointTrajectory``
  (joint_trajectory_controller), each actuator's value sent by a timer at
  ``stamp + presentation_delay_ms - latency_ms``;
* Unreal Live Link Face UDP packets (``livelink_enabled``), sent at
  ``stamp + presentation_delay_ms - livelink_latency_ms``;
* the face mesh as a ``visualization_msgs/Marker`` (TRIANGLE_LIST) for rviz2.

All the work is the core's ``HeadRetargeter``; this node only owns parameters, message
conversion, timers and QoS.

    ros2 run moshiface_ros retarget --ros-args -p head_file:=my_head.yaml
"""

from __future__ import annotations

import array
import sys
from collections import deque
from pathlib import Path

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from visualization_msgs.msg import Marker

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.msg import AudioChunk, BlendshapeWeights, FaceFrame
from moshiface_ros.nodes.parameters import RETARGET
from moshiface_ros.nodes.qos import AUDIO_QOS, COMMAND_QOS, FACE_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import WarnOnce, run_node
from moshiface_ros.retarget.actuators import CommandSchedule
from moshiface_ros.retarget.livelink import LiveLinkSender
from moshiface_ros.retarget.marker import decimate_faces, triangle_list
from moshiface_ros.retarget.retargeter import HeadRetargeter, RetargetOutput
from moshiface_ros.timing import presentation_ns
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE

PARAMETERS = RETARGET


def _default_head_file() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("moshiface_ros")) / "config" / "heads" / "servo_head.yaml"
    except Exception:  # not installed in a ROS workspace: the source tree's copy
        return Path(__file__).resolve().parents[2] / "config" / "heads" / "servo_head.yaml"


class RetargetNode(Node):
    def __init__(self) -> None:
        super().__init__("retarget")
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if p["command_mode"] not in ("forward", "trajectory"):
            raise MoshifaceError(f"command_mode must be 'forward' or 'trajectory', got {p['command_mode']!r}")
        self._p = p
        head_file = Path(p["head_file"]) if p["head_file"] else _default_head_file()
        self._head = HeadRetargeter.from_file(head_file, regions=Path(p["regions_file"]) if p["regions_file"] else None,
                                              presentation_delay_ms=p["presentation_delay_ms"])
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._schedule = CommandSchedule(self._head.bank.names, self._head.bank.neutral)
        self._livelink_queue: deque = deque()
        self._livelink = LiveLinkSender(p["livelink_host"], p["livelink_port"]) if p["livelink_enabled"] else None
        self._last_mesh = None

        self._blendshape_pub = self.create_publisher(BlendshapeWeights, ROBOT_BLENDSHAPES, COMMAND_QOS)
        self._command_pub = None
        if self._head.bank.specs:
            kind = Float64MultiArray if p["command_mode"] == "forward" else JointTrajectory
            self._command_pub = self.create_publisher(kind, p["command_topic"], COMMAND_QOS)
        self._marker_pub = self.create_publisher(Marker, p["marker_topic"], COMMAND_QOS) if p["marker_enabled"] else None
        self.create_subscription(FaceFrame, ROBOT_FACE, self._on_face, FACE_QOS)
        self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_audio, AUDIO_QOS)
        self.create_timer(1.0 / max(p["command_rate_hz"], 1.0), self._on_send_timer)
        if self._marker_pub is not None:
            self.create_timer(1.0 / max(p["marker_rate_hz"], 0.1), self._on_marker_timer)
        self.get_logger().info(
            f"ready: head {self._head.config.name!r} from {head_file}; {len(self._head.names)} blendshapes, "
            f"{len(self._head.bank.specs)} actuators -> {p['command_topic'] if self._command_pub else 'none'}"
            f"{'; Live Link to %s:%d' % (p['livelink_host'], p['livelink_port']) if self._livelink else ''}")

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
        if output.blendshapes is None:
            return
        output.blendshapes.frame_id = self._p["frame_id"]
        self._blendshape_pub.publish(convert.blendshape_weights_to_msg(output.blendshapes, self._factory))
        if output.actuators is not None:
            self._schedule.push(output.actuators)
        if self._livelink is not None:
            at = presentation_ns(output.stamp_ns, self._p["presentation_delay_ms"], self._p["livelink_latency_ms"])
            self._livelink_queue.append((at, self._head.livelink_frame(output)))
        if output.vertices is not None:
            self._last_mesh = output

    # -- output -------------------------------------------------------------------------

    def _on_send_timer(self) -> None:
        now = self.get_clock().now().nanoseconds
        due = self._schedule.due(now)
        if due is not None and self._command_pub is not None:
            self._command_pub.publish(self._command_message(due))
        frame = None
        while self._livelink_queue and self._livelink_queue[0][0] <= now:
            frame = self._livelink_queue.popleft()[1]
        if frame is not None:  # only the newest: Unreal shows the latest packet anyway
            try:
                self._livelink.send(frame)
            except OSError as exc:
                self._warn_once("livelink", f"cannot send Live Link packets: {exc}")

    def _command_message(self, positions):
        values = array.array("d", positions.tolist())
        if self._p["command_mode"] == "forward":
            return Float64MultiArray(data=values)
        ms = self._p["trajectory_duration_ms"]
        point = JointTrajectoryPoint(positions=values,
                                     time_from_start=Duration(sec=int(ms // 1000), nanosec=int(ms % 1000 * 1e6)))
        return JointTrajectory(joint_names=list(self._head.bank.names), points=[point])  # stamp 0: start now

    def _on_marker_timer(self) -> None:
        output = self._last_mesh
        if output is None or self._marker_pub.get_subscription_count() == 0:
            return
        _, faces = self._head.mesh(len(output.vertices))
        if faces is None:
            self._warn_once("marker", "the head's mesh has no triangles: no rviz2 marker")
            return
        points = triangle_list(output.vertices, decimate_faces(faces, self._p["marker_max_triangles"]))
        marker = Marker(type=Marker.TRIANGLE_LIST, action=Marker.ADD, ns="moshiface_face", id=0)
        marker.header.stamp = self.get_clock().now().to_msg()
        marker.header.frame_id = self._p["frame_id"]
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = 1.0
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = 0.85, 0.7, 0.6, 1.0
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in points.tolist()]
        self._marker_pub.publish(marker)

    def destroy_node(self) -> None:
        if self._livelink is not None:
            self._livelink.close()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(RetargetNode, "retarget", args)


if __name__ == "__main__":
    sys.exit(main())

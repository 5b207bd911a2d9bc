"""Core results -> messages of ROS's standard packages, for the nodes and the runner alike.

What the head's retargeting produces (actuator commands, blendshape weights, the face
mesh), what the nodes report (diagnostics) and the tracker's face box become messages here,
through the same ``MessageFactory`` as our own types (``convert.py``): the runner writes
them into its bag with rosbags, the nodes publish them with rclpy, and both get the same
message for the same result. One rule for actuator commands: a one-point
``trajectory_msgs/JointTrajectory`` whose ``header.stamp`` is the face frame's stamp and
whose point is reached ``presentation delay`` after it, so a joint trajectory controller
moves the head to land with the voice.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol

import numpy as np

from ..constants import NS_PER_S
from ..topics import ROBOT_ACTUATORS, ROBOT_BLENDSHAPES
from .convert import MSG_TYPES, MessageFactory, blendshape_weights_to_msg, header
from .types import BlendshapeWeights

JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
JOINT_TRAJECTORY_POINT = "trajectory_msgs/msg/JointTrajectoryPoint"
FLOAT64_MULTI_ARRAY = "std_msgs/msg/Float64MultiArray"
DURATION = "builtin_interfaces/msg/Duration"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
REGION_OF_INTEREST = "sensor_msgs/msg/RegionOfInterest"
MARKER = "visualization_msgs/msg/Marker"
MARKER_TRIANGLE_LIST, MARKER_ADD = 11, 0  # visualization_msgs/Marker constants
MARKER_COLOR = (0.85, 0.7, 0.6, 1.0)  # skin-like, opaque


class Command(Protocol):
    """An actuator command (``retarget.actuators.ActuatorCommand``)."""

    stamp_ns: int
    names: list[str]
    positions: np.ndarray


class Status(Protocol):
    """One component's health (``audio.diagnostics.AudioStatus`` and the like)."""

    name: str
    level: int
    message: str
    hardware_id: str
    values: dict[str, str]


class HeadOutput(Protocol):
    """What the head's retargeting gives per frame (``retarget.retargeter.RetargetOutput``)."""

    stamp_ns: int
    blendshapes: BlendshapeWeights | None
    actuators: Command | None


def duration(factory: MessageFactory, ns: int) -> Any:
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return factory.new(DURATION, sec=sec, nanosec=nanosec)


def joint_trajectory_to_msg(command: Command, factory: MessageFactory, delay_ms: float) -> Any:
    """The one-point trajectory of a command: stamped with its face frame, the positions
    reached ``delay_ms`` later (each actuator's own send time is that minus its latency)."""
    empty = factory.array(np.zeros(0, np.float64))
    point = factory.new(JOINT_TRAJECTORY_POINT,
                        positions=factory.array(np.asarray(command.positions, np.float64)),
                        velocities=empty, accelerations=empty, effort=empty,
                        time_from_start=duration(factory, int(round(delay_ms * 1e6))))
    return factory.new(JOINT_TRAJECTORY, header=header(factory, command.stamp_ns, ""),
                       joint_names=list(command.names), points=[point])


def forward_command_to_msg(positions: np.ndarray, factory: MessageFactory) -> Any:
    """Positions for a forward command controller, in the head file's actuator order."""
    return factory.new(FLOAT64_MULTI_ARRAY, data=factory.array(np.asarray(positions, np.float64)))


def retarget_topics(has_actuators: bool) -> dict[str, str]:
    """topic -> ROS type of what a head's outputs become (``retarget_records``)."""
    topics = {ROBOT_BLENDSHAPES: MSG_TYPES[BlendshapeWeights]}
    if has_actuators:
        topics[ROBOT_ACTUATORS] = JOINT_TRAJECTORY
    return topics


def retarget_records(output: HeadOutput, factory: MessageFactory, delay_ms: float) -> list[tuple[str, str, Any]]:
    """(topic, ROS type, message) for one head output: its blendshape weights and, for a
    head with actuators, its command as a trajectory (``joint_trajectory_to_msg``)."""
    records = []
    if output.blendshapes is not None:
        records.append((ROBOT_BLENDSHAPES, MSG_TYPES[BlendshapeWeights],
                        blendshape_weights_to_msg(output.blendshapes, factory)))
    if output.actuators is not None:
        records.append((ROBOT_ACTUATORS, JOINT_TRAJECTORY, joint_trajectory_to_msg(output.actuators, factory,
                                                                                   delay_ms)))
    return records


def diagnostic_array_to_msg(statuses: Iterable[Status], stamp_ns: int, factory: MessageFactory) -> Any:
    """Statuses as one ``/diagnostics`` message."""
    entries = [factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=bytes([int(s.level)]), name=s.name,
                           message=s.message, hardware_id=s.hardware_id,
                           values=[factory.new("diagnostic_msgs/msg/KeyValue", key=k, value=str(v))
                                   for k, v in s.values.items()])
               for s in statuses]
    return factory.new(DIAGNOSTIC_ARRAY, header=header(factory, stamp_ns, ""), status=entries)


def face_box_to_msg(box: tuple[int, int, int, int], factory: MessageFactory) -> Any:
    """A face's box in the image (x, y, width, height; all zero: no face)."""
    x, y, width, height = (int(v) for v in box)
    return factory.new(REGION_OF_INTEREST, x_offset=x, y_offset=y, width=width, height=height, do_rectify=False)


def triangle_marker_to_msg(points: np.ndarray, stamp_ns: int, frame_id: str, factory: MessageFactory) -> Any:
    """A face mesh as an rviz2 TRIANGLE_LIST marker (``points``: 3 corners per triangle)."""
    corners = [factory.new("geometry_msgs/msg/Point", x=x, y=y, z=z)
               for x, y, z in np.asarray(points, np.float64).reshape(-1, 3).tolist()]
    r, g, b, a = MARKER_COLOR
    return factory.new(
        MARKER, header=header(factory, stamp_ns, frame_id), ns="moshiface_face", id=0,
        type=MARKER_TRIANGLE_LIST, action=MARKER_ADD,
        pose=factory.new("geometry_msgs/msg/Pose", orientation=factory.new("geometry_msgs/msg/Quaternion", w=1.0)),
        scale=factory.new("geometry_msgs/msg/Vector3", x=1.0, y=1.0, z=1.0),
        color=factory.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a), points=corners)

"""Starts the Moshi-Face conversation node, optionally recording the session with rosbag2.

    ros2 launch moshiface_ros moshiface.launch.py
    ros2 launch moshiface_ros moshiface.launch.py model:=hf:kyutai/moshiko-pytorch-bf16 device:=cuda
    ros2 launch moshiface_ros moshiface.launch.py record:=true bag_dir:=/data/session1

The node's other parameters (dtype, sampling, seed, ...) come from params_file; `model`
and `device` given here override the values in that file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Every stream of a conversation: what the robot heard and saw, and what it said and showed.
RECORDED_TOPICS = [
    "/moshiface/user/audio",
    "/moshiface/robot/audio",
    "/moshiface/robot/text",
    "/moshiface/user/face",
    "/moshiface/robot/face",
    "/moshiface/robot/face_tokens",
    "/moshiface/user/face_box",
    "/moshiface/robot/blendshapes",
    "/moshiface/robot/actuators",
    "/diagnostics",
]


def _bag_recorder(context):
    """`ros2 bag record` in MCAP; `-o` only when bag_dir is set (else ros2 bag's own name)."""
    bag_dir = LaunchConfiguration("bag_dir").perform(context).strip()
    cmd = ["ros2", "bag", "record", "-s", "mcap"]
    if bag_dir:
        cmd += ["-o", bag_dir]
    cmd += RECORDED_TOPICS
    return [ExecuteProcess(cmd=cmd, output="screen")]


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory("moshiface_ros"), "config", "moshiface.yaml"
    )

    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "model",
                default_value="tiny",
                description='"tiny" (random tiny model, for tests), a local checkpoint '
                'directory, or "hf:REPO" (e.g. hf:kyutai/moshiko-pytorch-bf16)',
            ),
            DeclareLaunchArgument(
                "device",
                default_value="auto",
                description='"auto" (CUDA when available, else CPU), "cuda", "cuda:N" or "cpu"',
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="ROS parameter file for moshiface_node",
            ),
            DeclareLaunchArgument(
                "record",
                default_value="false",
                description="true: record the session's topics with ros2 bag (MCAP)",
            ),
            DeclareLaunchArgument(
                "bag_dir",
                default_value="",
                description="output directory of the bag; empty: ros2 bag's timestamped name",
            ),
            Node(
                package="moshiface_ros",
                executable="moshiface_node",
                name="moshiface_node",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "model": LaunchConfiguration("model"),
                        "device": LaunchConfiguration("device"),
                    },
                ],
                output="screen",
                emulate_tty=True,
            ),
            OpaqueFunction(
                function=_bag_recorder,
                condition=IfCondition(LaunchConfiguration("record")),
            ),
        ]
    )

"""Starts the Moshi-Face conversation node, optionally recording the session (MCAP bag).

    ros2 launch moshiface_ros moshiface.launch.py
    ros2 launch moshiface_ros moshiface.launch.py model:=hf:kyutai/moshiko-pytorch-bf16 device:=cuda
    ros2 launch moshiface_ros moshiface.launch.py record:=true bag_dir:=/data/session1

The node's other parameters (dtype, sampling, seed, ...) come from params_file; `model`
and `device` given here override the values in that file. record:=true includes
record.launch.py: `ros2 bag record -s mcap` when rosbag2 is installed, else the package's
recorder node, recording every topic the nodes publish. The whole robot (microphone,
camera, speaker, head) starts with robot.launch.py.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("moshiface_ros")
    default_params = os.path.join(share, "config", "moshiface.yaml")

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
                description="true: record the session's topics into an MCAP bag (record.launch.py)",
            ),
            DeclareLaunchArgument(
                "bag_dir",
                default_value="",
                description="directory of the new bag; empty: rosbag2_<date>-<time> in the current directory",
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
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(os.path.join(share, "launch", "record.launch.py")),
                launch_arguments={"bag_dir": LaunchConfiguration("bag_dir")}.items(),
                condition=IfCondition(LaunchConfiguration("record")),
            ),
        ]
    )

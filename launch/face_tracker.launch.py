"""Starts the face tracker: camera -> the user's face as FLAME motion on /moshiface/user/face.

    ros2 launch moshiface_ros face_tracker.launch.py flame_model:=/data/flame/flame2023.pkl
    ros2 launch moshiface_ros face_tracker.launch.py flame_model:=synthetic source:=/data/user.mp4

The node's other parameters come from params_file; `source` and `flame_model` given here
override the values in that file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("moshiface_ros"), "config", "face_tracker.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "source", default_value="0",
                description="camera device index, video file or URL, or GStreamer pipeline"),
            DeclareLaunchArgument(
                "flame_model", default_value="",
                description='FLAME 2020/2023 pickle, or "synthetic" for the stand-in model'),
            DeclareLaunchArgument(
                "params_file", default_value=default_params,
                description="ROS parameter file for face_tracker"),
            Node(
                package="moshiface_ros",
                executable="face_tracker",
                name="face_tracker",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        # a string even when it looks like a number ("0"): the node declares it so
                        "source": ParameterValue(LaunchConfiguration("source"), value_type=str),
                        "flame_model": LaunchConfiguration("flame_model"),
                    },
                ],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )

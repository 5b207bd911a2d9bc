"""Starts the retarget node: the robot's face to a head's blendshapes and actuators.

    ros2 launch moshiface_ros retarget.launch.py
    ros2 launch moshiface_ros retarget.launch.py head_file:=/path/to/my_head.yaml
    ros2 launch moshiface_ros retarget.launch.py head_file:=<share>/config/heads/arkit_virtual_head.yaml livelink:=true

The node's other parameters come from params_file; `head_file` and `livelink` given here
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
    share = get_package_share_directory("moshiface_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "head_file",
                default_value=os.path.join(share, "config", "heads", "servo_head.yaml"),
                description="the head file (YAML): blendshapes, actuators, limits, latencies",
            ),
            DeclareLaunchArgument(
                "livelink",
                default_value="false",
                description="true: send Unreal Live Link Face packets (UDP port 11111)",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "retarget.yaml"),
                description="ROS parameter file for the retarget node",
            ),
            Node(
                package="moshiface_ros",
                executable="retarget",
                name="retarget",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "head_file": LaunchConfiguration("head_file"),
                        "livelink_enabled": ParameterValue(LaunchConfiguration("livelink"), value_type=bool),
                    },
                ],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )

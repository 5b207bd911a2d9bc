"""Starts the robot's ears and mouth: audio_capture (microphone) and audio_playback (speaker).

    ros2 launch moshiface_ros audio.launch.py
    ros2 launch moshiface_ros audio.launch.py input_device:=USB output_device:=speaker
    ros2 launch moshiface_ros audio.launch.py echo_cancellation:=true

Run it next to moshiface.launch.py (which records /moshiface/user/audio and
/moshiface/robot/audio when record:=true). The nodes' other parameters come from
params_file; the arguments given here override the values in that file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    default_params = os.path.join(
        get_package_share_directory("moshiface_ros"), "config", "audio.yaml"
    )

    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "input_device",
                default_value="",
                description="microphone: name (or a unique part), number, or empty for the default",
            ),
            DeclareLaunchArgument(
                "output_device",
                default_value="",
                description="speaker: name (or a unique part), number, or empty for the default",
            ),
            DeclareLaunchArgument(
                "echo_cancellation",
                default_value="false",
                description="true: remove the robot's own voice from the microphone",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="ROS parameter file for audio_capture and audio_playback",
            ),
            Node(
                package="moshiface_ros",
                executable="audio_capture",
                name="audio_capture",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "device": ParameterValue(LaunchConfiguration("input_device"), value_type=str),
                        "echo_cancellation": ParameterValue(
                            LaunchConfiguration("echo_cancellation"), value_type=bool
                        ),
                    },
                ],
                output="screen",
                emulate_tty=True,
            ),
            Node(
                package="moshiface_ros",
                executable="audio_playback",
                name="audio_playback",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {"device": ParameterValue(LaunchConfiguration("output_device"), value_type=str)},
                ],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )

"""Records a session's topics into an MCAP bag (rosbag2, bag version 8).

    ros2 launch moshiface_ros record.launch.py
    ros2 launch moshiface_ros record.launch.py bag_dir:=/data/session1

With rosbag2 installed this runs `ros2 bag record -s mcap`; without it (a ROS 2 from the
PyPI wheels has no rosbag2) the package's recorder node, which writes the same bag through
the code `moshiface run` records with. Either records exactly the topics the nodes publish
(moshiface_ros.nodes.recorder.RECORDED_TOPICS). moshiface.launch.py and robot.launch.py
include this file when given record:=true.
"""

import importlib.util

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from moshiface_ros.nodes.recorder import RECORDED_TOPICS

RECORDERS = ("auto", "ros2bag", "node")


def rosbag2_installed() -> bool:
    """`ros2 bag record -s mcap` works: the ros2bag verb and rosbag2's Python API are there."""
    return all(importlib.util.find_spec(name) is not None for name in ("ros2bag", "rosbag2_py"))


def _recorder(context):
    bag_dir = LaunchConfiguration("bag_dir").perform(context).strip()
    choice = LaunchConfiguration("recorder").perform(context).strip()
    if choice not in RECORDERS:
        raise ValueError(f"recorder must be one of {', '.join(RECORDERS)}, got {choice!r}")
    if choice == "ros2bag" or (choice == "auto" and rosbag2_installed()):
        cmd = ["ros2", "bag", "record", "-s", "mcap"] + (["-o", bag_dir] if bag_dir else [])
        return [ExecuteProcess(cmd=cmd + list(RECORDED_TOPICS), output="screen", name="ros2_bag_record")]
    return [
        LogInfo(msg="rosbag2 is not installed: recording with moshiface_ros's recorder node"
                if choice == "auto" else "recording with moshiface_ros's recorder node"),
        Node(package="moshiface_ros", executable="recorder", name="recorder",
             parameters=[{"bag_dir": bag_dir}], output="screen", emulate_tty=True),
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            "bag_dir", default_value="",
            description="directory of the new bag; empty: rosbag2_<date>-<time> in the current directory"),
        DeclareLaunchArgument(
            "recorder", default_value="auto", choices=list(RECORDERS),
            description="auto: ros2 bag when rosbag2 is installed, else the recorder node; "
                        "ros2bag or node: that one"),
        OpaqueFunction(function=_recorder),
    ])

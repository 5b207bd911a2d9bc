"""Starts the whole robot: ears, eyes, the conversation, voice and face, from one head file.

    ros2 launch moshiface_ros robot.launch.py
    ros2 launch moshiface_ros robot.launch.py model:=hf:kyutai/moshiko-pytorch-bf16 device:=cuda \\
        head:=/path/to/my_head.yaml camera:=0 flame_model:=/data/flame/flame2023.pkl
    ros2 launch moshiface_ros robot.launch.py camera:=/data/user.mp4 input_device:=mic \\
        output_device:=speaker record:=true bag_dir:=/data/session1

Nodes: audio_capture (microphone -> /moshiface/user/audio), face_tracker (camera ->
/moshiface/user/face), moshiface_node (the conversation), audio_playback (the robot's voice
to the speaker), retarget (the robot's face to the head: blendshapes, actuator commands,
optionally Unreal Live Link) and, with web_head:=true, web_head (the robot's face, voice and
captions as a web page, for a robot whose face is a screen; web_head_source:=blendshapes draws
the head file's rig from the retarget node's weights). Each node's other parameters
come from its shipped file in config/; the arguments here override them. One presentation
delay is given to every node that presents the robot, so voice, face and actuators stay in
step.

Sources may be files and virtual devices: a video file works as the camera and a PulseAudio
source as the microphone, so the whole robot can be tried without hardware (README).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from moshiface_ros.constants import PRESENTATION_DELAY_MS

# name, default, description
ARGUMENTS = (
    ("model", "tiny", '"tiny" (random tiny model), a local checkpoint directory, or "hf:REPO"'),
    ("device", "auto", 'the model\'s device: "auto" (CUDA when available, else CPU), "cuda", "cuda:N" or "cpu"'),
    ("head", None, "the head file (YAML): blendshapes, actuators, limits, latencies"),
    ("camera", "0", "camera device index, video file or URL, or GStreamer pipeline"),
    ("flame_model", "synthetic", 'FLAME 2020/2023 pickle for the face tracker, or "synthetic" (stand-in model)'),
    ("teeth", "true", "true: the user's face with VHAP's 120 teeth vertices (5,143), as the face codec expects"),
    ("input_device", "", "microphone: name (or a unique part), number, or empty for the default"),
    ("output_device", "", "speaker: name (or a unique part), number, or empty for the default"),
    ("echo_cancellation", "true", "true: remove the robot's own voice from the microphone"),
    ("livelink", "false", "true: send Unreal Live Link Face packets (UDP) to livelink_host:livelink_port"),
    ("livelink_host", "127.0.0.1", "Live Link receiver's address"),
    ("livelink_port", "11111", "Live Link receiver's UDP port"),
    ("presentation_delay_ms", f"{PRESENTATION_DELAY_MS:g}",
     "ms from a step's stamp to its presentation (voice, face, actuators); ~300 through a sound server"),
    ("record", "false", "true: record every topic the nodes publish into an MCAP bag (record.launch.py)"),
    ("bag_dir", "", "directory of the new bag; empty: rosbag2_<date>-<time> in the current directory"),
    ("web_head", "false", "true: also serve the robot's face, voice and captions as a web page for a screen "
                          "(web_head node, http://127.0.0.1:8999/; config/web_head.yaml)"),
    ("web_head_source", "face", '"face": the page draws the robot\'s face frames; "blendshapes": it draws the '
                                "head file's rig (head:=, e.g. config/heads/arkit_virtual_head.yaml) from the "
                                "retarget node's blendshape weights"),
)


def _arg(name: str, kind: type = str) -> ParameterValue:
    """A launch argument as a typed parameter value ("0" stays text where text is declared)."""
    return ParameterValue(LaunchConfiguration(name), value_type=kind)


def _node(share: str, executable: str, config: str, overrides: dict, condition=None) -> Node:
    return Node(package="moshiface_ros", executable=executable, name=executable,
                parameters=[os.path.join(share, "config", config), overrides],
                output="screen", emulate_tty=True, condition=condition)


def _nodes(share: str) -> list:
    delay = _arg("presentation_delay_ms", float)
    return [
        _node(share, "audio_capture", "audio.yaml", {
            "device": _arg("input_device"), "echo_cancellation": _arg("echo_cancellation", bool),
            "presentation_delay_ms": delay}),
        _node(share, "face_tracker", "face_tracker.yaml", {
            "source": _arg("camera"), "flame_model": _arg("flame_model"), "teeth": _arg("teeth", bool)}),
        _node(share, "moshiface_node", "moshiface.yaml", {"model": _arg("model"), "device": _arg("device")}),
        _node(share, "audio_playback", "audio.yaml", {
            "device": _arg("output_device"), "presentation_delay_ms": delay}),
        _node(share, "retarget", "retarget.yaml", {
            "head_file": _arg("head"), "presentation_delay_ms": delay,
            "livelink_enabled": _arg("livelink", bool), "livelink_host": _arg("livelink_host"),
            "livelink_port": _arg("livelink_port", int)}),
        _node(share, "web_head", "web_head.yaml", {
            "presentation_delay_ms": delay, "source": _arg("web_head_source"), "head_file": _arg("head")},
            condition=IfCondition(LaunchConfiguration("web_head"))),
    ]


def generate_launch_description():
    share = get_package_share_directory("moshiface_ros")
    defaults = {"head": os.path.join(share, "config", "heads", "servo_head.yaml")}
    arguments = [DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=text)
                 for name, default, text in ARGUMENTS]
    record = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "record.launch.py")),
        launch_arguments={"bag_dir": LaunchConfiguration("bag_dir")}.items(),
        condition=IfCondition(LaunchConfiguration("record")))
    return LaunchDescription(arguments + _nodes(share) + [record])

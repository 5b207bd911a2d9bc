"""web_head: the robot's face on a screen, as a web page fed by the robot's topics.

For a robot whose face is a display (a tablet, a kiosk browser): it serves the same page
as ``moshiface serve``, without a microphone, and streams ``/moshiface/robot/face`` (drawn
in 3D), ``/moshiface/robot/audio`` (played through the page's jitter buffer) and
``/moshiface/robot/text`` (captions) to every page that connects, each presented at its
stamp + ``presentation_delay_ms`` like the other presenting nodes. All the work is
``moshiface_ros.server.display``; this node converts messages and owns the parameters.

With ``source:=blendshapes`` the face is a virtual head's instead: the page draws the rig of
``head_file`` (the ARKit virtual head by default) as three.js morph targets, driven by
``/moshiface/robot/blendshapes`` (what the retarget node publishes for that head). A
message the rig cannot take (unknown names, NaN weights, names and weights of different
counts) is counted and reported once; the node keeps drawing.

    ros2 run moshiface_ros web_head --ros-args -p port:=8999
    ros2 run moshiface_ros web_head --ros-args -p source:=blendshapes
    (then open http://127.0.0.1:8999/ on the screen)
"""

from __future__ import annotations

import sys
from pathlib import Path

from rclpy.node import Node

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.msg import AudioChunk, BlendshapeWeights, DialogueText, FaceFrame
from moshiface_ros.nodes.parameters import WebHeadSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.server.assets import web_dir
from moshiface_ros.server.display import FaceDisplay
from moshiface_ros.server.mesh import MorphHead, rig_head
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE, ROBOT_TEXT


def _default_head_file() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("moshiface_ros"))
    except Exception:  # not installed in a ROS workspace: the source tree's copy
        share = Path(__file__).resolve().parents[2]
    return share / "config" / "heads" / "arkit_virtual_head.yaml"


def _morph_head(s: WebHeadSettings) -> MorphHead | None:
    """The rig the page draws with source blendshapes; a bad head file names the parameter."""
    if s.source != "blendshapes":
        return None
    try:
        return rig_head(Path(s.head_file) if s.head_file else _default_head_file(), s.vertices)
    except MoshifaceError as exc:
        raise ParameterError("head_file", str(exc)) from None


class WebHeadNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("web_head", **node_options)  # options: e.g. parameter_overrides (tests)
        s: WebHeadSettings = NodeParameters(self, WebHeadSettings).settings
        self._warn_once = WarnOnce(self.get_logger())
        morphs = _morph_head(s)
        self._display = FaceDisplay(web_dir(), lambda: self.get_clock().now().nanoseconds, s.host, s.port,
                                    s.token or None, s.vertices, s.presentation_delay_ms, morphs)
        try:
            url = self._display.start()
        except OSError as exc:
            raise ParameterError("port", f"cannot serve on {s.host}:{s.port}: {exc.strerror or exc}") from None
        if morphs is None:
            face = ROBOT_FACE
            self.create_subscription(FaceFrame, ROBOT_FACE, self._on_face, FACE_QOS)
        else:  # as deep as the face frames: a burst of weights must not lose frames
            face = f"{ROBOT_BLENDSHAPES} on the {len(morphs.names)} shapes of head {morphs.name!r}"
            self.create_subscription(BlendshapeWeights, ROBOT_BLENDSHAPES, self._on_blendshapes, FACE_QOS)
        self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_audio, AUDIO_QOS)
        self.create_subscription(DialogueText, ROBOT_TEXT, self._on_text, TEXT_QOS)
        self.get_logger().info(f"ready: serving the robot's face on {url} ({face}, {ROBOT_AUDIO}, {ROBOT_TEXT}; "
                               f"presented {s.presentation_delay_ms:g} ms after each stamp)")

    def _convert(self, topic: str, convert_fn, msg):
        try:
            return convert_fn(msg)
        except (ValueError, MoshifaceError) as exc:
            self._warn_once(topic, f"dropping a bad message on {topic}: {exc}")
            return None

    def _on_face(self, msg: FaceFrame) -> None:
        frame = self._convert(ROBOT_FACE, convert.face_frame_from_msg, msg)
        if frame is not None:
            self._display.push_face(frame)

    def _on_blendshapes(self, msg: BlendshapeWeights) -> None:
        weights = self._convert(ROBOT_BLENDSHAPES, convert.blendshape_weights_from_msg, msg)
        if weights is None:
            return
        problem = self._display.push_blendshapes(weights)
        if problem is not None:
            self._warn_once(f"{ROBOT_BLENDSHAPES}:rig", f"correcting blendshapes on {ROBOT_BLENDSHAPES}: {problem}")

    def _on_audio(self, msg: AudioChunk) -> None:
        chunk = self._convert(ROBOT_AUDIO, convert.audio_chunk_from_msg, msg)
        if chunk is not None:
            self._display.push_audio(chunk)

    def _on_text(self, msg: DialogueText) -> None:
        text = self._convert(ROBOT_TEXT, convert.dialogue_text_from_msg, msg)
        if text is not None:
            self._display.push_text(text)

    def release(self) -> None:
        """Stop serving (the viewers' connections close); say how much bad input there was."""
        self._display.stop()
        if self._warn_once.counts:
            counts = ", ".join(f"{count} on {key}" for key, count in sorted(self._warn_once.counts.items()))
            self.get_logger().info(f"bad messages seen: {counts}")


def main(args=None) -> int:
    return run_node(WebHeadNode, "web_head", args)


if __name__ == "__main__":
    sys.exit(main())

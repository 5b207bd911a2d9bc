"""moshiface_node: the conversation model as a ROS 2 node.

Subscribes the user's audio (``/moshiface/user/audio``, any rate and channel count) and
publishes, once per 80 ms of user audio, the robot's audio (``/moshiface/robot/audio``,
24 kHz mono, 1920 samples) and, when the robot says something new, a text token
(``/moshiface/robot/text``). With a Moshi-Face model it also subscribes the user's face
(``/moshiface/user/face``, 25 fps) and publishes the robot's face tokens
(``/moshiface/robot/face_tokens``) and two face frames per step (``/moshiface/robot/face``),
stamped like the step's audio. All the work is the core's ``AudioStepper`` and
``SpeechEngine``; this node only owns parameters, message conversion and QoS.

    ros2 run moshiface_ros moshiface_node --ros-args -p model:=hf:kyutai/moshiko-pytorch-bf16
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from moshiface_ros.messages import convert
from moshiface_ros.messages.types import AudioChunk as CoreAudioChunk
from moshiface_ros.msg import AudioChunk, DialogueText, FaceFrame, FaceTokens
from moshiface_ros.nodes.parameters import MOSHIFACE_NODE
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import WarnOnce, run_node
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_FACE, ROBOT_FACE_TOKENS, ROBOT_TEXT, USER_AUDIO, USER_FACE

PARAMETERS = MOSHIFACE_NODE


class MoshifaceNode(Node):
    def __init__(self) -> None:
        super().__init__("moshiface_node")
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._stepper = self._build_stepper(p)
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._audio_pub = self.create_publisher(AudioChunk, ROBOT_AUDIO, AUDIO_QOS)
        self._text_pub = self.create_publisher(DialogueText, ROBOT_TEXT, TEXT_QOS)
        self.create_subscription(AudioChunk, USER_AUDIO, self._on_user_audio, AUDIO_QOS)
        if self._stepper.face is not None:
            self._tokens_pub = self.create_publisher(FaceTokens, ROBOT_FACE_TOKENS, FACE_QOS)
            self._face_pub = self.create_publisher(FaceFrame, ROBOT_FACE, FACE_QOS)
            self.create_subscription(FaceFrame, USER_FACE, self._on_user_face, FACE_QOS)
        self.get_logger().info(
            f"ready: {self._stepper.engine.models.description} on {self._stepper.engine.device}; "
            f"listening on {USER_AUDIO}")

    def _build_stepper(self, p: dict):
        import torch

        from moshiface_ros.speech.engine import Sampling, SpeechEngine
        from moshiface_ros.speech.models import ModelSpec, load_speech_models, resolve_device, resolve_dtype
        from moshiface_ros.speech.stepper import AudioStepper

        spec = ModelSpec.parse(p["model"])
        threads = p["threads"] or (1 if spec.kind == "tiny" else 0)
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(p["device"])
        models = load_speech_models(spec, device, resolve_dtype(p["dtype"], device, spec))
        sampling = Sampling(p["temperature"], p["text_temperature"], p["top_k"], p["text_top_k"])
        engine = SpeechEngine(models, sampling, seed=p["seed"], cuda_graphs=p["cuda_graphs"])
        if device.type == "cuda":
            engine.warmup()
        face = None
        if engine.has_face:
            from moshiface_ros.face_codec.stream import FacePath, load_face_codec

            face = FacePath(load_face_codec(p["codec"], device), frame_id=p["frame_id"])
        return AudioStepper(engine, frame_id=p["frame_id"], face=face)

    def _on_user_face(self, msg: FaceFrame) -> None:
        try:
            self._stepper.face.push_user(convert.face_frame_from_msg(msg))
        except ValueError as exc:
            self._warn_once(USER_FACE, f"dropping bad face frames on {USER_FACE}: {exc}")

    def _on_user_audio(self, msg: AudioChunk) -> None:
        try:
            chunk: CoreAudioChunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once(USER_AUDIO, f"dropping bad audio on {USER_AUDIO}: {exc}")
            return
        for record in self._stepper.push(chunk):
            self._audio_pub.publish(convert.audio_chunk_to_msg(record.robot, self._factory))
            if record.text is not None:
                self._text_pub.publish(convert.dialogue_text_to_msg(record.text, self._factory))
            if record.robot_face_tokens is not None:
                self._tokens_pub.publish(convert.face_tokens_to_msg(record.robot_face_tokens, self._factory))
            for frame in record.robot_face or ():
                self._face_pub.publish(convert.face_frame_to_msg(frame, self._factory))


def main(args=None) -> int:
    return run_node(MoshifaceNode, "moshiface_node", args)


if __name__ == "__main__":
    sys.exit(main())

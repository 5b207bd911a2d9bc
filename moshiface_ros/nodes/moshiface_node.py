"""moshiface_node: the conversation model as a ROS 2 node.

Subscribes the user's audio (``/moshiface/user/audio``, any rate and channel count) and
publishes, once per 80 ms of user audio, the robot's audio (``/moshiface/robot/audio``,
24 kHz mono, 1920 samples) and, when the robot says something new, a text token
(``/moshiface/robot/text``). With a Moshi-Face model it also subscribes the user's face
(``/moshiface/user/face``, 25 fps) and publishes the user's and the robot's face tokens
(``/moshiface/user/face_tokens``, ``/moshiface/robot/face_tokens``) and two face frames per
step (``/moshiface/robot/face``), stamped like the step's audio.

The model steps on a worker thread (``speech.worker.StepWorker``): the subscription
callbacks only enqueue, so the executor stays free for parameter requests and the
diagnostics timer while a step runs. ``/diagnostics`` carries the step time (p50, p95),
the late steps, the real-time factor and the model's description. All the work is the
core's session (``speech.session.build_stepper``); this node only owns parameters, message
conversion, the worker and QoS.

    ros2 run moshiface_ros moshiface_node --ros-args -p model:=hf:kyutai/moshiko-pytorch-bf16
"""

from __future__ import annotations

import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import diagnostic_array_to_msg
from moshiface_ros.msg import AudioChunk, DialogueText, FaceFrame, FaceTokens
from moshiface_ros.nodes.moshiface_settings import MoshifaceSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import about
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.speech.session import Placement, SessionOptions, build_stepper, load_models
from moshiface_ros.speech.step_monitor import StepMonitor
from moshiface_ros.speech.stepper import AudioStepper, StepRecord
from moshiface_ros.speech.worker import StepWorker
from moshiface_ros.topics import (
    DIAGNOSTICS,
    ROBOT_AUDIO,
    ROBOT_FACE,
    ROBOT_FACE_TOKENS,
    ROBOT_TEXT,
    USER_AUDIO,
    USER_FACE,
    USER_FACE_TOKENS,
)


def session_options(s: MoshifaceSettings) -> SessionOptions:
    from moshiface_ros.speech.engine import Sampling

    sampling = Sampling(s.temperature, s.text_temperature, s.top_k, s.text_top_k, s.face_temperature, s.face_top_k)
    return SessionOptions(model=s.model, device=s.device, dtype=s.dtype, threads=s.threads,
                          cuda_graphs=s.cuda_graphs, seed=s.seed, sampling=sampling, codec=s.codec,
                          frame_id=s.frame_id)


def build_session(s: MoshifaceSettings) -> AudioStepper:
    """The session for the node's settings; a user error names the parameter behind it."""
    from moshiface_ros.speech.models import ModelSpec, resolve_device, resolve_dtype

    options = session_options(s)
    with about("model"):
        spec = ModelSpec.parse(s.model)
    with about("device"):
        device = resolve_device(s.device)
    with about("dtype"):
        dtype = resolve_dtype(s.dtype, device, spec)
    with about("model"):
        models = load_models(options, Placement(spec, device, dtype))
    with about("codec"):
        return build_stepper(options, models)


class MoshifaceNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("moshiface_node", **node_options)  # options: e.g. parameter_overrides (tests)
        s: MoshifaceSettings = NodeParameters(self, MoshifaceSettings).settings
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._worker: StepWorker | None = None
        self._stepper = build_session(s)
        self.description = f"{self._stepper.engine.models.description} on {self._stepper.engine.device}"
        self._audio_pub = self.create_publisher(AudioChunk, ROBOT_AUDIO, AUDIO_QOS)
        self._text_pub = self.create_publisher(DialogueText, ROBOT_TEXT, TEXT_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        if self._stepper.has_face:
            self._user_tokens_pub = self.create_publisher(FaceTokens, USER_FACE_TOKENS, FACE_QOS)
            self._tokens_pub = self.create_publisher(FaceTokens, ROBOT_FACE_TOKENS, FACE_QOS)
            self._face_pub = self.create_publisher(FaceFrame, ROBOT_FACE, FACE_QOS)
        self.monitor = StepMonitor()
        self._worker = StepWorker(self._stepper, self._publish, self.monitor, s.queue_seconds,
                                  on_bad_face=lambda exc: self._warn_once(USER_FACE, f"dropping face frames: {exc}"))
        self.create_subscription(AudioChunk, USER_AUDIO, self._on_user_audio, AUDIO_QOS)
        if self._stepper.has_face:
            self.create_subscription(FaceFrame, USER_FACE, self._on_user_face, FACE_QOS)
        self.create_timer(s.diagnostics_period_s, self._report)
        self.get_logger().info(f"ready: {self.description}; listening on {USER_AUDIO}")

    def _on_user_face(self, msg: FaceFrame) -> None:
        try:
            self._worker.push_face(convert.face_frame_from_msg(msg))
        except ValueError as exc:
            self._warn_once(USER_FACE, f"dropping bad face frames on {USER_FACE}: {exc}")

    def _on_user_audio(self, msg: AudioChunk) -> None:
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once(USER_AUDIO, f"dropping bad audio on {USER_AUDIO}: {exc}")
            return
        self._worker.push_audio(chunk)

    def _publish(self, record: StepRecord, late: bool) -> None:
        """On the worker thread: one finished step's messages (rclpy's publish is thread-safe)."""
        try:
            self._audio_pub.publish(convert.audio_chunk_to_msg(record.robot, self._factory))
            if record.text is not None:
                self._text_pub.publish(convert.dialogue_text_to_msg(record.text, self._factory))
            if record.user_face_tokens is not None:
                self._user_tokens_pub.publish(convert.face_tokens_to_msg(record.user_face_tokens, self._factory))
            if record.robot_face_tokens is not None:
                self._tokens_pub.publish(convert.face_tokens_to_msg(record.robot_face_tokens, self._factory))
            for frame in record.robot_face or ():
                self._face_pub.publish(convert.face_frame_to_msg(frame, self._factory))
        except Exception:
            if rclpy.ok(context=self.context):
                raise  # a bug, not ROS going down under us (Ctrl-C)

    def _report(self) -> None:
        if self._stepper.unsequenced:  # the core noticed a publisher that does not number its chunks
            self._warn_once("sequence", f"user audio on {USER_AUDIO} repeats its sequence numbers: "
                            "treated as one continuous stream (gaps cannot be detected)")
        status = self.monitor.status(f"{self.get_name()}: model", self.description)
        now = self.get_clock().now().nanoseconds
        self._diagnostics.publish(diagnostic_array_to_msg([status], now, self._factory))

    def release(self) -> None:
        """Stop the worker (the step in progress finishes), then close the engine and face path."""
        if self._worker is not None:
            self._worker.stop()
        self._stepper.close()


def main(args=None) -> int:
    return run_node(MoshifaceNode, "moshiface_node", args)


if __name__ == "__main__":
    sys.exit(main())

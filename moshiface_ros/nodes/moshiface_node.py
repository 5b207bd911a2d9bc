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

With the ``robots`` parameter (``-p robots:="[a, b]"``) one node serves several robots
through one batched model (``speech.slots``): each robot's topics are relative names under
its own name (``a/moshiface/user/audio``, ``a/moshiface/robot/audio``, ... resolved against
the node's namespace, so ``-r __ns:=/lab`` gives ``/lab/a/moshiface/...``), each robot has
its own worker, stream clock, face path and step figures on ``/diagnostics``, and the
steps the robots ask for at the same time run as one forward pass (robots with nothing to
say are masked in it). Without it the node serves one robot on ``/moshiface/...``.

    ros2 run moshiface_ros moshiface_node --ros-args -p model:=hf:kyutai/moshiko-pytorch-bf16
"""

from __future__ import annotations

import sys

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import diagnostic_array_to_msg
from moshiface_ros.msg import AudioChunk, DialogueText, FaceFrame, FaceTokens
from moshiface_ros.nodes.moshiface_settings import ROBOTS_DESCRIPTION, MoshifaceSettings, parse_robots
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError, about
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.speech.session import Placement, SessionOptions, build_stepper, load_models
from moshiface_ros.speech.slots import SlotScheduler, build_robot_steppers
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


def _load(s: MoshifaceSettings):
    """The speech models for the node's settings; a user error names the parameter behind it."""
    from moshiface_ros.speech.models import ModelSpec, resolve_device, resolve_dtype

    with about("model"):
        spec = ModelSpec.parse(s.model)
    with about("device"):
        device = resolve_device(s.device)
    with about("dtype"):
        dtype = resolve_dtype(s.dtype, device, spec)
    with about("model"):
        return load_models(session_options(s), Placement(spec, device, dtype))


def build_session(s: MoshifaceSettings) -> AudioStepper:
    """The session for the node's settings; a user error names the parameter behind it."""
    models = _load(s)
    with about("codec"):
        return build_stepper(session_options(s), models)


def build_robot_sessions(s: MoshifaceSettings, robots: tuple[str, ...]) -> tuple[SlotScheduler, list[AudioStepper]]:
    """One batched model with a slot (and an ``AudioStepper``) per robot."""
    models = _load(s)
    with about("codec"):
        return build_robot_steppers(session_options(s), models, robots)


def declare_robots(node: Node) -> tuple[str, ...]:
    """The ``robots`` string array (read-only; unset = the single-robot node)."""
    described = ParameterDescriptor(name="robots", type=Parameter.Type.STRING_ARRAY.value,
                                    description=ROBOTS_DESCRIPTION, read_only=True,
                                    additional_constraints="read-only: restart the node to change it")
    try:
        value = node.declare_parameter("robots", Parameter.Type.STRING_ARRAY, described).value
    except ParameterException as exc:
        raise ParameterError("robots", str(exc)) from None
    return parse_robots(value)


class RobotLink:
    """One robot's side of the node: its subscriptions, publishers, step worker and figures.

    ``prefix`` is '' for the single-robot node (the absolute ``/moshiface/...`` topics) or
    the robot's name, which makes every topic the relative ``NAME/moshiface/...``.
    """

    def __init__(self, node: "MoshifaceNode", stepper: AudioStepper, prefix: str, queue_seconds: float) -> None:
        self.name = prefix
        self.stepper = stepper
        self._node = node
        self._warn_once = node._warn_once
        self._factory = RclpyFactory()
        self.topics = {t: prefix + t for t in (USER_AUDIO, USER_FACE)}  # "a" + "/moshiface/..": relative
        self._audio_pub = node.create_publisher(AudioChunk, prefix + ROBOT_AUDIO, AUDIO_QOS)
        self._text_pub = node.create_publisher(DialogueText, prefix + ROBOT_TEXT, TEXT_QOS)
        if stepper.has_face:
            self._user_tokens_pub = node.create_publisher(FaceTokens, prefix + USER_FACE_TOKENS, FACE_QOS)
            self._tokens_pub = node.create_publisher(FaceTokens, prefix + ROBOT_FACE_TOKENS, FACE_QOS)
            self._face_pub = node.create_publisher(FaceFrame, prefix + ROBOT_FACE, FACE_QOS)
        self.monitor = StepMonitor()
        self.worker = StepWorker(stepper, self._publish, self.monitor, queue_seconds, on_bad_face=lambda exc:
                                 self._warn_once(self.topics[USER_FACE], f"dropping face frames: {exc}"))
        audio = node.create_subscription(AudioChunk, self.topics[USER_AUDIO], self._on_user_audio, AUDIO_QOS)
        self.listening = audio.topic_name
        if stepper.has_face:
            node.create_subscription(FaceFrame, self.topics[USER_FACE], self._on_user_face, FACE_QOS)

    def _on_user_face(self, msg: FaceFrame) -> None:
        try:
            self.worker.push_face(convert.face_frame_from_msg(msg))
        except ValueError as exc:
            topic = self.topics[USER_FACE]
            self._warn_once(topic, f"dropping bad face frames on {topic}: {exc}")

    def _on_user_audio(self, msg: AudioChunk) -> None:
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            topic = self.topics[USER_AUDIO]
            self._warn_once(topic, f"dropping bad audio on {topic}: {exc}")
            return
        self.worker.push_audio(chunk)

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
            if rclpy.ok(context=self._node.context):
                raise  # a bug, not ROS going down under us (Ctrl-C)

    def status(self, node_name: str, description: str):
        """This robot's step figures for /diagnostics (warns once about unnumbered chunks)."""
        if self.stepper.unsequenced:  # the core noticed a publisher that does not number its chunks
            topic = self.topics[USER_AUDIO]
            self._warn_once(f"sequence {self.name}".rstrip(), f"user audio on {topic} repeats its sequence numbers: "
                            "treated as one continuous stream (gaps cannot be detected)")
        label = f"{node_name}: {self.name} model" if self.name else f"{node_name}: model"
        return self.monitor.status(label, description)

    def release(self) -> None:
        """Stops the worker (the step in progress finishes), then closes the conversation."""
        self.worker.stop()
        self.stepper.close()




class MoshifaceNode(Releasable, Node):
    _links: list[RobotLink] = []  # (class defaults: release() works whatever __init__ got to)
    _scheduler: SlotScheduler | None = None

    def __init__(self, **node_options) -> None:
        super().__init__("moshiface_node", **node_options)  # options: e.g. parameter_overrides (tests)
        robots = declare_robots(self)  # before the table's set callback, which knows only its own names
        s: MoshifaceSettings = NodeParameters(self, MoshifaceSettings).settings
        self._warn_once = WarnOnce(self.get_logger())
        self._links: list[RobotLink] = []
        self._scheduler: SlotScheduler | None = None
        if robots:
            self._scheduler, steppers = build_robot_sessions(s, robots)
        else:
            steppers = [build_session(s)]
        engine = steppers[0].engine
        self.description = f"{engine.models.description} on {engine.device}"
        if robots:
            self.description += f", {len(robots)} robots in one batch"
        self._factory = RclpyFactory()
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        for prefix, stepper in zip(robots or ("",), steppers):
            self._links.append(RobotLink(self, stepper, prefix, s.queue_seconds))
        self._stepper, self._worker, self.monitor = steppers[0], self._links[0].worker, self._links[0].monitor
        self.create_timer(s.diagnostics_period_s, self._report)
        listening = ", ".join(link.listening for link in self._links)
        self.get_logger().info(f"ready: {self.description}; listening on {listening}")

    @property
    def robots(self) -> list[RobotLink]:
        """Each robot's link (one, unnamed, for the single-robot node)."""
        return list(self._links)

    def _report(self) -> None:
        statuses = [link.status(self.get_name(), self.description) for link in self._links]
        now = self.get_clock().now().nanoseconds
        self._diagnostics.publish(diagnostic_array_to_msg(statuses, now, self._factory))

    def release(self) -> None:
        """Stop the workers (the steps in progress finish), then close the engines and face paths."""
        for link in self._links:
            link.worker.stop()
        for link in self._links:
            link.stepper.close()
        if self._scheduler is not None:
            self._scheduler.close()


def main(args=None) -> int:
    return run_node(MoshifaceNode, "moshiface_node", args)


if __name__ == "__main__":
    sys.exit(main())

"""The conversation node under real rclpy over DDS, with the tiny model on CPU: user audio in,
robot audio and text out, bad input dropped, the executor free while the model steps, and
the step figures on /diagnostics.

Needs rclpy and this package's generated messages (``make test`` builds them); it skips
without them, or fails under ``MOSHIFACE_REQUIRE_ROS=1``. Everything the node wraps is
tested without ROS (test_stepper.py, test_node_logic.py).
"""

import os
import time

import numpy as np
import pytest

import ros_harness

ros_harness.require_ros_module()

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

import moshiface_ros.msg as msgs  # noqa: E402
from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.messages.types import AudioChunk, FaceFrame  # noqa: E402
from moshiface_ros.nodes.moshiface_node import MoshifaceNode  # noqa: E402
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS  # noqa: E402
from moshiface_ros.nodes.rclpy_messages import RclpyFactory  # noqa: E402
from moshiface_ros.topics import (  # noqa: E402
    DIAGNOSTICS,
    ROBOT_AUDIO,
    ROBOT_FACE,
    ROBOT_TEXT,
    USER_AUDIO,
    USER_FACE,
    USER_FACE_TOKENS,
)


@pytest.fixture
def ros():
    rclpy.init()
    node = MoshifaceNode()
    peer = rclpy.create_node("moshiface_test_peer")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(peer)
    yield node, peer, executor
    executor.shutdown()
    node.destroy_node()
    node.destroy_node()  # releasing twice is harmless (rclpy or a launch may do it)
    peer.destroy_node()
    rclpy.try_shutdown()


def spin_until(executor, done, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def test_one_step_per_80_ms_of_user_audio(ros):
    node, peer, executor = ros
    robot, text = [], []
    peer.create_subscription(msgs.AudioChunk, ROBOT_AUDIO, robot.append, AUDIO_QOS)
    peer.create_subscription(msgs.DialogueText, ROBOT_TEXT, text.append, TEXT_QOS)
    pub = peer.create_publisher(msgs.AudioChunk, USER_AUDIO, AUDIO_QOS)
    spin_until(executor, lambda: pub.get_subscription_count() > 0, 5.0)
    speech = synthetic_speech(1.6, 48000, seed=0)  # 20 steps, sent as 10 ms stereo chunks
    stereo = np.stack([speech, speech], axis=1)
    factory = RclpyFactory()
    for i in range(0, len(stereo), 480):
        chunk = AudioChunk(1_000_000_000 + i * 10**9 // 48000, 48000, stereo[i:i + 480], channels=2, sequence=i // 480)
        pub.publish(convert.audio_chunk_to_msg(chunk, factory))
        executor.spin_once(timeout_sec=0.0)
    spin_until(executor, lambda: len(robot) >= 19)
    assert len(robot) >= 19
    for i, msg in enumerate(robot):
        core = convert.audio_chunk_from_msg(msg)
        assert core.sample_rate == 24000 and core.samples.shape == (1920,)
        assert core.sequence == i and core.stamp_ns == 1_000_000_000 + i * 80_000_000
    assert text and all(t.header.stamp == robot[t.step].header.stamp for t in text if t.step < len(robot))


def test_bad_message_is_dropped_and_the_node_keeps_going(ros):
    node, peer, executor = ros
    robot = []
    peer.create_subscription(msgs.AudioChunk, ROBOT_AUDIO, robot.append, AUDIO_QOS)
    pub = peer.create_publisher(msgs.AudioChunk, USER_AUDIO, AUDIO_QOS)
    spin_until(executor, lambda: pub.get_subscription_count() > 0, 5.0)
    bad = msgs.AudioChunk(sample_rate=24000, channels=2)
    bad.samples = [0.0, 0.1, 0.2]  # not a multiple of 2 channels
    pub.publish(bad)
    good = convert.audio_chunk_to_msg(AudioChunk(0, 24000, np.zeros(1920 * 3)), RclpyFactory())
    pub.publish(good)
    spin_until(executor, lambda: len(robot) >= 3)
    assert node._warn_once.counts == {USER_AUDIO: 1} and len(robot) == 3


def test_parameter_requests_are_answered_while_the_model_steps(ros):
    """The model steps on its worker thread: a parameter get is answered within a few ms
    while a backlog of steps runs (before, the executor was blocked in the callback)."""
    node, peer, executor = ros
    robot, diagnostics = [], []
    peer.create_subscription(msgs.AudioChunk, ROBOT_AUDIO, robot.append, AUDIO_QOS)
    peer.create_subscription(DiagnosticArray, DIAGNOSTICS, diagnostics.append, 10)
    pub = peer.create_publisher(msgs.AudioChunk, USER_AUDIO, AUDIO_QOS)
    client = peer.create_client(GetParameters, "/moshiface_node/get_parameters")
    spin_until(executor, lambda: pub.get_subscription_count() > 0 and client.service_is_ready(), 10.0)
    factory, speech = RclpyFactory(), synthetic_speech(3.2, 24000, seed=1)  # 40 steps
    for k in range(40):
        pub.publish(convert.audio_chunk_to_msg(AudioChunk(10**9 + k * 80_000_000, 24000,
                                                          speech[k * 1920:(k + 1) * 1920], sequence=k), factory))
    spin_until(executor, lambda: not node._worker.idle(), 5.0)
    answers = []
    while not node._worker.idle() and len(answers) < 20:
        start = time.perf_counter()
        future = client.call_async(GetParameters.Request(names=["temperature", "threads"]))
        spin_until(executor, future.done, 5.0)
        assert future.done()
        answers.append((time.perf_counter() - start) * 1000)
        assert future.result().values[0].double_value == pytest.approx(0.8)
    spin_until(executor, lambda: len(robot) >= 40 and node._worker.idle(), 60.0)
    assert len(robot) == 40 and len(answers) >= 3
    p50, worst = np.percentile(answers, 50), max(answers)
    print(f"\nparameter get while the model steps: {len(answers)} requests, p50 {p50:.1f} ms, max {worst:.1f} ms; "
          f"step p50 {node.monitor.percentile_ms(50):.1f} ms, p95 {node.monitor.percentile_ms(95):.1f} ms")
    assert p50 < 50.0
    spin_until(executor, lambda: diagnostics, 5.0)
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert {"step_ms_p50", "step_ms_p95", "late_steps", "real_time_factor", "model"} <= set(values)
    assert values["model"].startswith("tiny random") and int(values["steps"]) >= 1


def test_end_to_end_latency_through_dds(ros):
    """A user chunk (and its two user face frames) published at the model's pace -> the robot
    chunk received by a subscriber in another node over DDS: the latency a conversation
    feels before the presentation delay; the robot's face arrives at 25 Hz and the user's
    face tokens are published (the runner records both)."""
    node, peer, executor = ros
    received, faces, user_tokens = {}, [], []
    peer.create_subscription(msgs.AudioChunk, ROBOT_AUDIO,
                             lambda m: received.setdefault(m.sequence, time.perf_counter()), AUDIO_QOS)
    peer.create_subscription(msgs.FaceFrame, ROBOT_FACE, lambda m: faces.append(time.perf_counter()), FACE_QOS)
    peer.create_subscription(msgs.FaceTokens, USER_FACE_TOKENS, user_tokens.append, FACE_QOS)
    pub = peer.create_publisher(msgs.AudioChunk, USER_AUDIO, AUDIO_QOS)
    face_pub = peer.create_publisher(msgs.FaceFrame, USER_FACE, FACE_QOS)
    spin_until(executor, lambda: pub.get_subscription_count() > 0 and face_pub.get_subscription_count() > 0, 5.0)
    factory, speech, sent = RclpyFactory(), synthetic_speech(4.0, 24000, seed=2), {}
    still = np.zeros((node._stepper.face_vertices, 3), np.float32)
    for k in range(50):
        due = time.perf_counter() + 0.08
        stamp = 10**9 + k * 80_000_000
        for half in (0, 40_000_000):  # a camera's frames come before the chunk of the same time is complete
            face_pub.publish(convert.face_frame_to_msg(FaceFrame(stamp + half, still), factory))
        while time.perf_counter() < due - 0.06:
            executor.spin_once(timeout_sec=0.005)
        sent[k] = time.perf_counter()
        pub.publish(convert.audio_chunk_to_msg(AudioChunk(stamp, 24000, speech[k * 1920:(k + 1) * 1920],
                                                          sequence=k), factory))
        while time.perf_counter() < due:
            executor.spin_once(timeout_sec=max(0.0, due - time.perf_counter()))
    # a step's face frames are published right after its audio: wait for both
    spin_until(executor, lambda: len(received) >= 50 and len(faces) >= 100, 20.0)
    latency = np.array([received[k] - sent[k] for k in range(50)]) * 1000
    p50, p95 = np.percentile(latency, [50, 95])
    rate = 2.0 / np.median(np.diff(faces[10::2]))  # two frames per step, sent together
    print(f"\nend-to-end user chunk -> robot chunk over DDS (tiny model, CPU): p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
          f"late steps {node.monitor.late} of {node.monitor.steps}; /moshiface/robot/face {rate:.1f} Hz "
          f"({len(faces)} frames); {len(user_tokens)} user face token messages")
    assert len(received) == 50 and p50 < 200.0
    assert len(faces) == 100 and 22.0 <= rate <= 28.0
    assert len(user_tokens) >= 40 and all(len(t.tokens) == 8 for t in user_tokens)

"""The rclpy node with the tiny model: user audio in, robot audio and text out.

Needs a ROS 2 environment (rclpy and this package's generated messages, i.e. after
`colcon build`); skipped otherwise. Everything the node wraps is tested without ROS.
"""

import os
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs ROS 2 (rclpy)")
msgs = pytest.importorskip("moshiface_ros.msg", reason="needs the built moshiface_ros messages")

os.environ.setdefault("NO_TORCH_COMPILE", "1")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.messages.types import AudioChunk  # noqa: E402
from moshiface_ros.nodes.moshiface_node import MoshifaceNode  # noqa: E402
from moshiface_ros.nodes.qos import AUDIO_QOS, TEXT_QOS  # noqa: E402
from moshiface_ros.nodes.rclpy_messages import RclpyFactory  # noqa: E402
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_TEXT, USER_AUDIO  # noqa: E402


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
    assert node._bad_messages == 1 and len(robot) == 3

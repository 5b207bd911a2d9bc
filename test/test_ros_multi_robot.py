"""One conversation node serving two robots under real ROS 2: ``moshiface_node`` started as
`ros2 run` starts it, with ``robots:=[a, b]`` and its namespace remapped to ``/lab``, over
DDS on loopback, the tiny model on CPU with greedy sampling.

Each robot is fed its own user audio on its own topic (robot a at 16 kHz from the start,
robot b at 24 kHz, joining later and talking on after a stopped), and each must hear only
its own answers: every robot chunk, text token and face token message on a robot's topics
is exactly what that robot's slot answers to its input when the other robot is silent
(greedy decoding makes that deterministic whatever steps the node happens to batch
together), stamped on that robot's own input clock. Nothing is published on the single-robot topics.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import ros_harness

ros_harness.require_ros_module()

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

import moshiface_ros.msg as msgs  # noqa: E402
from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.face_codec.stream import FacePath, tiny_codec  # noqa: E402
from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.messages.types import AudioChunk  # noqa: E402
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS  # noqa: E402
from moshiface_ros.nodes.rclpy_messages import RclpyFactory  # noqa: E402
from moshiface_ros.speech.batch import BatchedEngine  # noqa: E402
from moshiface_ros.speech.engine import Sampling  # noqa: E402
from moshiface_ros.speech.slots import SlotScheduler  # noqa: E402
from moshiface_ros.speech.stepper import AudioStepper  # noqa: E402
from moshiface_ros.topics import DIAGNOSTICS, ROBOT_AUDIO, ROBOT_FACE_TOKENS, ROBOT_TEXT  # noqa: E402
from ros_harness import assert_clean_output, start_node  # noqa: E402

GREEDY = Sampling(temperature=0.0, text_temperature=0.0, face_temperature=0.0)
GREEDY_ARGS = [arg for name in ("temperature", "text_temperature", "face_temperature")
               for arg in ("-p", f"{name}:=0.0")]
# robot -> (rate, chunk frames, chunks, first stamp, chunk of robot a after which it starts)
INPUTS = {"a": (16000, 1280, 16, 1_000_000_000, 0), "b": (24000, 1920, 12, 7_300_000_000, 6)}


def user_chunks(robot: str) -> list[AudioChunk]:
    rate, frames, count, first, _ = INPUTS[robot]
    pcm = synthetic_speech(count * frames / rate, rate, seed=ord(robot))
    return [AudioChunk(first + i * frames * 10**9 // rate, rate, pcm[i * frames:(i + 1) * frames], sequence=i)
            for i in range(count)]


def alone(tiny, robot: str, chunks: list[AudioChunk]) -> list:
    """What the robot's slot of the node's two-slot batch answers to ``chunks`` when the other
    robot is silent (its row masked), as a single-robot session would (no flush: the node
    never ends a stream). The batch is the node's size: a batch of one rounds differently,
    which can flip a greedy choice between two near-equal logits of the random tiny model."""
    scheduler = SlotScheduler(BatchedEngine(tiny, len(INPUTS), GREEDY))
    engine = scheduler.slot(list(INPUTS).index(robot))
    try:
        with AudioStepper(engine, face=FacePath(tiny_codec())) as stepper:
            return [record for chunk in chunks for record in stepper.push(chunk)]
    finally:
        scheduler.engine.close()


def topic(robot: str, name: str) -> str:
    return f"/lab/{robot}{name}"


@pytest.fixture
def peer():
    rclpy.init()
    node = rclpy.create_node("multi_robot_test_peer")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()


def spin_until(executor, done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)


def subscribe(node, heard: dict) -> None:
    for robot in INPUTS:
        heard[robot] = {"audio": [], "text": [], "face_tokens": []}
        node.create_subscription(msgs.AudioChunk, topic(robot, ROBOT_AUDIO), heard[robot]["audio"].append, AUDIO_QOS)
        node.create_subscription(msgs.DialogueText, topic(robot, ROBOT_TEXT), heard[robot]["text"].append, TEXT_QOS)
        node.create_subscription(msgs.FaceTokens, topic(robot, ROBOT_FACE_TOKENS), heard[robot]["face_tokens"].append,
                                 FACE_QOS)


def talk(node, executor, inputs: dict[str, list[AudioChunk]]) -> None:
    """Robot a's user talks first; robot b's joins at a's chunk 6 and goes on after a stops."""
    pubs = {robot: node.create_publisher(msgs.AudioChunk, topic(robot, "/moshiface/user/audio"), AUDIO_QOS)
            for robot in INPUTS}
    spin_until(executor, lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20.0)
    factory, sent = RclpyFactory(), {robot: 0 for robot in INPUTS}
    for tick in range(max(len(c) + INPUTS[r][4] for r, c in inputs.items())):
        for robot, chunks in inputs.items():
            index = tick - INPUTS[robot][4]
            if 0 <= index < len(chunks):
                pubs[robot].publish(convert.audio_chunk_to_msg(chunks[index], factory))
                sent[robot] += 1
        executor.spin_once(timeout_sec=0.02)
    assert sent == {robot: len(chunks) for robot, chunks in inputs.items()}


def assert_heard_only_its_own(robot: str, heard: dict, expected: list) -> None:
    audio = heard["audio"]
    assert len(audio) == len(expected) > 0, robot
    for record, msg in zip(expected, audio):
        chunk = convert.audio_chunk_from_msg(msg)
        assert chunk.sequence == record.robot.sequence and chunk.stamp_ns == record.robot.stamp_ns, robot
        assert msg.header.frame_id == f"{robot}/robot_head", robot
        np.testing.assert_allclose(chunk.samples, record.robot.samples, atol=1e-4, err_msg=robot)
    texts = [(r.text.step, r.text.token_id) for r in expected if r.text is not None]
    got = [(t.step, t.token_id) for t in heard["text"]]
    assert got == texts, f"{robot}: heard {got}, expected {texts}"
    tokens = [(r.robot_face_tokens.step, list(r.robot_face_tokens.tokens)) for r in expected
              if r.robot_face_tokens is not None]
    assert len(tokens) >= len(expected) - 2, robot  # the face stream comes out after the model's delay
    assert [(t.step, list(t.tokens)) for t in heard["face_tokens"]] == tokens, robot


def test_one_node_serves_two_robots_each_hearing_only_its_own_answers(peer, tiny, tmp_path):
    node, executor = peer
    inputs = {robot: user_chunks(robot) for robot in INPUTS}
    expected = {robot: alone(tiny, robot, chunks) for robot, chunks in inputs.items()}
    assert [r.text.token_id for r in expected["a"] if r.text] != [r.text.token_id for r in expected["b"] if r.text]
    heard, diagnostics = {}, []
    subscribe(node, heard)
    node.create_subscription(DiagnosticArray, DIAGNOSTICS, diagnostics.append, 10)
    with start_node("moshiface_node", tmp_path, "-p", "robots:=[a, b]", "-p", "device:=cpu", *GREEDY_ARGS,
                    "-r", "__ns:=/lab") as process:
        process.wait_for(r"\]: ready", 120)
        assert "/lab/a/moshiface/user/audio, /lab/b/moshiface/user/audio" in process.text()
        talk(node, executor, inputs)
        spin_until(executor, lambda: all(len(heard[r]["audio"]) >= len(expected[r]) for r in INPUTS)
                   and diagnostics, 60.0)
        spin_until(executor, lambda: False, 0.5)  # anything more would be a step too many
        assert not node.get_publishers_info_by_topic(ROBOT_AUDIO)  # the single-robot topic is not used
        for robot in INPUTS:
            assert_heard_only_its_own(robot, heard[robot], expected[robot])
        names = {status.name for status in diagnostics[-1].status}
        assert names == {"moshiface_node: a model", "moshiface_node: b model"}
        assert process.interrupt() == 0
        assert_clean_output(process.text(), "moshiface_node")
    print(f"\ntwo robots, one node: a {len(heard['a']['audio'])} steps, b {len(heard['b']['audio'])} steps, "
          f"each equal to its single-robot session")


def test_robot_names_that_are_not_ros_names_end_the_node_with_one_line(tmp_path):
    with start_node("moshiface_node", tmp_path, "-p", "robots:=[a, a]", "-p", "device:=cpu") as process:
        assert process.process.wait(60) != 0
        assert "parameter robots: names must differ, got ['a', 'a']" in process.text()
        assert_clean_output(process.text(), "moshiface_node")

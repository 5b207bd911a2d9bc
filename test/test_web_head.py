"""The web_head node under real ROS: the robot's face, voice and text published on their
topics reach a page connected to the node's WebSocket, stamped as offsets on the
page's clock; with source:=blendshapes the weights on /moshiface/robot/blendshapes reach
it by name, bad ones counted and reported once; a bad host/token pair or a head without
a rig ends the node with one line; Ctrl-C ends it cleanly.

Needs the package built with its CMakeLists (``make test``); skips without ROS, or fails
under ``MOSHIFACE_REQUIRE_ROS=1``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ros_harness
from ros_harness import assert_clean_output, share_dir, start_node

ros_harness.require_ros_module()

import aiohttp  # noqa: E402
import rclpy  # noqa: E402

from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.messages.types import AudioChunk, BlendshapeWeights, DialogueText, FaceFrame  # noqa: E402
from moshiface_ros.msg import AudioChunk as AudioChunkMsg  # noqa: E402
from moshiface_ros.msg import BlendshapeWeights as BlendshapeWeightsMsg  # noqa: E402
from moshiface_ros.msg import DialogueText as DialogueTextMsg  # noqa: E402
from moshiface_ros.msg import FaceFrame as FaceFrameMsg  # noqa: E402
from moshiface_ros.nodes.qos import AUDIO_QOS, COMMAND_QOS, FACE_QOS, TEXT_QOS  # noqa: E402
from moshiface_ros.nodes.rclpy_messages import RclpyFactory  # noqa: E402
from moshiface_ros.server import protocol  # noqa: E402
from moshiface_ros.server.assets import THREE_MODULE, WEB_DIR_ENV  # noqa: E402
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE, ROBOT_TEXT  # noqa: E402
from test_server_harness import Conversation  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
READY = r"ready: serving the robot's face on (http://\S+)"


@pytest.fixture
def web_files(monkeypatch):
    """The installed page; three.js from the checkout when the ROS build copied only the
    tracked files (web/node_modules is installed by npm, not tracked)."""
    if not (share_dir() / "web" / THREE_MODULE).is_file():
        monkeypatch.setenv(WEB_DIR_ENV, str(REPO / "web"))


async def _watch(url: str, got: Conversation, connected: threading.Event, until: threading.Event) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(url, max_msg_size=0) as ws:
            connected.set()
            while not until.is_set():
                try:
                    msg = await ws.receive(timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if msg.type is aiohttp.WSMsgType.BINARY:
                    got.take(msg.data)


def _publish_step(node, stamp_ns: int, publishers: dict) -> None:
    factory = RclpyFactory()
    voice = np.linspace(-0.2, 0.2, 1920, dtype=np.float32)
    publishers["audio"].publish(convert.audio_chunk_to_msg(AudioChunk(stamp_ns, 24000, voice), factory))
    for k in range(2):
        frame = FaceFrame(stamp_ns + k * 40_000_000, np.full((5143, 3), 0.001 * (k + 1), np.float32))
        publishers["face"].publish(convert.face_frame_to_msg(frame, factory))
    publishers["text"].publish(convert.dialogue_text_to_msg(DialogueText(stamp_ns, 3, 9, "hey"), factory))


def test_topics_reach_the_page_at_their_stamps(tmp_path, web_files):
    with start_node("web_head", tmp_path, "-p", "port:=0") as process:
        process.wait_for(READY, 60)
        url = re.search(READY, process.text()).group(1).replace("http://", "ws://") + "ws"
        got, connected, until = Conversation(), threading.Event(), threading.Event()
        watcher = threading.Thread(target=lambda: asyncio.run(_watch(url, got, connected, until)))
        watcher.start()
        rclpy.init()
        node = rclpy.create_node("web_head_test_publisher")
        try:
            assert connected.wait(20)
            publishers = {"audio": node.create_publisher(AudioChunkMsg, ROBOT_AUDIO, AUDIO_QOS),
                          "face": node.create_publisher(FaceFrameMsg, ROBOT_FACE, FACE_QOS),
                          "text": node.create_publisher(DialogueTextMsg, ROBOT_TEXT, TEXT_QOS)}
            deadline = time.monotonic() + 20
            while min(p.get_subscription_count() for p in publishers.values()) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # the page's clock starts at its hello: stamp after it
            stamp = time.time_ns() + 200_000_000
            _publish_step(node, stamp, publishers)
            _publish_step(node, stamp + 80_000_000, publishers)
            deadline = time.monotonic() + 20
            while (len(got.audio) < 2 or len(got.faces) < 4) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            until.set()
            watcher.join()
            node.destroy_node()
            rclpy.try_shutdown()
        assert process.interrupt() == 0
    assert_clean_output(process.text(), "web_head")
    assert got.hello["display"] is True and got.hello["presentation_delay_ms"] == 300.0
    offsets = [offset for offset, _ in got.audio]
    assert len(offsets) == 2 and offsets[1] - offsets[0] == 80_000_000 and offsets[0] > 0
    assert [offset - offsets[0] for offset, _, _ in got.faces] == [0, 40_000_000, 80_000_000, 120_000_000]
    assert np.allclose(got.faces[1][2], 0.002) and got.texts[0] == (offsets[0], "hey")


def test_a_host_for_other_machines_needs_a_token(tmp_path, web_files):
    with start_node("web_head", tmp_path, "-p", "host:=0.0.0.0") as process:
        assert process.process.wait(60) != 0
    text = process.text()
    assert "host 0.0.0.0 lets other machines in: set a token as well" in text
    assert_clean_output(text, "web_head")


def _bad_weights(stamp_ns: int, names: list[str], weights: list[float]):
    """A BlendshapeWeights message as a broken publisher might send it (no checks)."""
    msg = BlendshapeWeightsMsg()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.names, msg.weights = names, weights
    return msg


def _publish_weights(publisher, stamp: int) -> None:
    """Good, unknown-name, NaN, wrong-count and good messages, 40 ms apart (25 fps)."""
    factory = RclpyFactory()
    messages = [convert.blendshape_weights_to_msg(BlendshapeWeights(stamp, ["jawOpen"], [0.0]), factory),
                _bad_weights(stamp + 40_000_000, ["jawOpen", "noSuchShape"], [0.5, 0.5]),
                _bad_weights(stamp + 80_000_000, ["jawOpen"], [float("nan")]),
                _bad_weights(stamp + 120_000_000, ["jawOpen", "eyeBlinkLeft"], [0.5]),
                convert.blendshape_weights_to_msg(
                    BlendshapeWeights(stamp + 160_000_000, ["eyeBlinkLeft", "jawOpen"], [0.25, 1.0]), factory)]
    for message in messages:
        publisher.publish(message)
        time.sleep(0.04)


def test_blendshapes_reach_the_page_by_name_at_their_stamps(tmp_path, web_files):
    raw: list[bytes] = []

    class Keep:  # every message as sent (blendshape frames are not face frames)
        take = staticmethod(raw.append)

    with start_node("web_head", tmp_path, "-p", "port:=0", "-p", "source:=blendshapes") as process:
        process.wait_for(READY, 90)
        url = re.search(READY, process.text()).group(1).replace("http://", "ws://") + "ws"
        connected, until = threading.Event(), threading.Event()
        watcher = threading.Thread(target=lambda: asyncio.run(_watch(url, Keep, connected, until)))
        watcher.start()
        rclpy.init()
        node = rclpy.create_node("web_head_test_weights")
        try:
            assert connected.wait(20)
            publisher = node.create_publisher(BlendshapeWeightsMsg, ROBOT_BLENDSHAPES, COMMAND_QOS)
            deadline = time.monotonic() + 20
            while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # the page's clock starts at its hello: stamp after it
            _publish_weights(publisher, time.time_ns() + 200_000_000)
            deadline = time.monotonic() + 20
            while sum(m[0] == protocol.Kind.BLENDSHAPES for m in raw) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.3)  # nothing more may come
        finally:
            until.set()
            watcher.join()
            node.destroy_node()
            rclpy.try_shutdown()
        assert process.interrupt() == 0
    text = process.text()
    assert_clean_output(text, "web_head")
    decoded = [protocol.decode_server(m) for m in raw]
    [hello] = [value for kind, value in decoded if kind is protocol.Kind.HELLO]
    frames = [value for kind, value in decoded if kind is protocol.Kind.BLENDSHAPES]
    names = hello["blendshapes"]
    assert len(names) == 52 and hello["vertices"] == 5143 and ROBOT_BLENDSHAPES in text
    assert [offset - frames[0][0] for offset, _ in frames] == [0, 40_000_000, 160_000_000] and frames[0][0] > 0
    by_name = [dict(zip(names, weights.tolist())) for _, weights in frames]
    assert [w["jawOpen"] for w in by_name] == [0.0, 0.5, 1.0] and by_name[2]["eyeBlinkLeft"] == 0.25
    assert sum(by_name[2].values()) == 1.25  # the names not sent are at rest
    # each bad message counted, each kind of problem said once
    assert text.count("dropping a bad message on /moshiface/robot/blendshapes") == 1
    assert text.count("unknown blendshape names noSuchShape") == 1
    assert f"bad messages seen: 2 on {ROBOT_BLENDSHAPES}, 1 on {ROBOT_BLENDSHAPES}:rig" in text


def test_a_head_without_a_rig_is_refused_in_one_line(tmp_path, web_files):
    head = share_dir() / "config" / "heads" / "servo_head.yaml"
    with start_node("web_head", tmp_path, "-p", "port:=0", "-p", "source:=blendshapes",
                    "-p", f"head_file:={head}") as process:
        assert process.process.wait(90) != 0
    text = process.text()
    assert "blendshapes.source is 'features': the page draws a head from its rig" in text
    assert_clean_output(text, "web_head")

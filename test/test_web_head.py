"""The web_head node under real ROS: the robot's face, voice and text published on their
topics reach a page connected to the node's WebSocket, stamped as offsets on the
page's clock; a bad host/token pair ends the node with one line; Ctrl-C ends it cleanly.

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

if ros_harness.missing_ros():
    if ros_harness.ros_required():
        pytest.fail(f"MOSHIFACE_REQUIRE_ROS=1 but {ros_harness.missing_ros()}", pytrace=False)
    pytest.skip(ros_harness.missing_ros(), allow_module_level=True)

import aiohttp  # noqa: E402
import rclpy  # noqa: E402

from moshiface_ros.messages import convert  # noqa: E402
from moshiface_ros.messages.types import AudioChunk, DialogueText, FaceFrame  # noqa: E402
from moshiface_ros.msg import AudioChunk as AudioChunkMsg  # noqa: E402
from moshiface_ros.msg import DialogueText as DialogueTextMsg  # noqa: E402
from moshiface_ros.msg import FaceFrame as FaceFrameMsg  # noqa: E402
from moshiface_ros.nodes.qos import AUDIO_QOS, FACE_QOS, TEXT_QOS  # noqa: E402
from moshiface_ros.nodes.rclpy_messages import RclpyFactory  # noqa: E402
from moshiface_ros.server.assets import THREE_MODULE, WEB_DIR_ENV  # noqa: E402
from moshiface_ros.topics import ROBOT_AUDIO, ROBOT_FACE, ROBOT_TEXT  # noqa: E402
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

"""The display server (the web_head node's core) without ROS: outputs pushed from another
thread reach every connected page, stamped as offsets from when that page connected."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import numpy as np
import pytest

from moshiface_ros.messages.types import AudioChunk, DialogueText, FaceFrame
from moshiface_ros.server.assets import web_dir
from moshiface_ros.server.display import FaceDisplay
from test_server_harness import Conversation

CLOCK_ORIGIN = 5_000_000_000


class FakeClock:
    """A robot clock the test sets (ROS time in the node)."""

    def __init__(self) -> None:
        self.now = CLOCK_ORIGIN

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def display():
    try:
        root = web_dir()
    except Exception as exc:  # the page or three.js is not installed
        pytest.skip(str(exc))
    clock = FakeClock()
    shown = FaceDisplay(root, clock, port=0, vertices=5143)
    shown.start()
    yield shown, clock
    shown.stop()


async def _watch(url: str, got: Conversation, connected: threading.Event, seconds: float) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(url, max_msg_size=0) as ws:
            connected.set()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if msg.type is aiohttp.WSMsgType.BINARY:
                    got.take(msg.data)


def test_pushed_outputs_reach_each_viewer_at_their_offsets(display):
    shown, clock = display
    url = shown.url.replace("http://", "ws://") + "ws"
    viewers = [Conversation(), Conversation()]
    connected = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=lambda i=i: asyncio.run(_watch(url, viewers[i], connected[i], 3.0)))
               for i in range(2)]
    for thread in threads:
        thread.start()
    assert all(event.wait(10) for event in connected)
    while shown.viewers < 2:
        time.sleep(0.01)
    stamp = CLOCK_ORIGIN + 80_000_000
    voice = np.linspace(-0.3, 0.3, 1920, dtype=np.float32)
    shown.push_audio(AudioChunk(CLOCK_ORIGIN - 80_000_000, 24000, voice))  # before the viewers came: not sent
    shown.push_audio(AudioChunk(stamp, 24000, voice))
    shown.push_face(FaceFrame(stamp, np.full((5143, 3), 0.002)))
    shown.push_text(DialogueText(stamp, 1, 5, "hi"))
    for thread in threads:
        thread.join()
    for got in viewers:
        assert got.hello["display"] is True and got.hello["vertices"] == 5143
        assert got.state_names == ["listening"]
        [(offset, samples)] = got.audio
        assert offset == 80_000_000 and np.array_equal(samples, voice)
        [(face_offset, present, vertices)] = got.faces
        assert face_offset == 80_000_000 and present and np.allclose(vertices, 0.002)
        assert got.texts == [(80_000_000, "hi")]
    assert shown.viewers == 0


def test_the_page_and_mesh_are_served(display):
    shown, _ = display

    async def fetch():
        async with aiohttp.ClientSession() as client:
            async with client.get(shown.url + "hello") as response:
                hello = await response.json()
            async with client.get(shown.url + "mesh") as response:
                mesh = await response.json()
        return hello, mesh

    hello, mesh = asyncio.run(fetch())
    assert hello["display"] is True and len(mesh["neutral"]) == 3 * 5143

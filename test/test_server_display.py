"""The display server (the web_head node's core) without ROS: outputs pushed from another
thread reach every connected page, stamped as offsets from when that page connected; a
head drawn by blendshapes is served as morph targets and its weights stream by name."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import AudioChunk, BlendshapeWeights, DialogueText, FaceFrame
from moshiface_ros.server import protocol
from moshiface_ros.server.assets import web_dir
from moshiface_ros.server.display import FaceDisplay
from moshiface_ros.server.mesh import rig_head
from test_server_harness import Conversation

CLOCK_ORIGIN = 5_000_000_000
HEADS = Path(__file__).resolve().parent.parent / "config" / "heads"


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
    deadline = time.monotonic() + 5  # the server notices the viewers left on its own loop
    while shown.viewers and time.monotonic() < deadline:
        time.sleep(0.01)
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


@pytest.fixture(scope="module")
def arkit_head():
    return rig_head(HEADS / "arkit_virtual_head.yaml", 5143)


@pytest.fixture
def rig_display(arkit_head):
    try:
        root = web_dir()
    except Exception as exc:  # the page or three.js is not installed
        pytest.skip(str(exc))
    clock = FakeClock()
    shown = FaceDisplay(root, clock, port=0, vertices=5143, morphs=arkit_head)
    shown.start()
    yield shown, clock
    shown.stop()


class Raw:
    """Every binary message a viewer got, decoded (blendshape frames included)."""

    def __init__(self) -> None:
        self.messages: list[tuple[protocol.Kind, object]] = []

    def take(self, data: bytes) -> None:
        self.messages.append(protocol.decode_server(data))

    def of(self, kind: protocol.Kind) -> list:
        return [value for k, value in self.messages if k is kind]


def test_the_shipped_arkit_head_becomes_52_morph_targets_on_the_synthetic_mesh(arkit_head):
    mesh = arkit_head.mesh
    assert arkit_head.vertices == 5143 and len(arkit_head.names) == 52 and "jawOpen" in arkit_head.names
    assert mesh["morph_names"] == arkit_head.names and len(mesh["neutral"]) == 3 * 5143
    assert len(arkit_head.morph_bytes()) == 52 * 5143 * 3 * 4
    jaw = arkit_head.deltas[arkit_head.names.index("jawOpen")]
    mouth = np.asarray(mesh["mouth"])
    # jawOpen moves the lips, and moves them more than the rest of the face on average
    assert np.linalg.norm(jaw[mouth], axis=1).mean() > 2 * np.linalg.norm(jaw, axis=1).mean() > 0


def test_weights_are_put_in_the_rigs_order_by_name_and_bad_ones_reported(arkit_head):
    names = arkit_head.names
    ordered, problem = arkit_head.order(["jawOpen", "eyeBlinkLeft"], np.array([0.7, 0.2]))
    assert problem is None and ordered.shape == (52,) and ordered.dtype == np.float32
    jaw, blink = names.index("jawOpen"), names.index("eyeBlinkLeft")
    assert ordered[jaw] == np.float32(0.7) and ordered[blink] == np.float32(0.2)
    assert np.count_nonzero(ordered) == 2
    ordered, problem = arkit_head.order(["jawOpen", "tongueWaggle"], np.array([0.5, 1.0]))
    assert "unknown blendshape names tongueWaggle" in problem and ordered[names.index("jawOpen")] == 0.5
    assert np.count_nonzero(ordered) == 1
    assert arkit_head.order(["jawOpen"], np.array([np.nan])) == (None, "NaN or infinite weights")
    assert arkit_head.order(["jawOpen", "eyeBlinkLeft"], np.array([0.5])) == (None, "2 names but 1 weights")
    ordered, problem = arkit_head.order(["jawOpen"], np.array([1.5]))
    assert "outside [0, 1]" in problem and ordered[names.index("jawOpen")] == 1.0


def test_a_head_without_a_rig_cannot_be_drawn_from_its_weights():
    with pytest.raises(MoshifaceError) as caught:
        rig_head(HEADS / "servo_head.yaml", 5143)
    assert "blendshapes.source is 'features'" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(MoshifaceError, match="does not exist"):
        rig_head(HEADS / "no_such_head.yaml", 5143)


def test_blendshape_weights_reach_the_viewer_by_name_at_their_offsets(rig_display, arkit_head):
    shown, clock = rig_display
    url = shown.url.replace("http://", "ws://") + "ws"
    got, connected = Raw(), threading.Event()
    viewer = threading.Thread(target=lambda: asyncio.run(_watch(url, got, connected, 3.0)))
    viewer.start()
    assert connected.wait(10)
    while shown.viewers < 1:
        time.sleep(0.01)
    stamp = CLOCK_ORIGIN + 40_000_000
    assert shown.push_blendshapes(BlendshapeWeights(stamp, ["jawOpen"], [0.0])) is None
    assert shown.push_blendshapes(BlendshapeWeights(stamp + 40_000_000, ["eyeBlinkLeft", "jawOpen"], [0.3, 1.0])) \
        is None
    bad = [BlendshapeWeights(stamp + 80_000_000, ["jawOpen", "noSuchShape"], [0.5, 0.5]),  # sent, minus the name
           BlendshapeWeights(stamp + 120_000_000, ["jawOpen"], [np.nan]),  # dropped
           BlendshapeWeights(stamp + 160_000_000, ["jawOpen", "eyeBlinkLeft"], [0.5])]  # dropped
    problems = [shown.push_blendshapes(frame) for frame in bad]
    viewer.join()
    assert all(problems) and shown.bad_blendshapes == 3
    hello = got.of(protocol.Kind.HELLO)[0]
    assert hello["blendshapes"] == arkit_head.names and hello["vertices"] == 5143
    frames = got.of(protocol.Kind.BLENDSHAPES)
    assert [offset for offset, _ in frames] == [40_000_000, 80_000_000, 120_000_000]
    jaw, blink = arkit_head.names.index("jawOpen"), arkit_head.names.index("eyeBlinkLeft")
    assert [float(w[jaw]) for _, w in frames] == [0.0, 1.0, 0.5]
    assert np.isclose(frames[1][1][blink], 0.3) and all(w.shape == (52,) for _, w in frames)


def test_the_rigs_morph_targets_are_served(rig_display, arkit_head):
    shown, _ = rig_display

    async def fetch():
        async with aiohttp.ClientSession() as client:
            async with client.get(shown.url + "mesh") as response:
                mesh = await response.json()
            async with client.get(shown.url + "morphs") as response:
                morphs = await response.read()
        return mesh, morphs

    mesh, morphs = asyncio.run(fetch())
    assert mesh["morph_names"] == arkit_head.names
    assert np.array_equal(np.frombuffer(morphs, "<f4").reshape(52, 5143, 3), arkit_head.deltas)


def test_a_display_of_face_frames_has_no_morphs(display):
    shown, _ = display

    async def fetch():
        async with aiohttp.ClientSession() as client:
            async with client.get(shown.url + "morphs") as response:
                return response.status

    assert asyncio.run(fetch()) == 404 and shown.hello()["blendshapes"] is None
    with pytest.raises(MoshifaceError, match="give it a head"):
        shown.push_blendshapes(BlendshapeWeights(CLOCK_ORIGIN, ["jawOpen"], [0.5]))

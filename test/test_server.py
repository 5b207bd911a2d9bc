"""``moshiface serve`` for real: its own process on loopback, spoken to over a WebSocket.

One server runs for the module (the tiny model); each test is one or more conversations
with it and reads back what the client received and what the session left in ``--out``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from moshiface_ros.constants import FACE_FRAME_NS, FRAME_SIZE, PRESENTATION_DELAY_MS, SAMPLE_RATE, STEP_NS
from moshiface_ros.server import protocol
from test_server_harness import ServerProcess, serve_for_module, session_dirs, speech_messages, talk


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory.mktemp("serve"))


def _new_dirs(server: ServerProcess, before: list[Path]) -> list[Path]:
    return [path for path in session_dirs(server.out) if path not in before]


def _finished(out: Path, read_session) -> dict:
    """The session in ``out`` once the server has finished it (the client may see the
    socket close before the server has closed the files)."""
    for _ in range(200):
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        if summary.get("complete"):
            return read_session(out)
        asyncio.run(asyncio.sleep(0.05))
    raise AssertionError(f"{out} was never finished")


def _converse(server: ServerProcess, messages: list[bytes], **kwargs):
    before = session_dirs(server.out)
    got = asyncio.run(talk(server.ws_url, messages, **kwargs))
    return got, _new_dirs(server, before)


def test_a_conversation_streams_voice_text_and_face_at_step_offsets(server, read_session):
    got, dirs = _converse(server, speech_messages(2.0, rate=16000, seed=3))
    assert got.hello["sample_rate"] == SAMPLE_RATE and got.hello["presentation_delay_ms"] == PRESENTATION_DELAY_MS
    assert got.hello["vertices"] == 5143
    assert got.state_names == ["listening", "ended"]
    steps = -(-2.0 * SAMPLE_RATE // FRAME_SIZE)  # the last partial step is padded
    assert [offset for offset, _ in got.audio] == [i * STEP_NS for i in range(int(steps))]
    assert all(len(samples) == FRAME_SIZE for _, samples in got.audio)
    assert [offset for offset, _, _ in got.faces] == [i * FACE_FRAME_NS for i in range(2 * int(steps))]
    assert all(vertices.shape == (5143, 3) for _, _, vertices in got.faces)
    assert got.texts and all(offset % STEP_NS == 0 for offset, _ in got.texts)
    [out] = dirs
    session = read_session(out)
    assert session["summary"]["complete"] and session["summary"]["steps"] == steps
    assert session["summary"]["user_sample_rate"] == 16000 and "stopped_by_error" not in session["summary"]
    user = np.concatenate([np.asarray(m.samples) for _, _, m in session["bag"]["/moshiface/user/audio"]])
    assert np.sqrt(np.mean(user ** 2)) > 0.01  # the user's voice reached the bag
    robot = np.concatenate([samples for _, samples in got.audio])
    assert np.allclose(session["robot"][: len(robot)], robot, atol=1e-6)  # what was sent is what was kept


def test_the_mesh_and_page_are_served(server):
    async def fetch():
        async with aiohttp.ClientSession() as client:
            async with client.get(server.url + "mesh") as response:
                mesh = await response.json()
            async with client.get(server.url) as response:
                page = await response.text()
            async with client.get(server.url + "vendor/three/three.module.js") as response:
                three = response.status
        return mesh, page, three

    mesh, page, three = asyncio.run(fetch())
    assert len(mesh["neutral"]) == 3 * 5143 and len(mesh["faces"]) % 3 == 0 and mesh["mouth"]
    assert max(mesh["faces"]) < 5143
    assert "/static/app.js" in page and three == 200


def test_a_second_visitor_is_told_the_server_is_busy(server):
    async def both():
        first = asyncio.create_task(talk(server.ws_url, speech_messages(1.5), pace_s=0.08))
        await asyncio.sleep(1.0)
        second = await talk(server.ws_url, [], end=False, linger_s=10)
        return await first, second

    first, second = asyncio.run(both())
    assert second.state_names == ["busy"] and second.hello is None and not second.audio
    assert first.state_names == ["listening", "ended"] and len(first.audio) == 19
    assert server.alive()


BAD_INPUTS = [
    (b"\x55garbage", "unknown message kind 0x55"),
    (protocol.encode_audio(1000, np.zeros(100)), "sample rate 1000 Hz is outside"),
    (protocol.encode_audio(48000, np.zeros(100)), "the microphone's rate changed from 24000 Hz to 48000 Hz"),
    (bytes([protocol.Kind.AUDIO]) + b"\x00" * (protocol.MAX_MESSAGE_BYTES + 100), "message too big"),
]


@pytest.mark.parametrize("bad, reason", BAD_INPUTS)
def test_bad_input_ends_that_session_cleanly_and_the_server_serves_on(server, read_session, bad, reason):
    got, dirs = _converse(server, speech_messages(0.5) + [bad] + speech_messages(0.5))
    assert got.state_names[0] == "listening" and len(got.audio) >= 5
    [out] = dirs  # the steps made before the bad message are kept, finished
    summary = _finished(out, read_session)["summary"]
    assert summary["complete"] and summary["steps"] == len(got.audio)
    assert reason.lower() in summary["stopped_by_error"].lower()
    lines = [line for line in server.logged().splitlines() if reason.lower() in line.lower()]
    assert len(lines) == 1 and "ended after" in lines[0]
    if "too big" not in reason:  # a too-big frame closes the socket at the WebSocket layer
        assert got.states[-1]["state"] == "error" and reason in got.states[-1]["message"]
    again, _ = _converse(server, speech_messages(0.3))
    assert again.state_names == ["listening", "ended"] and len(again.audio) == 4


def test_garbage_before_any_audio_leaves_nothing(server):
    got, dirs = _converse(server, [b"\x02\x01"])
    assert got.state_names == ["listening", "error"] and "too short" in got.states[-1]["message"]
    assert dirs == []


def test_text_frames_are_refused(server):
    async def text():
        async with aiohttp.ClientSession() as client:
            async with client.ws_connect(server.ws_url) as ws:
                await ws.send_str(json.dumps({"hello": 1}))
                return [protocol.decode_server(m.data)[1] async for m in ws if m.type is aiohttp.WSMsgType.BINARY]

    states = [v for v in asyncio.run(text()) if isinstance(v, dict) and "state" in v]
    assert states[-1] == {"state": "error", "message": "text frames are not part of the protocol"}


def test_a_client_that_vanishes_mid_session_leaves_a_finished_session(server, read_session):
    got, dirs = _converse(server, speech_messages(1.0), end=False, linger_s=0.5)
    [out] = dirs
    summary = _finished(out, read_session)["summary"]  # the server notices the close and finishes it
    assert summary["complete"] and summary["stopped_by_error"] == "the client disconnected"
    assert summary["steps"] >= 12
    assert server.alive()


def _face_jpeg() -> bytes:
    """A real face photo (skimage's astronaut), as a webcam would send it."""
    import cv2
    from skimage import data

    rgb = cv2.resize(data.astronaut(), (320, 320))
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_webcam_frames_reach_the_model_and_the_bag(server, read_session):
    video = bytes([protocol.Kind.VIDEO]) + _face_jpeg()
    # the first frame builds the tracker (seconds); a session ends only once it is tracked
    warm_up, _ = _converse(server, speech_messages(0.2) + [video], linger_s=120)
    assert warm_up.state_names == ["listening", "ended"]
    speech = speech_messages(4.0, seed=5)
    messages = [m for chunk in speech for m in (chunk, video, video)]  # 25 fps, as the page sends
    got, dirs = _converse(server, messages, pace_s=0.08 / 3, linger_s=30)
    assert got.state_names == ["listening", "ended"]
    [out] = dirs
    session = read_session(out)
    faces = [m for _, _, m in session["bag"]["/moshiface/user/face"]]
    assert faces and all(m.face_present for m in faces)  # tracked: the photo has a face
    assert session["summary"]["face"]["user_steps_with_face"] > 0
    assert len(session["bag"]["/moshiface/user/face_tokens"]) > 0


def test_a_webcam_frame_that_is_not_a_jpeg_ends_the_session(server):
    got, _ = _converse(server, speech_messages(0.3) + [bytes([protocol.Kind.VIDEO]) + b"GIF89a"]
                       + speech_messages(0.5))
    assert got.states[-1] == {"state": "error", "message": "VIDEO frame is not a JPEG (no start-of-image marker)"}

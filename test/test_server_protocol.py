"""The browser protocol's messages: round trips, and one clear line for each bad one."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from moshiface_ros.server import protocol
from moshiface_ros.server.app import ServeConfig
from moshiface_ros.server.pages import is_loopback
from moshiface_ros.server.bridge import step_messages
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import AudioChunk, DialogueText, FaceFrame
from moshiface_ros.speech.session import SessionOptions
from moshiface_ros.speech.stepper import StepRecord


def test_audio_round_trips_at_its_rate():
    samples = np.sin(np.linspace(0, 40, 3840)).astype(np.float32) * 0.5
    message = protocol.decode_client(protocol.encode_audio(48000, samples))
    assert isinstance(message, protocol.ClientAudio)
    assert message.sample_rate == 48000
    assert message.samples.dtype == np.float32 and len(message.samples) == 3840
    assert np.abs(message.samples - samples).max() < 1.0 / 16384


def test_end_and_video_decode():
    assert isinstance(protocol.decode_client(bytes([protocol.Kind.END])), protocol.ClientEnd)
    video = protocol.decode_client(bytes([protocol.Kind.VIDEO]) + b"\xff\xd8jpeg")
    assert isinstance(video, protocol.ClientVideo) and video.jpeg == b"\xff\xd8jpeg"


def _audio(rate: int, frames: int) -> bytes:
    return bytes([protocol.Kind.AUDIO]) + struct.pack("<I", rate) + b"\x00\x00" * frames


@pytest.mark.parametrize("data, words", [
    (b"", "empty message"),
    (b"\x7f", "unknown message kind 0x7f"),
    (bytes([protocol.Kind.ROBOT_AUDIO]) + b"\x00" * 8, "not one a client sends"),
    (bytes([protocol.Kind.AUDIO, 1, 2]), "too short"),
    (_audio(1000, 10), "sample rate 1000 Hz is outside"),
    (_audio(300_000, 10), "sample rate 300000 Hz is outside"),
    (_audio(16000, 16001), "over the 1 s limit"),
    (_audio(16000, 10) + b"\x01", "odd count"),
    (bytes([protocol.Kind.END, 0]), "END carries no data"),
    (bytes([protocol.Kind.VIDEO]), "VIDEO frame of 0 bytes"),
    (b"\x02" + b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1), "over the limit"),
])
def test_each_bad_message_is_one_line_naming_it(data, words):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_client(data)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_step_becomes_voice_text_and_face_at_the_steps_offset():
    start = 1_000_000_000
    stamp = start + 160_000_000
    robot = np.linspace(-0.5, 0.5, 1920, dtype=np.float32)
    face = [FaceFrame(stamp, np.full((4, 3), 0.001)), FaceFrame(stamp + 40_000_000, np.full((4, 3), 0.002),
                                                                  face_present=False)]
    record = StepRecord(user=AudioChunk(stamp, 24000, np.zeros(1920)), robot=AudioChunk(stamp, 24000, robot),
                        text=DialogueText(stamp, 2, 7, "hello"), model_seconds=0.01, robot_face=face)
    decoded = [protocol.decode_server(m) for m in step_messages(record, start)]
    kinds = [kind for kind, _ in decoded]
    assert kinds == [protocol.Kind.ROBOT_AUDIO, protocol.Kind.TEXT, protocol.Kind.FACE, protocol.Kind.FACE]
    assert decoded[0][1][0] == 160_000_000 and np.array_equal(decoded[0][1][1], robot)
    assert decoded[1][1] == (160_000_000, "hello")
    offset, present, vertices = decoded[3][1]
    assert offset == 200_000_000 and present is False and vertices.shape == (4, 3)
    assert np.allclose(decoded[2][1][2], 0.001)


def test_state_and_hello_are_json():
    kind, value = protocol.decode_server(protocol.encode_state("busy", "try later"))
    assert kind is protocol.Kind.STATE and value == {"state": "busy", "message": "try later"}


def test_only_loopback_may_go_without_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback(None)
    with pytest.raises(MoshifaceError, match="--host 0.0.0.0 lets other machines in: give --token"):
        ServeConfig(session=SessionOptions(), host="0.0.0.0")
    assert ServeConfig(session=SessionOptions(), host="0.0.0.0", token="s3cret").token == "s3cret"
    with pytest.raises(MoshifaceError, match="--port must be"):
        ServeConfig(session=SessionOptions(), port=70000)


def _jpeg(width: int, height: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 120, np.uint8))
    assert ok
    return data.tobytes()


def test_webcam_frames_are_size_checked_before_decoding():
    from moshiface_ros.server.webcam import decode_jpeg, jpeg_size

    assert jpeg_size(_jpeg(320, 240)) == (320, 240)
    assert decode_jpeg(_jpeg(64, 48)).shape == (48, 64, 3)
    with pytest.raises(protocol.ProtocolError, match="not a JPEG"):
        decode_jpeg(b"GIF89a....")
    huge = bytearray(_jpeg(16, 16))
    at = next(i for i in range(2, len(huge) - 1) if huge[i] == 0xFF and huge[i + 1] == 0xC0)
    huge[at + 5:at + 9] = struct.pack(">HH", 40000, 40000)  # claims 40,000 x 40,000 pixels
    with pytest.raises(protocol.ProtocolError, match="40000 x 40000 pixels: at most 1920"):
        decode_jpeg(bytes(huge))
    with pytest.raises(protocol.ProtocolError, match="without a frame header"):
        decode_jpeg(b"\xff\xd8\xff\xe0\x00\x04ab")


@pytest.mark.parametrize("peer, query, allowed", [
    ("127.0.0.1", "", True), ("::1", "", True),
    ("192.168.1.20", "", False), ("192.168.1.20", "token=wrong", False), ("192.168.1.20", "token=s3cret", True),
])
def test_other_machines_need_the_token(peer, query, allowed, tmp_path):
    import asyncio
    from unittest import mock

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from moshiface_ros.server.pages import PageSite

    site = PageSite(tmp_path, None, "s3cret", dict)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 5000) if name == "peername" else default
    request = make_mocked_request("GET", f"/?{query}", transport=transport)

    async def handler(request):
        return web.Response(text="ok")

    async def call():
        return await site._access(request, handler)

    if allowed:
        assert asyncio.run(call()).text == "ok"
    else:
        with pytest.raises(web.HTTPForbidden):
            asyncio.run(call())


def test_blendshape_weights_travel_as_one_stamp_and_k_floats():
    """A blendshape frame is its offset and the weights in the mesh's morph order; the
    kinds that were there before keep their bytes."""
    weights = np.array([0.0, 0.25, 1.0], np.float32)
    message = protocol.encode_blendshapes(40_000_000, weights)
    assert message == b"\x14" + struct.pack("<q", 40_000_000) + struct.pack("<3f", 0.0, 0.25, 1.0)
    kind, (offset, decoded) = protocol.decode_server(message)
    assert kind is protocol.Kind.BLENDSHAPES and offset == 40_000_000 and np.array_equal(decoded, weights)
    assert protocol.encode_face(7, np.zeros((1, 3)), False) == b"\x12" + struct.pack("<q", 7) + b"\x00" + b"\x00" * 12
    assert protocol.encode_text(7, "a") == b"\x11" + struct.pack("<q", 7) + b"a"
    assert [k.value for k in protocol.Kind if k is not protocol.Kind.BLENDSHAPES] == [1, 2, 3, 4, 0x10, 0x11, 0x12,
                                                                                       0x13]
    with pytest.raises(protocol.ProtocolError, match="not one a client sends"):
        protocol.decode_client(message)

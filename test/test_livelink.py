"""Live Link Face packets, checked with a parser written here from the byte layout in
Unreal's ARKit Live Link source and the Live Link Face app's packets (version 6), not
with the module's own decoder, and sent through a real UDP socket."""

import socket
import struct
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from moshiface_ros.retarget.arkit import ARKIT_52, LIVELINK_ROTATIONS
from moshiface_ros.retarget.livelink import (
    DEFAULT_PORT,
    LiveLinkSchedule,
    LiveLinkSender,
    decode_packet,
    encode_packet,
    frame_time,
    make_frame,
)


def parse(packet: bytes) -> dict:
    """Independent reading: version byte, two big-endian length-prefixed strings (device
    id, subject), frame time (int32 frame, float32 sub-frame, int32 rate num/den), a count
    byte and that many big-endian float32."""
    pos = 0
    version = packet[pos]
    pos += 1
    strings = []
    for _ in range(2):
        n = int.from_bytes(packet[pos:pos + 4], "big", signed=True)
        pos += 4
        strings.append(packet[pos:pos + n].decode())
        pos += n
    frame, sub, num, den = struct.unpack("!ifii", packet[pos:pos + 16])
    pos += 16
    count = packet[pos]
    pos += 1
    values = list(struct.unpack(f"!{count}f", packet[pos:pos + 4 * count]))
    pos += 4 * count
    assert pos == len(packet), "bytes left over"
    return {"version": version, "device": strings[0], "subject": strings[1], "frame": frame, "sub": sub,
            "rate": (num, den), "count": count, "values": values}


def test_layout_decodes_with_an_independent_parser():
    weights = {"jawOpen": 0.75, "eyeBlinkLeft": 1.0, "mouthsmileright": 0.25, "notARKit": 0.9,
               "browInnerUp": 1.7, "cheekPuff": -0.2}
    stamp = 12 * 10**9 + 20_000_000  # 12.02 s: frame 300 at 25 fps, half a frame in
    frame = make_frame(stamp, weights, head=(0.1, -0.2, 0.05), eyes=(0.3, 0.0, 0.0, -0.3, 0.1, 0.0),
                       subject="RobotFace", device_id="head-7")
    packet = encode_packet(frame)
    got = parse(packet)
    assert got["version"] == 6 and got["device"] == "head-7" and got["subject"] == "RobotFace"
    assert (got["frame"], got["sub"], got["rate"]) == (300, pytest.approx(0.5), (25, 1))
    assert got["count"] == 61 == len(ARKIT_52) + len(LIVELINK_ROTATIONS)
    assert len(packet) == 270 + len("head-7") + len("RobotFace")
    values = dict(zip(list(ARKIT_52) + list(LIVELINK_ROTATIONS), got["values"]))
    assert values["jawOpen"] == 0.75 and values["eyeBlinkLeft"] == 1.0
    assert values["mouthSmileRight"] == 0.25  # names match case-insensitively
    assert values["browInnerUp"] == 1.0 and values["cheekPuff"] == 0.0  # clamped to [0, 1]
    assert sum(v != 0 for v in got["values"][:52]) == 4  # unknown names are dropped
    assert values["headYaw"] == pytest.approx(0.1) and values["headPitch"] == pytest.approx(-0.2)
    assert values["leftEyeYaw"] == pytest.approx(0.3) and values["rightEyePitch"] == pytest.approx(0.1)
    # the big-endian order is visible in the bytes: jawOpen (index 17) = 0.75 = 0x3F400000
    start = 1 + 4 + 6 + 4 + 9 + 16 + 1
    assert packet[start + 17 * 4: start + 18 * 4] == b"\x3f\x40\x00\x00"


def test_module_decoder_round_trips_and_rejects_broken_packets():
    frame = make_frame(10**9, {"jawOpen": 0.5}, head=(0.2, 0.0, 0.0))
    packet = encode_packet(frame)
    back = decode_packet(packet)
    assert back.subject == frame.subject and back.frame_number == 25 and back.weights["jawOpen"] == 0.5
    assert back.rotations["headYaw"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="truncated"):
        decode_packet(packet[:-3])
    with pytest.raises(ValueError, match="version"):
        decode_packet(b"\x05" + packet[1:])
    with pytest.raises(ValueError, match="after its values"):
        decode_packet(packet + b"\x00")


def test_non_finite_values_never_reach_the_wire():
    frame = make_frame(0, {"jawOpen": float("nan"), "eyeBlinkLeft": float("inf")}, head=(float("nan"), 0.0, 0.0))
    values = parse(encode_packet(frame))["values"]
    assert np.isfinite(values).all() and values[17] == 0.0 and values[52] == 0.0


def test_frame_time_is_the_stamp_at_25_fps():
    assert frame_time(0) == (0, 0.0)
    assert frame_time(40_000_000) == (1, 0.0)
    assert frame_time(50_000_000) == (1, 0.25)


def test_wall_clock_stamps_give_the_time_of_day_and_fit_the_packet():
    """A live node stamps frames with the wall clock (~1.7e18 ns): counted from 1970 at 25 fps
    that is ~4.4e10 frames, beyond the packet's int32. The frame number is the stamp's time
    of day (UTC), as a timecode, and packets of real stamps encode and parse."""
    stamps = [time.time_ns() + k * 40_000_000 for k in range(5)]
    stamps.append(int(datetime(2030, 1, 1, 23, 59, 59, 990_000, tzinfo=timezone.utc).timestamp()) * 10**9 + 990_000_000)
    for stamp in stamps:
        got = parse(encode_packet(make_frame(stamp, {"jawOpen": 0.5})))
        seconds_of_day = (stamp // 10**9) % 86400 + (stamp % 10**9) / 1e9
        assert got["frame"] == int(seconds_of_day * 25 + 1e-9) and 0 <= got["frame"] < 86400 * 25
        assert got["sub"] == pytest.approx(seconds_of_day * 25 - got["frame"], abs=1e-6)
    numbers = [frame_time(s)[0] for s in stamps[:5]]
    assert all(b - a == 1 for a, b in zip(numbers, numbers[1:])) or 0 in numbers  # consecutive (or midnight)


def test_schedule_hands_out_the_newest_due_frame():
    schedule = LiveLinkSchedule(delay_ms=300.0, latency_ms=100.0)
    base = time.time_ns()
    frames = [make_frame(base + k * 40_000_000, {"jawOpen": k / 10}) for k in range(4)]
    for k, frame in enumerate(frames):
        schedule.push(base + k * 40_000_000, frame)
    assert schedule.due(base + 199_000_000) is None  # first due at stamp + 300 - 100 ms
    assert schedule.due(base + 200_000_000 + 40_000_000) is frames[1]  # frames 0 and 1 due: only the newest
    assert schedule.pending() == 2 and schedule.due(base + 10**9) is frames[3] and schedule.pending() == 0
    schedule.latency_ms = 0.0  # a new latency applies to the frames pushed after it
    schedule.push(base, frames[0])
    assert schedule.due(base + 299_000_000) is None and schedule.due(base + 300_000_000) is frames[0]


def test_packets_travel_over_udp():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    try:
        with LiveLinkSender("127.0.0.1", receiver.getsockname()[1]) as sender:
            for i in range(3):
                sender.send(make_frame(i * 40_000_000, {"jawOpen": i / 4}))
        got = [parse(receiver.recvfrom(2048)[0]) for _ in range(3)]
    finally:
        receiver.close()
    assert [g["frame"] for g in got] == [0, 1, 2]
    assert [g["values"][17] for g in got] == [0.0, 0.25, 0.5]
    assert DEFAULT_PORT == 11111

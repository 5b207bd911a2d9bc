"""Unreal Live Link Face packets: drive a virtual (MetaHuman or any ARKit) head over UDP.

Unreal's Live Link plugin has an "Apple ARKit face" source (the receiver of Epic's Live
Link Face iPhone app) that listens on UDP port 11111. We send it what the app sends, so
no Unreal plugin or Blueprint change is needed: one datagram per face frame, with the
52 ARKit blendshape weights and the head and eye rotations.

Byte layout of one packet (packet version 6), all multi-byte fields big-endian::

    offset      size  type      field
    0           1     uint8     packet version (6)
    1           4     int32     device id length N (bytes)
    5           N     UTF-8     device id (identifies the sender; Unreal keys sources by it)
    5+N         4     int32     subject name length M (bytes)
    9+N         M     UTF-8     subject name (the Live Link subject shown in Unreal)
    9+N+M       4     int32     frame number  \\
    13+N+M      4     float32   sub-frame      | Unreal's FQualifiedFrameTime: the frame's
    17+N+M      4     int32     rate numerator | time as frame number + fraction at
    21+N+M      4     int32     rate denominator/ numerator/denominator frames per second
    25+N+M      1     uint8     value count (61)
    26+N+M      244   float32 x 61: the 52 weights in ``arkit.ARKIT_52`` order (0..1),
                                then headYaw, headPitch, headRoll, leftEyeYaw,
                                leftEyePitch, leftEyeRoll, rightEyeYaw, rightEyePitch,
                                rightEyeRoll (radians)

A packet is therefore 270 + N + M bytes. The frame time is the face frame's stamp as a
timecode of its day (UTC) at 25 fps: frame = floor(seconds since midnight * 25), sub-frame
= the remainder, as the Live Link Face app sends its timecode. Unreal's timecode
buffering so sees the same clock as the rest of the system, and the frame number stays
within the packet's int32 (at most 2,160,000; a wall-clock stamp counted from 1970 would
need 4.4e10).

``LiveLinkSchedule`` holds frames until their send time (``stamp + presentation delay -
latency``) and hands out only the newest due one, since Unreal shows the latest packet.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..constants import FACE_FPS, NS_PER_S, PRESENTATION_DELAY_MS
from ..timing import presentation_ns
from .arkit import ARKIT_52, LIVELINK_ROTATIONS

PACKET_VERSION = 6
DEFAULT_PORT = 11111
VALUE_COUNT = len(ARKIT_52) + len(LIVELINK_ROTATIONS)  # 61
DAY_NS = 86_400 * NS_PER_S
INT32_MAX = 2**31 - 1


@dataclass
class LiveLinkFrame:
    """One Live Link Face packet's content."""

    subject: str
    device_id: str
    frame_number: int
    sub_frame: float
    rate: tuple[int, int] = (FACE_FPS, 1)
    values: np.ndarray = field(default_factory=lambda: np.zeros(VALUE_COUNT, np.float32))

    @property
    def weights(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(ARKIT_52, self.values[: len(ARKIT_52)])}

    @property
    def rotations(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(LIVELINK_ROTATIONS, self.values[len(ARKIT_52):])}


def frame_time(stamp_ns: int, fps: int = FACE_FPS) -> tuple[int, float]:
    """(frame number, sub-frame) of a stamp's time of day (UTC) at ``fps`` frames per second."""
    frames, remainder = divmod(int(stamp_ns) % DAY_NS * fps, NS_PER_S)
    return int(frames), remainder / NS_PER_S


def make_frame(stamp_ns: int, weights: dict[str, float], head: tuple[float, float, float] = (0.0, 0.0, 0.0),
               eyes: tuple[float, ...] = (0.0,) * 6, subject: str = "MoshiFace",
               device_id: str = "moshiface_ros", fps: int = FACE_FPS) -> LiveLinkFrame:
    """A frame from named weights (names matched to ARKit's case-insensitively; missing
    ones are 0; values clamped to [0, 1]) and head/eye rotations in radians."""
    lookup = {name.lower(): float(v) for name, v in weights.items()}
    values = np.zeros(VALUE_COUNT, np.float32)
    for i, name in enumerate(ARKIT_52):
        value = lookup.get(name.lower(), 0.0)
        values[i] = np.clip(value, 0.0, 1.0) if np.isfinite(value) else 0.0
    rotations = np.asarray(list(head) + list(eyes), np.float64)
    values[len(ARKIT_52):] = np.where(np.isfinite(rotations), rotations, 0.0)
    number, sub = frame_time(stamp_ns, fps)
    return LiveLinkFrame(subject, device_id, number, sub, (fps, 1), values)


def encode_packet(frame: LiveLinkFrame) -> bytes:
    """The UDP payload for ``frame`` (layout in the module docstring)."""
    device = frame.device_id.encode("utf-8")
    subject = frame.subject.encode("utf-8")
    values = np.asarray(frame.values, np.float32).reshape(-1)
    if values.size != VALUE_COUNT:
        raise ValueError(f"a Live Link Face frame has {VALUE_COUNT} values, got {values.size}")
    if not 0 <= frame.frame_number <= INT32_MAX:
        raise ValueError(f"a Live Link frame number is an int32, got {frame.frame_number}")
    return b"".join([
        struct.pack(">B", PACKET_VERSION),
        struct.pack(">i", len(device)), device,
        struct.pack(">i", len(subject)), subject,
        struct.pack(">ifii", frame.frame_number, frame.sub_frame, frame.rate[0], frame.rate[1]),
        struct.pack(">B", VALUE_COUNT),
        values.astype(">f4").tobytes(),
    ])


def decode_packet(data: bytes) -> LiveLinkFrame:
    """Parses one packet; ValueError (saying what is wrong) for anything else."""
    view = memoryview(data)
    offset = 0

    def take(size: int, what: str) -> memoryview:
        nonlocal offset
        if offset + size > len(view):
            raise ValueError(f"Live Link packet truncated in {what} (needs {offset + size} bytes, has {len(view)})")
        chunk = view[offset: offset + size]
        offset += size
        return chunk

    (version,) = struct.unpack(">B", take(1, "version"))
    if version != PACKET_VERSION:
        raise ValueError(f"Live Link packet version {version}, expected {PACKET_VERSION}")
    strings = []
    for what in ("device id", "subject name"):
        (length,) = struct.unpack(">i", take(4, f"{what} length"))
        if length < 0:
            raise ValueError(f"Live Link packet has a negative {what} length")
        strings.append(bytes(take(length, what)).decode("utf-8"))
    number, sub, numerator, denominator = struct.unpack(">ifii", take(16, "frame time"))
    (count,) = struct.unpack(">B", take(1, "value count"))
    if count != VALUE_COUNT:
        raise ValueError(f"Live Link packet has {count} values, expected {VALUE_COUNT}")
    values = np.frombuffer(bytes(take(4 * count, "values")), ">f4").astype(np.float32)
    if offset != len(view):
        raise ValueError(f"Live Link packet has {len(view) - offset} bytes after its values")
    return LiveLinkFrame(strings[1], strings[0], number, sub, (numerator, denominator), values)


class LiveLinkSender:
    """Sends frames as UDP datagrams to Unreal (default port 11111)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        self.address = (host, int(port))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def send(self, frame: LiveLinkFrame) -> int:
        size = self._socket.sendto(encode_packet(frame), self.address)
        self.sent += 1
        return size

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> LiveLinkSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveLinkSchedule:
    """Frames waiting until ``stamp + delay_ms - latency_ms``; ``due(now)`` gives the newest
    frame whose time has come (older due ones are skipped: Unreal shows the latest)."""

    def __init__(self, delay_ms: float = PRESENTATION_DELAY_MS, latency_ms: float = 0.0) -> None:
        self.delay_ms = float(delay_ms)
        self.latency_ms = float(latency_ms)  # may change while frames wait: it applies from the next push
        self._queue: deque[tuple[int, LiveLinkFrame]] = deque()

    def push(self, stamp_ns: int, frame: LiveLinkFrame) -> None:
        self._queue.append((presentation_ns(stamp_ns, self.delay_ms, self.latency_ms), frame))

    def pending(self) -> int:
        return len(self._queue)

    def due(self, now_ns: int) -> LiveLinkFrame | None:
        frame = None
        while self._queue and self._queue[0][0] <= now_ns:
            frame = self._queue.popleft()[1]
        return frame

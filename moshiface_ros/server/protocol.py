"""The WebSocket protocol between the browser page and ``moshiface serve``.

Every binary message starts with one kind byte, so a reader can tell what the rest is
without parsing it; everything multi-byte is little-endian. Text frames are not part of
the protocol. The browser sends its microphone as 16-bit PCM at the rate its audio
context runs at (the server resamples, as the stepper does for any microphone): on
loopback or a LAN, PCM costs no codec delay and no encoder in the page, which keeps the
mic-to-voice latency at the model's step plus the presentation delay; Opus would only pay
off over a slow link.

Client to server:
    AUDIO  u32 sample rate, then int16 mono samples (at most ``MAX_AUDIO_S`` of sound)
    VIDEO  one JPEG webcam frame for the face tracker (at most ``MAX_VIDEO_BYTES``)
    END    the user is done: the last partial step is padded and the session ends

Server to client:
    HELLO  JSON: the session's clock and mesh (sample rate, fps, presentation delay, ...)
    ROBOT_AUDIO  i64 stamp offset (ns since the session's first user sample), float32 samples
    TEXT   i64 stamp offset, then the text piece in UTF-8
    FACE   i64 stamp offset, u8 flags (1: face present), then float32 V x 3 displacements
    BLENDSHAPES  i64 stamp offset, then float32 K weights in the order of the mesh's
           ``morph_names`` (a head drawn by blendshapes: the names go once, with the mesh)
    STATE  JSON ``{"state": ...}``: listening, speaking, busy, ended, error (with ``message``)

Stamps are offsets from the session's first user sample rather than wall-clock times,
because the page and the server share no clock: the page knows where that first sample sat
on its own audio clock and presents each output at offset + presentation delay from it
(``timing.presentation_ns``). A malformed message is a ``ProtocolError`` with one line
saying what was wrong with it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ..errors import MoshifaceError
from ..messages.checks import check_audio_format

MAX_AUDIO_S = 1.0  # the most sound one AUDIO message may carry
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_VIDEO_BYTES = 512 * 1024
MAX_MESSAGE_BYTES = max(5 + int(MAX_RATE * MAX_AUDIO_S) * 2, 1 + MAX_VIDEO_BYTES)


class Kind(IntEnum):
    """The first byte of every message."""

    HELLO = 0x01
    AUDIO = 0x02
    VIDEO = 0x03
    END = 0x04
    ROBOT_AUDIO = 0x10
    TEXT = 0x11
    FACE = 0x12
    STATE = 0x13
    BLENDSHAPES = 0x14


CLIENT_KINDS = frozenset({Kind.AUDIO, Kind.VIDEO, Kind.END})
_STAMP = struct.Struct("<q")
_RATE = struct.Struct("<I")


class ProtocolError(MoshifaceError):
    """A client message the server cannot take; the text is the one line logged and sent."""


@dataclass(frozen=True)
class ClientAudio:
    """Microphone samples (float32 in [-1, 1]) at their own rate."""

    sample_rate: int
    samples: np.ndarray


@dataclass(frozen=True)
class ClientVideo:
    """One encoded webcam frame (JPEG bytes)."""

    jpeg: bytes


@dataclass(frozen=True)
class ClientEnd:
    """The user ended the conversation."""


ClientMessage = ClientAudio | ClientVideo | ClientEnd


def decode_client(data: bytes | bytearray | memoryview) -> ClientMessage:
    """One client message from its bytes; anything malformed is a ``ProtocolError``."""
    data = bytes(data)
    if not data:
        raise ProtocolError("empty message")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes is over the limit of {MAX_MESSAGE_BYTES}")
    try:
        kind = Kind(data[0])
    except ValueError:
        raise ProtocolError(f"unknown message kind 0x{data[0]:02x}") from None
    if kind not in CLIENT_KINDS:
        raise ProtocolError(f"message kind {kind.name} is not one a client sends")
    body = data[1:]
    if kind is Kind.AUDIO:
        return _decode_audio(body)
    if kind is Kind.VIDEO:
        if not body or len(body) > MAX_VIDEO_BYTES:
            raise ProtocolError(f"VIDEO frame of {len(body)} bytes: it must hold 1 to {MAX_VIDEO_BYTES} bytes")
        return ClientVideo(body)
    if body:
        raise ProtocolError(f"END carries no data, got {len(body)} bytes")
    return ClientEnd()


def _decode_audio(body: bytes) -> ClientAudio:
    if len(body) < _RATE.size + 2:
        raise ProtocolError(f"AUDIO message of {len(body) + 1} bytes is too short for a rate and a sample")
    (rate,) = _RATE.unpack_from(body)
    pcm = body[_RATE.size:]
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ProtocolError(f"AUDIO sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")
    if len(pcm) % 2:
        raise ProtocolError(f"AUDIO holds {len(pcm)} bytes of 16-bit samples: an odd count")
    frames = len(pcm) // 2
    if frames > rate * MAX_AUDIO_S:
        raise ProtocolError(f"AUDIO message holds {frames / rate:.2f} s of sound, over the {MAX_AUDIO_S:g} s limit")
    try:
        check_audio_format(rate, 1, frames)
    except ValueError as exc:
        raise ProtocolError(f"AUDIO: {exc}") from None
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    return ClientAudio(int(rate), samples)


def encode_audio(sample_rate: int, samples: np.ndarray) -> bytes:
    """A client AUDIO message (what the page sends; tests and tools use it too)."""
    pcm = np.clip(np.asarray(samples, np.float32), -1.0, 1.0 - 1.0 / 32768.0)
    return bytes([Kind.AUDIO]) + _RATE.pack(int(sample_rate)) + (pcm * 32768.0).astype("<i2").tobytes()


def encode_robot_audio(offset_ns: int, samples: np.ndarray) -> bytes:
    return bytes([Kind.ROBOT_AUDIO]) + _STAMP.pack(offset_ns) + np.asarray(samples, "<f4").reshape(-1).tobytes()


def encode_text(offset_ns: int, piece: str) -> bytes:
    return bytes([Kind.TEXT]) + _STAMP.pack(offset_ns) + piece.encode("utf-8", "replace")


def encode_face(offset_ns: int, displacements: np.ndarray, present: bool = True) -> bytes:
    flags = bytes([1 if present else 0])
    return bytes([Kind.FACE]) + _STAMP.pack(offset_ns) + flags + np.asarray(displacements, "<f4").reshape(-1).tobytes()


def encode_blendshapes(offset_ns: int, weights: np.ndarray) -> bytes:
    return bytes([Kind.BLENDSHAPES]) + _STAMP.pack(offset_ns) + np.asarray(weights, "<f4").reshape(-1).tobytes()


def encode_json(kind: Kind, payload: dict[str, Any]) -> bytes:
    return bytes([kind]) + json.dumps(payload, separators=(",", ":")).encode("utf-8")


def encode_state(state: str, message: str | None = None) -> bytes:
    payload: dict[str, Any] = {"state": state}
    if message is not None:
        payload["message"] = message
    return encode_json(Kind.STATE, payload)


def decode_server(data: bytes) -> tuple[Kind, Any]:
    """A server message as (kind, value): the reverse of the encoders, for tests and tools.
    AUDIO/FACE/TEXT/BLENDSHAPES come back as (offset_ns, payload); HELLO/STATE as their JSON."""
    kind = Kind(data[0])
    body = data[1:]
    if kind in (Kind.HELLO, Kind.STATE):
        return kind, json.loads(body.decode("utf-8"))
    (offset,) = _STAMP.unpack_from(body)
    rest = body[_STAMP.size:]
    if kind is Kind.ROBOT_AUDIO:
        return kind, (offset, np.frombuffer(rest, "<f4"))
    if kind is Kind.TEXT:
        return kind, (offset, rest.decode("utf-8"))
    if kind is Kind.FACE:
        return kind, (offset, bool(rest[0]), np.frombuffer(rest[1:], "<f4").reshape(-1, 3))
    if kind is Kind.BLENDSHAPES:
        return kind, (offset, np.frombuffer(rest, "<f4"))
    raise ValueError(f"{kind.name} is not a server message")

"""The session bag's messages straight to their CDR bytes, for its hot path.

A step with the face on records four face frames of ~60 KB each and five small messages
(two audio chunks, text, two steps of face tokens). Going through a message object
(``convert.to_msg``, then the library's serializer) builds dataclasses per message and
walks their fields generically; here the checked arrays go into the buffer as they are.
The bytes are exactly those rosbags' ``serialize_cdr`` gives for the same message
(``test/test_messages.py`` compares them): little-endian CDR with its 4-byte
encapsulation header, each field aligned to its size counted from after that header,
zeros in the padding, strings with their length (terminating NUL included) in front.
"""

from __future__ import annotations

import struct

import numpy as np

from .checks import check_tokens
from .convert import checked_audio_samples, checked_face_frame, split_stamp
from .types import PARAMETER_FIELDS, AudioChunk, DialogueText, FaceFrame, FaceTokens

__all__ = ["face_frame_cdr", "message_cdr"]

_ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little endian


class _Buffer:
    """Pieces of a CDR body and their length, for alignment (relative to the body's start)."""

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = [_ENCAPSULATION]
        self.size = 0

    def align(self, boundary: int) -> None:
        pad = -self.size % boundary
        if pad:
            self.parts.append(bytes(pad))
            self.size += pad

    def add(self, data: bytes | memoryview, alignment: int = 1) -> None:
        self.align(alignment)
        self.parts.append(data)
        self.size += len(data)

    def string(self, text: str) -> None:
        raw = text.encode() + b"\x00"
        self.add(struct.pack("<I", len(raw)), 4)
        self.add(raw)

    def header(self, stamp_ns: int, frame_id: str) -> None:
        """A ``std_msgs/Header``: the stamp's (sec, nanosec), then the frame id."""
        self.add(struct.pack("<iI", *split_stamp(stamp_ns)), 4)
        self.string(str(frame_id))

    def array(self, values: np.ndarray, dtype: str) -> None:
        """A sequence: its length, then its values (little-endian ``dtype``)."""
        self.add(struct.pack("<I", values.size), 4)
        if values.size:
            data = np.ascontiguousarray(values, dtype)
            self.add(memoryview(data).cast("B"), data.itemsize)

    def floats(self, values: np.ndarray) -> None:
        self.array(values, "<f4")

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def face_frame_cdr(frame: FaceFrame) -> bytes:
    """The CDR bytes of ``convert.face_frame_to_msg(frame)``, checked the same way."""
    vertices, params = checked_face_frame(frame)
    out = _Buffer()
    out.header(frame.stamp_ns, frame.frame_id)
    out.add(struct.pack("<??", bool(frame.face_present), bool(frame.is_displacement)))
    out.floats(vertices)
    for name in PARAMETER_FIELDS:
        out.floats(params[name])
    return out.bytes()


def audio_chunk_cdr(chunk: AudioChunk) -> bytes:
    """The CDR bytes of ``convert.audio_chunk_to_msg(chunk)``, checked the same way."""
    samples = checked_audio_samples(chunk)
    out = _Buffer()
    out.header(chunk.stamp_ns, chunk.frame_id)
    out.add(struct.pack("<IB", int(chunk.sample_rate), int(chunk.channels)), 4)
    out.add(struct.pack("<Q", int(chunk.sequence)), 8)
    out.floats(samples)
    return out.bytes()


def face_tokens_cdr(tokens: FaceTokens) -> bytes:
    """The CDR bytes of ``convert.face_tokens_to_msg(tokens)``, checked the same way."""
    values = check_tokens(tokens.tokens)
    out = _Buffer()
    out.header(tokens.stamp_ns, tokens.frame_id)
    out.add(struct.pack("<Q", int(tokens.step)), 8)
    out.array(values, "<u2")
    return out.bytes()


def dialogue_text_cdr(text: DialogueText) -> bytes:
    """The CDR bytes of ``convert.dialogue_text_to_msg(text)``."""
    out = _Buffer()
    out.header(text.stamp_ns, text.frame_id)
    out.add(struct.pack("<Q", int(text.step)), 8)
    out.add(struct.pack("<i", int(text.token_id)), 4)
    out.string(text.piece)
    return out.bytes()


WRITERS = {FaceFrame: face_frame_cdr, AudioChunk: audio_chunk_cdr, FaceTokens: face_tokens_cdr,
           DialogueText: dialogue_text_cdr}


def message_cdr(message: FaceFrame | AudioChunk | FaceTokens | DialogueText) -> bytes:
    """The CDR bytes of ``convert.to_msg(message)`` for the session's own message types."""
    return WRITERS[type(message)](message)

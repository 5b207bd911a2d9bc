"""A ``FaceFrame`` straight to its CDR bytes, for the session bag's hot path.

A step with the face on records four face frames of ~60 KB each. Going through a message
object (``convert.face_frame_to_msg``, then the library's serializer) builds a dataclass
per frame and walks its fields generically; here the checked float32 arrays go into the
buffer as they are. The bytes are exactly those rosbags' ``serialize_cdr`` gives for the
same message (``test/test_messages.py`` compares them): little-endian CDR with its 4-byte
encapsulation header, each field aligned to its size counted from after that header,
zeros in the padding, strings with their length (terminating NUL included) in front.
"""

from __future__ import annotations

import struct

import numpy as np

from .convert import checked_face_frame, split_stamp
from .types import PARAMETER_FIELDS, FaceFrame

__all__ = ["face_frame_cdr"]

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

    def floats(self, values: np.ndarray) -> None:
        self.add(struct.pack("<I", values.size), 4)
        if values.size:
            self.add(memoryview(np.ascontiguousarray(values, "<f4")).cast("B"), 4)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def face_frame_cdr(frame: FaceFrame) -> bytes:
    """The CDR bytes of ``convert.face_frame_to_msg(frame)``, checked the same way."""
    vertices, params = checked_face_frame(frame)
    out = _Buffer()
    out.add(struct.pack("<iI", *split_stamp(frame.stamp_ns)), 4)
    out.string(str(frame.frame_id))
    out.add(struct.pack("<??", bool(frame.face_present), bool(frame.is_displacement)))
    out.floats(vertices)
    for name in PARAMETER_FIELDS:
        out.floats(params[name])
    return out.bytes()

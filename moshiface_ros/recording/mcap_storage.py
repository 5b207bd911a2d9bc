"""rosbags' MCAP storage, writing each message and chunk with one copy instead of three.

A session bag takes about 250 KB a step (four face frames, audio, tokens, text). rosbags'
MCAP writer builds every message record in a buffer of its own before copying it into the
chunk, and every chunk (an uncompressed megabyte) twice more before it reaches the file.
This storage writes the same records (MCAP's Message, Chunk, MessageIndex and the
ChunkIndex that rosbags' ``close`` puts in the summary) straight where they go, so the
file is byte for byte the one rosbags writes (``test/test_bag_storage.py`` compares them).
Chunk compression, which sessions do not use, stays rosbags' own code.

A chunk is closed once it holds ``chunk_bytes`` (rosbags' megabyte by default). A session
bag closes its chunks at its checkpoints instead (``SessionBag.checkpoint``, once a
second): its bytes then reach the file only there, just after the session's other files,
so a killed session's files always hold every step its bag does.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import McapWriter, PendingChunk

__all__ = ["CHUNK_BYTES", "SessionWriter"]

CHUNK_BYTES = 1 << 20  # rosbags' chunk size: a chunk is closed once it holds more
MESSAGE_OP, CHUNK_OP, MESSAGE_INDEX_OP = 0x05, 0x06, 0x07
# opcode, record length | channel id, sequence, log time, publish time
_MESSAGE = struct.Struct("<BQHIQQ")
_MESSAGE_FIELDS = _MESSAGE.size - 9
# opcode, record length | start, end, uncompressed size, CRC (0: none), compression "" (length 0), records' length
_CHUNK = struct.Struct("<BQQQQIIQ")
_CHUNK_FIELDS = _CHUNK.size - 9


class _LeanMcapWriter(McapWriter):
    """``McapWriter`` whose uncompressed messages and chunks go straight to their buffer."""

    chunk_bytes = CHUNK_BYTES

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        if self.compression:
            super().write(connection, timestamp, data)
            return
        chunk, cid = self.chunk, connection.id
        self.message_start_time = min(timestamp, self.message_start_time)
        self.message_end_time = max(timestamp, self.message_end_time)
        self.channel_stats[cid] += 1
        chunk.message_start_time = min(timestamp, chunk.message_start_time)
        chunk.message_end_time = max(timestamp, chunk.message_end_time)
        chunk.msgs[cid].append((timestamp, chunk.bio.tell()))
        chunk.bio.write(_MESSAGE.pack(MESSAGE_OP, _MESSAGE_FIELDS + len(data), cid, 0, timestamp, timestamp))
        chunk.bio.write(data)
        if chunk.bio.tell() > self.chunk_bytes:
            self.close_chunk()

    def close_chunk(self) -> None:
        if self.compression:
            super().close_chunk()
            return
        chunk, file = self.chunk, self.bio
        size = chunk.bio.tell()
        chunk_start = file.tell()
        file.write(_CHUNK.pack(CHUNK_OP, _CHUNK_FIELDS + size, chunk.message_start_time, chunk.message_end_time,
                               size, 0, 0, size))
        with chunk.bio.getbuffer() as records:
            file.write(records)
        chunk_end = file.tell()
        offsets = [(cid, self._write_message_index(cid, messages)) for cid, messages in chunk.msgs.items()]
        self.chunks.append(_chunk_index(chunk, chunk_start, chunk_end, offsets, file.tell() - chunk_end, size))
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))

    def _write_message_index(self, cid: int, messages: list[tuple[int, int]]) -> int:
        """A channel's MessageIndex record (each message's time and offset in the chunk);
        returns where it starts in the file."""
        start = self.bio.tell()
        flat = [value for pair in messages for value in pair]
        body_length = 6 + 8 * len(flat)
        self.bio.write(struct.pack(f"<BQHI{len(flat)}Q", MESSAGE_INDEX_OP, body_length, cid, 8 * len(flat), *flat))
        return start


def _chunk_index(chunk: PendingChunk, start: int, end: int, offsets: list[tuple[int, int]],
                 index_length: int, size: int) -> BytesIO:
    """The ChunkIndex record's body, as rosbags' ``close`` writes it into the summary."""
    body = BytesIO()
    body.write(struct.pack("<QQQQI", chunk.message_start_time, chunk.message_end_time, start, end - start,
                           10 * len(offsets)))
    for cid, offset in offsets:
        body.write(struct.pack("<HQ", cid, offset))
    body.write(struct.pack("<QIQQ", index_length, 0, size, size))  # no compression: both sizes the same
    return body


class SessionWriter(Writer):
    """rosbags' ``Writer`` with the lean MCAP storage (the session bag's writer), closing a
    chunk once it holds ``chunk_bytes``."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _LeanMcapWriter}

    def __init__(self, path: Path | str, *, chunk_bytes: int = CHUNK_BYTES, **options: Any) -> None:
        super().__init__(path, **options)
        self.chunk_bytes = chunk_bytes

    def open(self) -> None:
        super().open()
        self.storage.chunk_bytes = self.chunk_bytes

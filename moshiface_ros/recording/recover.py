"""Rebuild a rosbag2 (MCAP) whose writer was killed before it could close it.

A killed writer leaves an MCAP file without its summary section and end magic, and no
``metadata.yaml``: readers that seek to the footer (rosbags' ``AnyReader``, the ``mcap``
library's indexed reader) refuse it. Its records are all still there up to the last
chunk that reached the file (``SessionBag.checkpoint`` puts one there every second), so
this reads the file front to back, keeps every schema, channel and message of each
complete chunk, stops at the first record that is cut short, and writes a new bag of
exactly those messages with rosbags' writer (summary, index, ``metadata.yaml``). The old
file is replaced only once the new bag is complete.
"""

from __future__ import annotations

import mmap
import re
import shutil
import struct
from pathlib import Path
from typing import Iterator

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

from ..errors import MoshifaceError
from .definitions import make_typestore

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x0F
RECOVER_VERSION = 8


class _Copy:
    """Streams the readable records of a damaged MCAP file into a new rosbag2 writer: a
    channel record (which MCAP puts before its channel's messages) becomes a connection,
    a message is written as it is read, so memory stays flat however long the bag."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.schemas: dict[int, tuple[str, str, str]] = {}  # id -> name, encoding, definition
        self.connections: dict[int, object] = {}
        self.counts: dict[str, int] = {}  # messages per topic
        self.topics: dict[int, str] = {}

    def channel(self, channel_id: int, schema_id: int, topic: str) -> None:
        if channel_id in self.connections:
            return
        name, encoding, text = self.schemas[schema_id]
        if encoding != "ros2msg":
            raise ValueError(f"channel {topic} has a {encoding} schema; only ros2msg bags are recovered")
        self.connections[channel_id] = self.writer.add_connection(topic, name, typestore=_typestore(name, text))
        self.topics[channel_id] = topic
        self.counts.setdefault(topic, 0)

    def message(self, channel_id: int, log_time: int, data: memoryview) -> None:
        self.writer.write(self.connections[channel_id], log_time, bytes(data))
        self.counts[self.topics[channel_id]] += 1


def _records(data: memoryview) -> Iterator[tuple[int, memoryview, int]]:
    """(opcode, body, end offset) of each complete record; stops at the first cut one."""
    offset = 0
    while offset + 9 <= len(data):
        opcode = data[offset]
        length = struct.unpack_from("<Q", data, offset + 1)[0]
        end = offset + 9 + length
        if end > len(data):
            return
        yield opcode, data[offset + 9:end], end
        offset = end


def _string(body: memoryview, offset: int) -> tuple[str, int]:
    size = struct.unpack_from("<I", body, offset)[0]
    end = offset + 4 + size
    if end > len(body):
        raise ValueError("string runs past its record")
    return bytes(body[offset + 4:end]).decode("utf-8"), end


def _take(copy: _Copy, opcode: int, body: memoryview) -> None:
    """Copies one schema, channel or message record (others carry nothing to keep)."""
    if opcode == OP_SCHEMA:
        schema_id = struct.unpack_from("<H", body, 0)[0]
        name, at = _string(body, 2)
        encoding, at = _string(body, at)
        text, _ = _string(body, at)
        copy.schemas[schema_id] = (name, encoding, text)
    elif opcode == OP_CHANNEL:
        channel_id, schema_id = struct.unpack_from("<HH", body, 0)
        copy.channel(channel_id, schema_id, _string(body, 4)[0])
    elif opcode == OP_MESSAGE:
        channel_id, _, log_time = struct.unpack_from("<HIQ", body, 0)
        copy.message(channel_id, log_time, body[22:])


def _typestore(name: str, text: str) -> Typestore:
    """A typestore that knows ``name``: ours (every type a session records), else one built
    from the definition the bag carries (a message and the ones it uses, ``MSG:`` sections)."""
    store = make_typestore()
    if name in store.types:
        return store
    types: dict = {}
    for section in re.split(r"^={10,}\s*$", text, flags=re.MULTILINE):
        header = re.match(r"\s*MSG: (\S+)\s*\n", section)
        section_name, body = (header.group(1), section[header.end():]) if header else (name, section)
        types.update(get_types_from_msg(body, section_name))
    store.register(types)
    return store


def _chunk_records(body: memoryview) -> memoryview:
    """The records inside a chunk (rosbags writes them uncompressed unless asked not to)."""
    at = 28  # start time, end time, uncompressed size, crc
    compression, at = _string(body, at)
    size = struct.unpack_from("<Q", body, at)[0]
    if compression:
        raise ValueError(f"a {compression}-compressed chunk (only uncompressed bags are recovered)")
    return body[at + 8:at + 8 + size]


def copy_mcap(path: Path, writer: Writer) -> dict[str, int]:
    """Writes every message of the complete records of ``path`` to ``writer``; returns the
    messages per topic."""
    copy = _Copy(writer)
    try:
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # the file's pages, not a copy
        _copy_records(memoryview(mapped), copy, path)
    except OSError as exc:
        raise MoshifaceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # an empty file cannot be mapped
        raise MoshifaceError(f"{path} is not an MCAP file ({exc})") from exc
    return copy.counts


def _copy_records(data: memoryview, copy: _Copy, path: Path) -> None:
    if bytes(data[:len(MCAP_MAGIC)]) != MCAP_MAGIC:
        raise MoshifaceError(f"{path} is not an MCAP file (no MCAP magic at its start)")
    done = len(MCAP_MAGIC)
    try:
        for opcode, body, end in _records(data[len(MCAP_MAGIC):]):
            if opcode == OP_DATA_END:  # a closed file: the summary after it repeats what was read
                return
            if opcode == OP_CHUNK:
                for inner, inner_body, _ in _records(_chunk_records(body)):
                    _take(copy, inner, inner_body)
            else:
                _take(copy, opcode, body)
            done = len(MCAP_MAGIC) + end
    except (ValueError, KeyError, struct.error, UnicodeDecodeError) as exc:
        raise MoshifaceError(f"{path}: a damaged record after byte {done} ({exc})") from exc


def find_mcap(bag: Path) -> Path:
    """The one ``.mcap`` file of a rosbag2 directory (or the file itself)."""
    if bag.is_file():
        return bag
    files = sorted(bag.glob("*.mcap")) if bag.is_dir() else []
    if len(files) != 1:
        found = "no" if not files else f"{len(files)}"
        raise MoshifaceError(f"{bag} holds {found} .mcap files; expected one rosbag2 MCAP bag")
    return files[0]


def reindex_bag(bag: Path) -> dict[str, int]:
    """Rebuilds the rosbag2 directory ``bag`` from the readable part of its MCAP file, in
    place; returns the messages per topic it kept."""
    mcap = find_mcap(bag)
    directory = mcap.parent
    staging = directory.with_name(f".{directory.name}.reindex")
    old = directory.with_name(f".{directory.name}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        writer = Writer(staging, version=RECOVER_VERSION, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        try:
            counts = copy_mcap(mcap, writer)
        finally:
            writer.close()
        (staging / f"{staging.name}.mcap").rename(staging / mcap.name)
        _rename_in_metadata(staging / "metadata.yaml", f"{staging.name}.mcap", mcap.name)
        directory.rename(old)
        staging.rename(directory)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        raise MoshifaceError(f"cannot rebuild {directory}: {exc.strerror or exc}") from exc
    shutil.rmtree(old, ignore_errors=True)
    return counts


def _rename_in_metadata(path: Path, old: str, new: str) -> None:
    """rosbags names the MCAP file after its directory; the rebuilt bag keeps the old name."""
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(old, new), encoding="utf-8")

"""The session bag's lean MCAP storage writes exactly the file rosbags' own writer does.

Real parts only: the same messages (every topic a face session records, several chunks
closed by size and by checkpoints) written once through rosbags' ``Writer`` and once
through ``SessionWriter``; the two directories are compared byte for byte and read back
by rosbags and by the ``mcap`` library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from moshiface_ros.constants import FRAME_SIZE, STEP_NS, VHAP_VERTICES
from moshiface_ros.messages.cdr import message_cdr
from moshiface_ros.messages.convert import MSG_TYPES
from moshiface_ros.messages.types import AudioChunk, DialogueText, FaceFrame, FaceTokens
from moshiface_ros.recording.definitions import make_typestore
from moshiface_ros.recording.mcap_storage import SessionWriter

TOPICS = {"/audio": AudioChunk, "/text": DialogueText, "/tokens": FaceTokens, "/face": FaceFrame}


def _session(steps: int) -> list[tuple[str, int, bytes]]:
    """(topic, stamp, CDR bytes) of a face session's steps, in the order the bag gets them."""
    rng = np.random.default_rng(0)
    messages = []
    for step in range(steps):
        stamp = step * STEP_NS
        messages.append(("/audio", stamp, AudioChunk(stamp, 24000, rng.uniform(-1, 1, FRAME_SIZE), sequence=step)))
        if step % 3:
            messages.append(("/text", stamp, DialogueText(stamp, step, step, f" w{step}")))
        messages.append(("/tokens", stamp, FaceTokens(stamp, step, rng.integers(0, 256, 8))))
        for half in (0, STEP_NS // 2):
            vertices = rng.normal(size=(VHAP_VERTICES, 3)).astype(np.float32) * 1e-3
            messages.append(("/face", stamp + half, FaceFrame(stamp + half, vertices)))
    return [(topic, stamp, message_cdr(message)) for topic, stamp, message in messages]


def _write(writer_class: type[Writer], path: Path, messages: list[tuple[str, int, bytes]]) -> None:
    typestore = make_typestore()
    writer = writer_class(path, version=8, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections = {topic: writer.add_connection(topic, MSG_TYPES[kind], typestore=typestore)
                   for topic, kind in TOPICS.items()}
    for index, (topic, stamp, data) in enumerate(messages):
        writer.write(connections[topic], stamp, data)
        if index % 37 == 36:  # a checkpoint: the chunk closed before it is full
            writer.storage.close_chunk()
    writer.close()


def test_session_writer_writes_the_bytes_rosbags_writes(tmp_path):
    messages = _session(30)  # ~4 MB: chunks closed by size as well as by the checkpoints
    _write(Writer, tmp_path / "rosbags" / "bag", messages)  # one name: the file holds it
    _write(SessionWriter, tmp_path / "lean" / "bag", messages)
    ours, theirs = ((tmp_path / name / "bag" / "bag.mcap").read_bytes() for name in ("lean", "rosbags"))
    assert len(ours) > 3_500_000 and ours == theirs
    assert (tmp_path / "lean" / "bag" / "metadata.yaml").read_text() == \
        (tmp_path / "rosbags" / "bag" / "metadata.yaml").read_text()
    with AnyReader([tmp_path / "lean" / "bag"]) as reader:
        read = [(connection.topic, stamp, bytes(raw)) for connection, stamp, raw in reader.messages()]
    assert sorted(read, key=lambda m: m[:2]) == sorted(messages, key=lambda m: m[:2])
    with open(tmp_path / "lean" / "bag" / "bag.mcap", "rb") as file:
        summary = make_reader(file).get_summary()
    assert len(summary.chunk_indexes) > 4 and sum(summary.statistics.channel_message_counts.values()) == len(messages)


def test_a_checkpointed_session_bag_reaches_its_file_only_at_checkpoints(tmp_path):
    """With the session's chunk size, nothing of a chunk is in the file before the
    checkpoint that closes it (so the session's other files, synced just before, always
    hold every step the bag does), and each checkpoint is one whole chunk."""
    messages = _session(30)
    typestore = make_typestore()
    writer = SessionWriter(tmp_path / "bag", version=8, storage_plugin=StoragePlugin.MCAP, chunk_bytes=64 << 20)
    writer.open()
    connections = {topic: writer.add_connection(topic, MSG_TYPES[kind], typestore=typestore)
                   for topic, kind in TOPICS.items()}
    path, sizes = tmp_path / "bag" / "bag.mcap", []
    for index, (topic, stamp, data) in enumerate(messages):
        writer.write(connections[topic], stamp, data)
        sizes.append(path.stat().st_size)
        if index % 60 == 59:  # a checkpoint
            writer.storage.close_chunk()
            writer.storage.bio.flush()
            assert path.stat().st_size > sizes[-1] + 3_000_000 // 2
    writer.close()
    grown = [i for i in range(1, len(sizes)) if sizes[i] != sizes[i - 1]]
    assert grown == [i for i in range(60, len(messages), 60)], grown  # only right after a checkpoint
    with open(path, "rb") as file:
        summary = make_reader(file).get_summary()
    assert len(summary.chunk_indexes) == -(-len(messages) // 60)

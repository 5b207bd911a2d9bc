"""Write a session as a rosbag2 directory (MCAP storage, bag version 8) without ROS.

Version 8 is what ROS 2 Humble reads; later distributions read it too. Every message is
written with its own header stamp as the bag time, so the bag replays on the session's
one clock. An interrupted session is closed properly and keeps what was written.

A process killed outright (SIGKILL, power loss) cannot close the bag, so the writer never
holds more than about one second of session in memory: ``checkpoint`` ends the MCAP
chunk being built once it spans ``CHECKPOINT_NS`` and hands the file's buffer to the
operating system. Everything up to the last checkpoint is then in the file, and
``recording.recover`` rebuilds a readable bag from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin

from ..constants import NS_PER_S
from ..messages.cdr import WRITERS as CDR_WRITERS, message_cdr
from ..messages.convert import MSG_TYPES, to_msg
from .definitions import make_typestore
from .mcap_storage import CHUNK_BYTES, SessionWriter

BAG_VERSION = 8
CHECKPOINT_NS = NS_PER_S  # at most this much session is held in memory
# A checkpointed bag's chunks close at its checkpoints (a second of a face session is ~3.5 MB);
# this only bounds one that is never checkpointed.
CHECKPOINTED_CHUNK_BYTES = 64 << 20


def checkpoint_due(since_ns: int | None, pending: bool, stamp_ns: int, force: bool = False) -> bool:
    """Whether a checkpoint at ``stamp_ns`` writes a chunk: something was written since the
    last one (at ``since_ns``), and ``CHECKPOINT_NS`` has passed in stamps or ``force``."""
    return pending and since_ns is not None and (force or stamp_ns - since_ns >= CHECKPOINT_NS)


class RosbagsFactory:
    """Builds messages as the dataclasses rosbags generates from ``.msg`` definitions."""

    def __init__(self, typestore: Any) -> None:
        self._types = typestore.types

    def new(self, type_name: str, **fields: Any) -> Any:
        return self._types[type_name](**fields)

    def array(self, values: np.ndarray) -> np.ndarray:
        return values


class SessionBag:
    """A rosbag2 being written; use as a context manager or call ``close``/``discard``."""

    def __init__(self, path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> None:
        """``chunk_bytes``: a chunk goes to the file once it holds that much (rosbags' size);
        a bag that ``checkpoint`` puts on disk every second takes ``CHECKPOINTED_CHUNK_BYTES``,
        so that its bytes reach the file only at its checkpoints."""
        self.path = Path(path)
        self.typestore = make_typestore()
        self.factory = RosbagsFactory(self.typestore)
        self._writer = SessionWriter(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP,
                                     chunk_bytes=chunk_bytes)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self._since_ns: int | None = None  # the last checkpoint's time (at first: the first message's stamp)
        self._pending = False  # messages written since the last checkpoint
        self.checkpoints = 0

    def add_topic(self, topic: str, message_class: type) -> None:
        """Declares a topic carrying one of the core message classes."""
        self.add_ros_topic(topic, MSG_TYPES[message_class])

    def add_ros_topic(self, topic: str, type_name: str) -> None:
        """Declares a topic of any type the typestore knows (e.g. ``trajectory_msgs/msg/JointTrajectory``)."""
        self._connections[topic] = self._writer.add_connection(topic, type_name, typestore=self.typestore)
        self._types[topic] = type_name
        self.counts[topic] = 0

    def write_ros(self, topic: str, stamp_ns: int, ros_message: Any) -> None:
        """Writes a message already built as a rosbags dataclass (e.g. with ``self.factory``)."""
        self._write_cdr(topic, stamp_ns, self.typestore.serialize_cdr(ros_message, self._types[topic]))

    def _write_cdr(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        self._writer.write(self._connections[topic], int(stamp_ns), data)
        self.counts[topic] += 1
        self._pending = True
        if self._since_ns is None:
            self._since_ns = int(stamp_ns)

    def write(self, topic: str, message: Any) -> None:
        """Writes a core message object at its own stamp (the session's own types straight
        to their CDR bytes: the same bytes, without a message object in between)."""
        kind = type(message)
        if kind in CDR_WRITERS and self._types[topic] == MSG_TYPES[kind]:
            self._write_cdr(topic, message.stamp_ns, message_cdr(message))
            return
        ros_message = to_msg(message, self.factory)
        self.write_ros(topic, message.stamp_ns, ros_message)

    def checkpoint_due(self, stamp_ns: int) -> bool:
        """Whether ``checkpoint(stamp_ns)`` would write a chunk now."""
        return self._writer is not None and checkpoint_due(self._since_ns, self._pending, stamp_ns)

    def checkpoint(self, stamp_ns: int, force: bool = False) -> bool:
        """Puts everything written so far into the file once ``CHECKPOINT_NS`` has passed
        (in stamps) since the last checkpoint (or at once with ``force``); call it between
        steps with the end of the step, so a chunk holds whole steps. Returns whether it
        wrote a chunk."""
        if self._writer is None or not checkpoint_due(self._since_ns, self._pending, stamp_ns, force):
            return False
        storage = self._writer.storage  # rosbags' MCAP storage: the chunk and the file it goes to
        storage.close_chunk()
        storage.bio.flush()
        self._since_ns, self._pending = int(stamp_ns), False
        self.checkpoints += 1
        return True

    def close(self) -> None:
        """Finishes the bag: flushes the MCAP file and writes metadata.yaml."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def discard(self) -> None:
        """Closes and deletes the bag: nothing half-written is left behind."""
        try:
            self.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "SessionBag":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.discard()

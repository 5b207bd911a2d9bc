"""The files one session leaves in its output directory, and their all-or-nothing life.

A finished or interrupted session leaves ``robot.wav``, ``text.jsonl``, ``summary.json``
and ``bag/`` (rosbag2, MCAP). A session that fails before it starts stepping, or is
stopped by a signal before it has anything to keep, removes what it wrote (the write
probe included, and the directory if it created it). Once it steps, what it wrote is kept:
a write error (a full disk, the WAV size limit) ends it with the files closed as far as
they can be, and ``moshiface recover`` finishes whatever could not be.

One writer at a time: the directory is locked (``flock``, advisory, released by the
kernel when the process dies) from before the first file is touched to the end, so a
second run or a recovery on the same ``--out`` fails at once. An old session is removed
(``--overwrite``) only after the new run's inputs, model and options all checked out.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from .sinks import BagSink, CheckpointSink, FileSink, Sink

ROBOT_WAV = "robot.wav"
TEXT_JSONL = "text.jsonl"
SUMMARY_JSON = "summary.json"
BAG_DIR = "bag"
SESSION_FILES = (ROBOT_WAV, TEXT_JSONL, SUMMARY_JSON, BAG_DIR)
WRITE_PROBE = ".moshiface-write-test"


class OutputDir:
    """The directory a session writes to: checked, claimed, and removed again on failure.

    ``check`` touches nothing; ``claim`` creates the directory, proves it writable and clears
    an old session (with ``overwrite``); ``remove`` undoes whatever part of ``claim`` and of
    the session's writing happened, also when a signal cut ``claim`` short.
    """

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        self.path = path
        self.overwrite = overwrite
        self.created = False  # whether this session made the directory (then it removes it)
        self.cleared = False  # whether the session files in it are this session's own
        self._lock_fd: int | None = None

    def check(self) -> None:
        """The directory can take a new session (a one-line error otherwise)."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise MoshifaceError(f"output directory {out} exists and is not a directory")
        existing = self._existing()
        if existing and not self.overwrite:
            raise MoshifaceError(
                f"output directory {out} already holds a session ({', '.join(existing)}); "
                "choose another --out or pass --overwrite"
            )

    def lock(self) -> None:
        """Creates the directory, checks it takes files and takes its lock (a one-line
        error at once if another process holds it); touches no old session."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise MoshifaceError(f"output directory {out} exists and is not a directory")
        self.created = not out.exists()  # before mkdir: a signal right after it still knows
        try:
            out.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.unlock()
            self.created = False  # the directory is someone else's to remove
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MoshifaceError(f"another moshiface process is writing {out}; wait for it to end "
                                     "or choose another --out") from exc
            raise MoshifaceError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
        self._probe()

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def _probe(self) -> None:
        try:
            probe = self.path / WRITE_PROBE
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise MoshifaceError(f"output directory {self.path} is not writable: {exc.strerror or exc}") from exc

    def claim(self) -> None:
        """Removes an old session (with ``overwrite``): call it once everything else about
        the new run has checked out, holding the lock."""
        self.check()
        for name in self._existing():
            path = self.path / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.cleared = True

    def remove(self) -> None:
        """Deletes the probe, this session's files (never an old session it has not cleared)
        and the directory if it was made here."""
        out = self.path
        with suppress(OSError):  # absent, or ``out`` is no directory: nothing of ours
            (out / WRITE_PROBE).unlink()
        if self.cleared or self.created:
            for name in (ROBOT_WAV, TEXT_JSONL, SUMMARY_JSON):
                with suppress(OSError):
                    (out / name).unlink()
            shutil.rmtree(out / BAG_DIR, ignore_errors=True)
        if self.created:
            with suppress(OSError):  # not empty: something else lives there, leave it
                out.rmdir()

    def _existing(self) -> list[str]:
        return [name for name in SESSION_FILES if (self.path / name).exists()]


class SessionWriteError(MoshifaceError):
    """Writing the session failed part-way; what it wrote is kept (the one line says where)."""

    def __init__(self, out: Path, cause: BaseException, steps: int, finished: bool) -> None:
        if finished:
            kept = f"kept the {steps} steps before it in {out} (robot.wav, text.jsonl, summary.json, bag/)"
        else:
            kept = (f"kept what the {steps} steps wrote in {out}; once there is room, "
                    f"`moshiface recover {out}` makes it readable")
        super().__init__(f"{describe_write_error(cause)}; the session stopped and {kept}")


def describe_write_error(exc: BaseException) -> str:
    """One line for a failed write: what could not be written, and why."""
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"the disk is full (writing{where or ' the session'})"
        return f"writing{where or ' the session'} failed ({exc.strerror or exc})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class SessionOutputs:
    """robot.wav, text.jsonl and the bag as the session steps, then the summary.

    ``summary.json`` is written first, with what is known at the start and
    ``"complete": false``, so a killed session still says what it was (``recover`` adds
    what it finds); the finished session replaces it."""

    def __init__(self, directory: OutputDir, start_ns: int, face: bool = False,
                 ros_topics: dict[str, str] | None = None, started: dict[str, Any] | None = None) -> None:
        out = directory.path
        self._directory = directory
        try:
            self.bag = BagSink(out / BAG_DIR, face, ros_topics)
        except OSError as exc:
            raise MoshifaceError(f"cannot start the session in {out}: {describe_write_error(exc)}") from exc
        try:
            self.files = FileSink(out / ROBOT_WAV, out / TEXT_JSONL, start_ns)
            self._write_summary(dict(started or {}, start_time_ns=start_ns, complete=False))
        except BaseException as exc:
            self.bag.discard()
            if isinstance(exc, OSError):
                raise MoshifaceError(f"cannot start the session in {out}: {describe_write_error(exc)}") from exc
            raise

    def sinks(self) -> list[Sink]:
        """The sinks that write this directory, in the order they must see each step."""
        return [self.files, self.bag]

    def checkpoint(self) -> Sink:
        """The sink that puts each second of the session on disk (the files, then the bag);
        it goes after every sink that writes to the bag, so a checkpoint holds whole steps."""
        return CheckpointSink(self.bag, self.files)

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Closes everything and writes the summary, with the bag's message counts added
        (also for an interrupted session); returns what it wrote. Every file is closed
        even when one fails (the first error is raised after)."""
        errors = []
        for closer in (self.files.close, self.bag.close):
            try:
                closer()
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        summary = dict(summary, messages=self.bag.counts, complete=True)
        self._write_summary(summary)
        return summary

    def _write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self._directory.path / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")

    def discard(self) -> None:
        """Removes everything this session wrote."""
        for closer in (self.files.close, self.bag.discard):
            try:
                closer()
            except Exception:  # already failing; removal below is what matters
                pass
        self._directory.remove()

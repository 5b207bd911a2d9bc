"""The files one session leaves in its output directory, and their all-or-nothing life.

A finished or interrupted session leaves ``robot.wav``, ``text.jsonl``, ``summary.json``
and ``bag/`` (rosbag2, MCAP). A session that fails part-way, or is stopped by a signal
before it has anything to keep, removes what it wrote (the write probe included, and the
directory if it created it), so a directory either holds a whole, readable session or
nothing of ours.
"""

from __future__ import annotations

import json
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from .sinks import BagSink, FileSink, Sink

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

    def claim(self) -> None:
        """Creates the directory, checks it takes files, and removes an old session."""
        self.check()
        out = self.path
        self.created = not out.exists()  # before mkdir: a signal right after it still knows
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / WRITE_PROBE
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise MoshifaceError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
        for name in self._existing():
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()

    def remove(self) -> None:
        """Deletes a session's files (and the probe), and the directory if it was made here."""
        out = self.path
        for name in (WRITE_PROBE, ROBOT_WAV, TEXT_JSONL):
            with suppress(OSError):  # absent, or ``out`` is no directory: nothing of ours
                (out / name).unlink()
        shutil.rmtree(out / BAG_DIR, ignore_errors=True)
        if self.created:
            with suppress(OSError):  # not empty: something else lives there, leave it
                out.rmdir()

    def _existing(self) -> list[str]:
        return [name for name in SESSION_FILES if (self.path / name).exists()]


class SessionOutputs:
    """robot.wav, text.jsonl and the bag as the session steps, then the summary."""

    def __init__(self, directory: OutputDir, start_ns: int, face: bool = False,
                 ros_topics: dict[str, str] | None = None) -> None:
        out = directory.path
        self._directory = directory
        self.bag = BagSink(out / BAG_DIR, face, ros_topics)
        try:
            self.files = FileSink(out / ROBOT_WAV, out / TEXT_JSONL, start_ns)
        except BaseException:
            self.bag.discard()
            raise

    def sinks(self) -> list[Sink]:
        """The sinks that write this directory, in the order they must see each step."""
        return [self.files, self.bag]

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Closes everything and writes the summary, with the bag's message counts added
        (also for an interrupted session); returns what it wrote."""
        self.files.close()
        self.bag.close()
        summary = dict(summary, messages=self.bag.counts)
        atomic_write_text(self._directory.path / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
        return summary

    def discard(self) -> None:
        """Removes everything this session wrote."""
        for closer in (self.files.close, self.bag.discard):
            try:
                closer()
            except Exception:  # already failing; removal below is what matters
                pass
        self._directory.remove()

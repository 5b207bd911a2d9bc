"""The files one session leaves in its output directory, and their all-or-nothing life.

A finished or interrupted session leaves ``robot.wav``, ``text.jsonl``, ``summary.json``
and ``bag/`` (rosbag2, MCAP). A session that fails part-way removes what it wrote (and
the directory, if it created it), so a directory either holds a whole, readable session
or nothing of ours.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..audio.wav import WavWriter
from ..errors import MoshifaceError
from ..messages.types import AudioChunk, DialogueText, FaceFrame, FaceTokens
from ..recording.bag import SessionBag
from ..topics import (ROBOT_AUDIO, ROBOT_FACE, ROBOT_FACE_TOKENS, ROBOT_TEXT, USER_AUDIO, USER_FACE,
                      USER_FACE_TOKENS)

# The face topics a session with a face path records, and their message types.
FACE_TOPICS = ((USER_FACE, FaceFrame), (USER_FACE_TOKENS, FaceTokens), (ROBOT_FACE_TOKENS, FaceTokens),
               (ROBOT_FACE, FaceFrame))

ROBOT_WAV = "robot.wav"
TEXT_JSONL = "text.jsonl"
SUMMARY_JSON = "summary.json"
BAG_DIR = "bag"
SESSION_FILES = (ROBOT_WAV, TEXT_JSONL, SUMMARY_JSON, BAG_DIR)


def prepare_output_dir(out: Path, overwrite: bool = False) -> bool:
    """Makes sure ``out`` can take a new session; returns whether it was created here."""
    if out.exists() and not out.is_dir():
        raise MoshifaceError(f"output directory {out} exists and is not a directory")
    existing = [name for name in SESSION_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise MoshifaceError(
            f"output directory {out} already holds a session ({', '.join(existing)}); "
            "choose another --out or pass --overwrite"
        )
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".moshiface-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MoshifaceError(f"output directory {out} is not writable: {exc.strerror or exc}") from exc
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return created


class SessionOutputs:
    """Writes robot.wav, text.jsonl and the bag as the session steps."""

    def __init__(self, out: Path, sample_rate: int, created_dir: bool, face: bool = False,
                 ros_topics: dict[str, str] | None = None) -> None:
        self.out = out
        self._created_dir = created_dir
        self.bag = SessionBag(out / BAG_DIR)
        topics = ((USER_AUDIO, AudioChunk), (ROBOT_AUDIO, AudioChunk), (ROBOT_TEXT, DialogueText))
        for topic, kind in topics + (FACE_TOPICS if face else ()):
            self.bag.add_topic(topic, kind)
        for topic, type_name in (ros_topics or {}).items():  # e.g. a head's blendshapes and actuators
            self.bag.add_ros_topic(topic, type_name)
        self.wav = WavWriter(out / ROBOT_WAV, sample_rate, channels=1)
        self.text = (out / TEXT_JSONL).open("w", encoding="utf-8")

    def write_user_audio(self, chunk: AudioChunk) -> None:
        self.bag.write(USER_AUDIO, chunk)

    def write_robot_audio(self, chunk: AudioChunk) -> None:
        self.bag.write(ROBOT_AUDIO, chunk)
        self.wav.write(chunk.samples)

    def write_text(self, text: DialogueText, time_s: float) -> None:
        self.bag.write(ROBOT_TEXT, text)
        line = {"step": text.step, "time": round(time_s, 6), "token": text.token_id, "piece": text.piece}
        self.text.write(json.dumps(line, ensure_ascii=False) + "\n")

    def write(self, topic: str, message: object) -> None:
        """Any other recorded stream (face frames, face tokens, ...)."""
        self.bag.write(topic, message)

    def write_ros(self, topic: str, stamp_ns: int, message: object) -> None:
        """A message already built for the bag (e.g. a head's actuator trajectory)."""
        self.bag.write_ros(topic, stamp_ns, message)

    def finish(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Closes everything and writes the summary, with the bag's message counts added
        (also for an interrupted session); returns what it wrote."""
        self.wav.close()
        self.text.close()
        self.bag.close()
        summary = dict(summary, messages=dict(self.bag.counts))
        tmp = self.out / (SUMMARY_JSON + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, self.out / SUMMARY_JSON)
        return summary

    def discard(self) -> None:
        """Removes everything this session wrote."""
        for closer in (self.wav.close, self.text.close, self.bag.discard):
            try:
                closer()
            except Exception:  # already failing; removal below is what matters
                pass
        remove_session(self.out, self._created_dir)


def remove_session(out: Path, created_dir: bool) -> None:
    """Deletes a session's files from ``out``, and ``out`` itself if this run created it."""
    for name in (ROBOT_WAV, TEXT_JSONL, SUMMARY_JSON + ".tmp"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / BAG_DIR, ignore_errors=True)
    if created_dir:
        try:
            out.rmdir()
        except OSError:  # not empty: something else lives there, leave it
            pass

"""Where each step's results go: files, the bag, the head, the speaker, the progress bar.

The session hands every ``StepRecord`` to each sink in turn (and every user face frame it
feeds the model, which only the bag keeps); a sink does one thing with it. The bag sink
writes every stream in a fixed order per step (user audio, robot audio, text, face
tokens, robot face frames), so a session's bag is the same message for message whatever
else is attached; the head sink comes after it and adds the retargeted head.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from ..audio.wav import WavWriter
from ..constants import NS_PER_S, SAMPLE_RATE, STEP_NS
from ..messages.types import AudioChunk, DialogueText, FaceFrame, FaceTokens
from ..recording.bag import CHECKPOINTED_CHUNK_BYTES, SessionBag
from ..speech.stepper import StepRecord
from ..topics import (ROBOT_AUDIO, ROBOT_FACE, ROBOT_FACE_TOKENS, ROBOT_TEXT, USER_AUDIO, USER_FACE,
                      USER_FACE_TOKENS)

# The face topics a session with a face path records, and their message types.
FACE_TOPICS = ((USER_FACE, FaceFrame), (USER_FACE_TOKENS, FaceTokens), (ROBOT_FACE_TOKENS, FaceTokens),
               (ROBOT_FACE, FaceFrame))
AUDIO_TOPICS = ((USER_AUDIO, AudioChunk), (ROBOT_AUDIO, AudioChunk), (ROBOT_TEXT, DialogueText))
TEXT_BUFFER_BYTES = 1 << 16  # text.jsonl reaches the OS at the checkpoints, not line by line


class Sink:
    """Takes a session's results; every method is optional."""

    def user_face(self, frame: FaceFrame) -> None:
        """A user face frame, as it is fed to the model."""

    def step(self, record: StepRecord) -> None:
        """One model step's inputs and outputs."""

    def end(self) -> None:
        """The stepping is over (finished, interrupted or failed)."""


class FileSink(Sink):
    """robot.wav (24 kHz mono float) and text.jsonl (one line per text token).

    Both are buffered and reach the operating system (the WAV's sizes made valid) at each
    of the bag's checkpoints, just before the bag (``sync``, called by ``CheckpointSink``):
    a killed process loses at most the last second, and its files hold every step its bag
    does (``moshiface recover`` cuts them to the bag's)."""

    def __init__(self, wav: Path, text: Path, start_ns: int) -> None:
        self.start_ns = self._start_ns = start_ns
        self._wav = WavWriter(wav, SAMPLE_RATE, channels=1)
        try:
            self._text = text.open("w", encoding="utf-8", buffering=TEXT_BUFFER_BYTES)
        except BaseException:
            self._wav.close()
            raise

    def step(self, record: StepRecord) -> None:
        self._wav.write(record.robot.samples)
        if record.text is not None:
            text = record.text
            line = {"step": text.step, "time": round((text.stamp_ns - self._start_ns) / NS_PER_S, 6),
                    "token": text.token_id, "piece": text.piece}
            self._text.write(json.dumps(line, ensure_ascii=False) + "\n")

    def sync(self) -> None:
        """Hands both files to the operating system, the WAV's sizes made valid."""
        self._wav.sync()
        self._text.flush()

    def close(self) -> None:
        try:
            self._wav.close()
        finally:
            self._text.close()


class BagSink(Sink):
    """The session's rosbag2: every stream the session produces, at its own stamp."""

    def __init__(self, path: Path, face: bool, ros_topics: dict[str, str] | None = None) -> None:
        self._bag = SessionBag(path, chunk_bytes=CHECKPOINTED_CHUNK_BYTES)  # on disk at the checkpoints only
        for topic, kind in AUDIO_TOPICS + (FACE_TOPICS if face else ()):
            self._bag.add_topic(topic, kind)
        for topic, type_name in (ros_topics or {}).items():  # e.g. a head's blendshapes and actuators
            self._bag.add_ros_topic(topic, type_name)

    @property
    def counts(self) -> dict[str, int]:
        """Messages written per topic, in the order the topics were declared."""
        return dict(self._bag.counts)

    def user_face(self, frame: FaceFrame) -> None:
        self._bag.write(USER_FACE, frame)

    def step(self, record: StepRecord) -> None:
        self._bag.write(USER_AUDIO, record.user)
        self._bag.write(ROBOT_AUDIO, record.robot)
        if record.text is not None:
            self._bag.write(ROBOT_TEXT, record.text)
        if record.user_face_tokens is not None:
            self._bag.write(USER_FACE_TOKENS, record.user_face_tokens)
        if record.robot_face_tokens is not None:
            self._bag.write(ROBOT_FACE_TOKENS, record.robot_face_tokens)
        for frame in record.robot_face or ():
            self._bag.write(ROBOT_FACE, frame)

    def write_retargeted(self, output: Any, delay_ms: float) -> None:
        """A head's retarget output, as the retarget node publishes it."""
        for topic, _, message in head_records(output, self._bag.factory, delay_ms):
            self._bag.write_ros(topic, output.stamp_ns, message)

    def checkpoint(self, stamp_ns: int) -> None:
        self._bag.checkpoint(stamp_ns)

    def checkpoint_due(self, stamp_ns: int) -> bool:
        """Whether ``checkpoint(stamp_ns)`` would put a chunk on disk."""
        return self._bag.checkpoint_due(stamp_ns)

    @property
    def checkpoints(self) -> int:
        """Chunks put on disk so far."""
        return self._bag.checkpoints

    def close(self) -> None:
        self._bag.close()

    def discard(self) -> None:
        self._bag.discard()


class CheckpointSink(Sink):
    """Puts the session's last second on disk between steps, once a second: the files
    first, then the bag (see ``SessionBag.checkpoint``), so the files always hold every
    step the bag does."""

    def __init__(self, bag: BagSink, files: FileSink | None = None) -> None:
        self._bag = bag
        self._files = files

    def step(self, record: StepRecord) -> None:
        stamp_ns = record.user.stamp_ns + STEP_NS
        if self._bag.checkpoint_due(stamp_ns):
            if self._files is not None:
                self._files.sync()
            self._bag.checkpoint(stamp_ns)


def head_records(output: Any, factory: Any, delay_ms: float) -> list[tuple[str, str, Any]]:
    """(topic, ROS type, bag message) for one retarget output: the single place the runner
    turns a head's output into messages (the nodes' conversion, so bag and graph agree)."""
    from ..messages.standard import retarget_records

    return retarget_records(output, factory, delay_ms)


def head_topics(head: Any) -> dict[str, str]:
    """The bag topics a head's outputs go to (blendshapes; actuators when it has some)."""
    from ..messages.standard import retarget_topics

    return retarget_topics(has_actuators=bool(head.config.actuators))


class HeadSink(Sink):
    """Retargets the robot's face (or, with no face, its voice) to a head, into the bag."""

    def __init__(self, head: Any, bag: BagSink) -> None:
        self._head = head  # retarget.retargeter.HeadRetargeter
        self._bag = bag
        self.outputs: dict[str, int] = {"face": 0, "fallback": 0, "none": 0}

    def step(self, record: StepRecord) -> None:
        outputs = self._head.step_audio(record.robot)  # the voice drives the mouth when no face is live
        outputs += [self._head.step_face(frame) for frame in record.robot_face or ()]
        for output in outputs:
            self.outputs[output.source] = self.outputs.get(output.source, 0) + 1
            self._bag.write_retargeted(output, self._head.presentation_delay_ms)


class SpeakerSink(Sink):
    """Plays each step's robot audio (a live session's speaker)."""

    def __init__(self, play: Callable[[AudioChunk], Any]) -> None:
        self._play = play

    def step(self, record: StepRecord) -> None:
        self._play(record.robot)


# Live trouble worth a line while it happens: (side, stats key, what it means).
LIVE_PROBLEMS = (
    ("playback", "late_drops", "robot audio arrived after its play time and was dropped "
                               "(raise --presentation-delay-ms)"),
    ("playback", "underruns", "the speaker ran dry and played silence"),
    ("playback", "device_underflows", "the speaker's device underflowed (its callback was too slow)"),
    ("capture", "overflows", "the microphone's device overran: user audio was lost"),
    ("capture", "dropped_blocks", "microphone blocks were dropped: the session fell behind"),
)
REPORT_EVERY_STEPS = 5  # how often the device counters are read


def console(line: str) -> None:
    """A line for the user while a session runs, without breaking the progress bar."""
    tqdm.write(f"moshiface: {line}", file=sys.stderr)


class LiveReportSink(Sink):
    """Says on the console when live audio goes wrong: the first time each kind of trouble
    happens (with its count so far), and each kind's total at the end."""

    def __init__(self, stats: Callable[[], dict[str, Any]], write: Callable[[str], None] = console) -> None:
        self._stats = stats
        self._write = write
        self._reported: set[str] = set()
        self._steps = 0
        self.counts: dict[str, int] = {}

    def _check(self) -> None:
        stats = self._stats()
        for side, key, meaning in LIVE_PROBLEMS:
            count = int(stats.get(side, {}).get(key, 0))
            self.counts[key] = count
            if count and key not in self._reported:
                self._reported.add(key)
                self._write(f"live: {meaning} ({count} so far; the total comes at the end)")

    def step(self, record: StepRecord) -> None:
        self._steps += 1
        if self._steps % REPORT_EVERY_STEPS == 0:
            self._check()

    def end(self) -> None:
        self._check()
        for side, key, meaning in LIVE_PROBLEMS:
            if self.counts.get(key):
                self._write(f"live: {key.replace('_', ' ')}: {self.counts[key]} in all ({meaning})")


class FaceWatchSink(Sink):
    """Says once when the user's face has not been seen for ``quiet_s`` seconds in a row."""

    def __init__(self, quiet_s: float = 2.0, write: Callable[[str], None] = console) -> None:
        self._quiet_steps = max(1, round(quiet_s * NS_PER_S / STEP_NS))
        self._quiet_s = quiet_s
        self._write = write
        self._run = 0
        self.reported = False

    def step(self, record: StepRecord) -> None:
        self._run = 0 if record.user_face_tokens is not None else self._run + 1
        if self._run >= self._quiet_steps and not self.reported:
            self.reported = True
            self._write(f"no user face seen for {self._quiet_s:g} s (from {record.user.stamp_ns} ns on); "
                        "the robot answers without seeing one")


class ProgressSink(Sink):
    """A progress bar over the steps a recorded input will make."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar = tqdm(total=total, unit="step", disable=not enabled, desc="moshiface", leave=False)

    def step(self, record: StepRecord) -> None:
        self._bar.update(1)

    def end(self) -> None:
        self._bar.close()

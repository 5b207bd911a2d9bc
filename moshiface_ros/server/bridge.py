"""One browser conversation: microphone PCM in, the robot's voice, text and face out.

The bridge stamps the page's microphone as a microphone driver would (the session's start
plus the samples received so far, with a sequence number per message) and pushes it
through the runner's ``Session``, so each step reaches the same sinks as ``moshiface run``
(robot.wav, text.jsonl, the bag, summary.json) when the server writes outputs. Each
finished step becomes the protocol's messages, stamped with the step's offset from the
session's first user sample: the page presents them at that offset plus the presentation
delay on its own audio clock.

The outputs are opened on the first audio message, when the microphone's rate is known
(the summary records it); a connection that never speaks leaves nothing behind. On the
way out a session that stepped is finished (its summary says why it ended); one that made
no step is removed, as ``run`` does. Every method runs on the server's model thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..constants import NS_PER_S
from ..messages.types import AudioChunk, FaceFrame
from ..runner.config import RunConfig
from ..runner.outputs import OutputDir, SessionOutputs, describe_write_error
from ..runner.session import Session
from ..runner.summary import session_summary, started_summary
from ..speech.session import Placement
from ..speech.stepper import AudioStepper, StepRecord
from . import protocol


@dataclass
class BrowserInput:
    """What the summary says about the user's side: the page's microphone."""

    sample_rate: int = 0
    channels: int = 1
    description: str = "browser microphone (moshiface serve)"
    live_stats: dict[str, Any] | None = field(default=None)


def step_messages(record: StepRecord, start_ns: int) -> list[bytes]:
    """One step's outputs as protocol messages: voice, text, then the step's face frames."""
    offset = record.robot.stamp_ns - start_ns
    messages = [protocol.encode_robot_audio(offset, record.robot.samples)]
    if record.text is not None:
        messages.append(protocol.encode_text(record.text.stamp_ns - start_ns, record.text.piece))
    for frame in record.robot_face or ():
        messages.append(protocol.encode_face(frame.stamp_ns - start_ns, frame.vertices, frame.face_present))
    return messages


class WebSession:
    """Steps one conversation; writes ``out`` (a new session directory) when given."""

    def __init__(self, stepper: AudioStepper, options: Any, placement: Placement, description: str,
                 out: Path | None = None) -> None:
        self.stepper = stepper
        self.start_ns = time.time_ns()
        self.user = BrowserInput()
        self.out = out
        self.config = RunConfig(user_audio=None, live=True, out=out or Path("."), session=options, progress=False)
        self._model = (placement, description)
        self._outputs: SessionOutputs | None = None
        self._directory: OutputDir | None = None
        self._session: Session | None = None
        self._received = 0  # samples received at the current rate
        self._sequence = 0
        self._arrived_ns = time.monotonic_ns()  # when the last audio message was pushed
        self._last_chunk_ns = 0

    @property
    def steps(self) -> int:
        return len(self._session.stats.step_times) if self._session is not None else 0

    def push_audio(self, audio: protocol.ClientAudio) -> list[bytes]:
        """One microphone message -> the messages of the steps it completed."""
        if self._session is None:
            self._start(audio.sample_rate)
        elif audio.sample_rate != self.user.sample_rate:
            raise protocol.ProtocolError(f"the microphone's rate changed from {self.user.sample_rate} Hz to "
                                         f"{audio.sample_rate} Hz within one session")
        stamp = self.start_ns + self._received * NS_PER_S // audio.sample_rate
        chunk = AudioChunk(stamp, audio.sample_rate, audio.samples, sequence=self._sequence, frame_id="browser")
        self._received += len(audio.samples)
        self._sequence += 1
        self._arrived_ns = time.monotonic_ns()
        self._last_chunk_ns = chunk.duration_ns
        return self._messages(self._session.push(chunk))

    def now_ns(self) -> int:
        """The session clock's present, where a webcam frame arriving now belongs: the end
        of the microphone audio received so far, plus the time since it came (at most one
        more message's worth, so a stalled microphone does not run the clock ahead)."""
        rate = self.user.sample_rate or 1
        end = self.start_ns + self._received * NS_PER_S // rate
        since = time.monotonic_ns() - self._arrived_ns
        return end + max(0, min(since, self._last_chunk_ns))

    def push_face(self, frame: FaceFrame) -> None:
        """The user's face (a tracked webcam frame) for the model and the bag."""
        if self._session is None:
            return  # before the first audio there is no step for it to belong to
        self.stepper.push_user_face(frame)
        for sink in self._session.sinks:
            sink.user_face(frame)

    def finish_input(self) -> list[bytes]:
        """The user is done: the last partial step is padded and stepped."""
        if self._session is None:
            return []
        return self._messages(self._session.push(None))

    def _messages(self, records: list[StepRecord]) -> list[bytes]:
        return [message for record in records for message in step_messages(record, self.start_ns)]

    def _start(self, rate: int) -> None:
        self.user.sample_rate = rate
        sinks = []
        if self.out is not None:
            self._directory = OutputDir(self.out)
            self._directory.lock()
            try:
                self._directory.claim()
                started = started_summary(self.config, self._model[0], self._model[1], self.user)
                self._outputs = SessionOutputs(self._directory, self.start_ns, face=self.stepper.has_face,
                                               started=started)
            except BaseException:
                self._directory.remove()
                self._directory.unlock()
                self._directory = None
                raise
            sinks = self._outputs.sinks() + [self._outputs.checkpoint()]
        self._session = Session(self.stepper, sinks, self.start_ns)

    def close(self, reason: str | None = None) -> dict[str, Any] | None:
        """Ends the session: the outputs are finished with the summary (``reason``: why it
        stopped early) or, without a single step, removed. Returns the summary written."""
        try:
            return self._finish_outputs(reason)
        finally:
            if self._directory is not None:
                self._directory.unlock()
            self.stepper.close()

    def _finish_outputs(self, reason: str | None) -> dict[str, Any] | None:
        if self._session is not None:
            self._session.stats.wall_s = (time.time_ns() - self.start_ns) / NS_PER_S
            for sink in self._session.sinks:
                sink.end()
        if self._outputs is None:
            return None
        if not self.steps:
            self._outputs.discard()
            return None
        summary = session_summary(self.config, self._model[0], self._model[1], self.user, self.stepper,
                                  self._session.stats, None, None)
        summary["live"] = {"source": "browser"}
        if reason is not None:
            summary["stopped_by_error"] = reason
        try:
            return self._outputs.finish(summary)
        except OSError as exc:
            summary["stopped_by_error"] = describe_write_error(exc)
            return None


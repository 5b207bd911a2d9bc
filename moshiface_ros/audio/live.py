"""Microphone in, speaker out, for the embedded runner (``moshiface run --live``).

``LiveAudio`` opens the same capture and playback cores the ROS nodes wrap and connects
them the way a robot needs: what the speaker plays is the echo canceller's reference (when
echo cancellation is on), and the robot's audio is presented at ``stamp + presentation
delay`` on the clock the capture stamps with, so a runner that stamps each robot step
with its user step's stamp gets voice (and face) in sync without knowing any of this.

    with LiveAudio("mic", "speaker", echo_cancel=True) as audio:
        for user_chunk in audio.chunks():      # 24 kHz, 1920 samples, stamped, numbered
            for record in stepper.push(user_chunk):
                audio.play(record.robot)       # played at record.robot.stamp_ns + delay
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Iterator

from moshiface_ros.audio.capture import AudioCapture, CaptureConfig
from moshiface_ros.audio.devices import rescan_devices
from moshiface_ros.audio.echo import EchoCanceller
from moshiface_ros.audio.playback import AudioPlayback, PlaybackConfig
from moshiface_ros.constants import PRESENTATION_DELAY_MS, SAMPLE_RATE
from moshiface_ros.messages.types import AudioChunk

__all__ = ["LiveAudio"]


class LiveAudio:
    """Capture and playback on named or numbered devices, as one context manager."""

    def __init__(self, input_device: str | int | None, output_device: str | int | None, *,
                 echo_cancel: bool = False, presentation_delay_ms: float = PRESENTATION_DELAY_MS,
                 frame_id: str = "user_microphone", input_rate: int = 0, input_channels: int = 0,
                 output_rate: int = 0, output_channels: int = 0, rescan: bool = True) -> None:
        self.echo = EchoCanceller(SAMPLE_RATE) if echo_cancel else None
        self.capture = AudioCapture(
            CaptureConfig(input_device, input_rate, input_channels, frame_id=frame_id),
            echo_canceller=self.echo)
        self.playback = AudioPlayback(
            PlaybackConfig(output_device, output_rate, output_channels,
                           presentation_delay_ms=presentation_delay_ms),
            on_played=self.echo.add_reference if self.echo is not None else None)
        self._rescan = rescan
        self._started = False

    def start(self) -> LiveAudio:
        """Open both devices (playback first, so the speaker plays silence before the
        microphone listens). Errors are one-line MoshifaceErrors naming existing devices."""
        if self._started:
            return self
        if self._rescan:
            rescan_devices()  # see devices that appeared since import; no stream is open yet
        self.playback.start()
        try:
            self.capture.start()
        except BaseException:
            self.playback.stop()
            raise
        self._started = True
        return self

    def chunks(self) -> Iterator[AudioChunk]:
        """User audio as it arrives, 24 kHz mono 1920-sample chunks; ends after stop()."""
        return self.capture.chunks()

    def play(self, chunk: AudioChunk) -> str:
        """Robot audio for a step, heard at ``chunk.stamp_ns + presentation delay``;
        returns what the jitter buffer did with it ("queued", "late", ...)."""
        return self.playback.push(chunk)

    def stop(self) -> None:
        self.capture.stop()
        self.playback.stop()
        self._started = False

    def stats(self) -> dict[str, Any]:
        """Overflows, underruns, late drops, ... of both sides, and the echo figure."""
        result: dict[str, Any] = {"capture": self.capture.stats().as_dict(),
                                  "playback": self.playback.stats().as_dict()}
        if self.echo is not None:
            erle = self.echo.erle_db
            result["echo_erle_db"] = None if erle is None else round(erle, 2)
        return result

    def __enter__(self) -> LiveAudio:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

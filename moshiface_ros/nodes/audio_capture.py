"""audio_capture: a microphone as the user's voice on ``/moshiface/user/audio``.

Opens an input device at its own rate and channel count and publishes exact 24 kHz mono
1920-sample chunks (80 ms, the model's step), each stamped with the wall-clock capture
time of its first sample and numbered (a gap in ``sequence`` downstream is a lost
chunk). With ``echo_cancellation`` on it also subscribes to the robot's audio
(``/moshiface/robot/audio``) and removes it from the microphone, taking it as heard at
``stamp + presentation_delay_ms``. Overflows, dropped blocks and the echo figure are
reported on ``/diagnostics``. All the work is ``moshiface_ros.audio.capture``.

    ros2 run moshiface_ros audio_capture --ros-args -p device:=USB -p echo_cancellation:=true
"""

from __future__ import annotations

import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from moshiface_ros.audio.capture import AudioCapture, CaptureConfig, CaptureStats
from moshiface_ros.audio.diagnostics import AudioStatus, capture_status
from moshiface_ros.audio.echo import EchoCanceller
from moshiface_ros.audio.playback import to_timeline
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.msg import AudioChunk
from moshiface_ros.nodes.parameters import AUDIO_CAPTURE
from moshiface_ros.nodes.qos import AUDIO_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import WarnOnce, run_node
from moshiface_ros.timing import presentation_ns
from moshiface_ros.topics import ROBOT_AUDIO, USER_AUDIO

PARAMETERS = AUDIO_CAPTURE
DIAGNOSTICS = "/diagnostics"


def parse_device(value: str) -> str | int | None:
    """The ``device`` parameter: "" is the default device, digits a number, else a name."""
    value = value.strip()
    if not value:
        return None
    return int(value) if value.isdigit() else value


def parse_latency(value: str) -> str | float:
    """The ``latency`` parameter: "low", "high", or seconds."""
    value = value.strip().lower()
    if value in ("low", "high"):
        return value
    try:
        seconds = float(value)
    except ValueError:
        raise MoshifaceError(f"latency must be 'low', 'high' or seconds, got '{value}'") from None
    if not seconds > 0:
        raise MoshifaceError(f"latency must be positive, got {seconds}")
    return seconds


def diagnostic_array(node: Node, status: AudioStatus) -> DiagnosticArray:
    """A core status as the ``/diagnostics`` message."""
    message = DiagnosticArray()
    message.header.stamp = node.get_clock().now().to_msg()
    message.status = [DiagnosticStatus(
        level=bytes([status.level]), name=status.name, message=status.message,
        hardware_id=status.hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in status.values.items()])]
    return message


class AudioCaptureNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("audio_capture", **node_options)  # options: e.g. parameter_overrides (tests)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._delay_ms = float(p["presentation_delay_ms"])
        self._echo = EchoCanceller(24000) if p["echo_cancellation"] else None
        config = CaptureConfig(parse_device(p["device"]), int(p["sample_rate"]), int(p["channels"]),
                               float(p["block_ms"]), parse_latency(p["latency"]), p["frame_id"],
                               float(p["queue_seconds"]))
        self._capture = AudioCapture(config, echo_canceller=self._echo)
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._previous: CaptureStats | None = None
        self._pub = self.create_publisher(AudioChunk, USER_AUDIO, AUDIO_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        if self._echo is not None:
            self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_robot_audio, AUDIO_QOS)
        self._capture.start()
        self._thread = threading.Thread(target=self._publish_loop, name="audio_capture", daemon=True)
        self._thread.start()
        self.create_timer(float(p["diagnostics_period_s"]), self._report)
        stats = self._capture.stats()
        self.get_logger().info(
            f"capturing '{stats.device}' at {stats.sample_rate} Hz, {stats.channels} ch -> "
            f"{USER_AUDIO}; echo cancellation {'on' if self._echo else 'off'}")

    def _publish_loop(self) -> None:
        for chunk in self._capture.chunks():
            self._pub.publish(convert.audio_chunk_to_msg(chunk, self._factory))

    def _on_robot_audio(self, msg: AudioChunk) -> None:
        """The echo reference: robot audio, heard at its stamp + the presentation delay."""
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once(ROBOT_AUDIO, f"ignoring bad audio on {ROBOT_AUDIO}: {exc}")
            return
        assert self._echo is not None
        self._echo.add_reference(to_timeline(chunk), presentation_ns(chunk.stamp_ns, self._delay_ms))

    def _report(self) -> None:
        stats = self._capture.stats()
        status = capture_status(self.get_name(), stats, self._previous)
        if self._echo is not None and self._echo.erle_db is not None:
            status.values["echo_erle_db"] = f"{self._echo.erle_db:.1f}"
        self._previous = stats
        self._diagnostics.publish(diagnostic_array(self, status))

    def destroy_node(self) -> None:
        self._capture.stop()
        self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args=None) -> int:
    return run_node(AudioCaptureNode, "audio_capture", args)


if __name__ == "__main__":
    sys.exit(main())

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

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from moshiface_ros.audio.capture import AudioCapture, CaptureConfig, CaptureStats
from moshiface_ros.audio.devices import parse_device, parse_latency
from moshiface_ros.audio.diagnostics import capture_status
from moshiface_ros.audio.echo import EchoCanceller
from moshiface_ros.audio.playback import to_timeline
from moshiface_ros.constants import SAMPLE_RATE
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import diagnostic_array_to_msg
from moshiface_ros.msg import AudioChunk
from moshiface_ros.nodes.parameters import AudioCaptureSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError
from moshiface_ros.nodes.qos import AUDIO_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.timing import presentation_ns
from moshiface_ros.topics import DIAGNOSTICS, ROBOT_AUDIO, USER_AUDIO


class AudioCaptureNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("audio_capture", **node_options)  # options: e.g. parameter_overrides (tests)
        self._node_parameters = NodeParameters(self, AudioCaptureSettings)
        s: AudioCaptureSettings = self._node_parameters.settings
        self._echo = EchoCanceller(SAMPLE_RATE) if s.echo_cancellation else None
        config = CaptureConfig(parse_device(s.device), s.sample_rate, s.channels, s.block_ms,
                               parse_latency(s.latency), s.frame_id, s.queue_seconds)
        self._capture = AudioCapture(config, echo_canceller=self._echo)
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._previous: CaptureStats | None = None
        self._thread: threading.Thread | None = None
        self._pub = self.create_publisher(AudioChunk, USER_AUDIO, AUDIO_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        if self._echo is not None:
            self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_robot_audio, AUDIO_QOS)
        try:
            self._capture.start()
        except MoshifaceError as exc:
            raise ParameterError("device", str(exc)) from None
        self._thread = threading.Thread(target=self._publish_loop, name="audio_capture", daemon=True)
        self._thread.start()
        self.create_timer(s.diagnostics_period_s, self._report)
        stats = self._capture.stats()
        self.get_logger().info(
            f"capturing '{stats.device}' at {stats.sample_rate} Hz, {stats.channels} ch -> "
            f"{USER_AUDIO}; echo cancellation {'on' if self._echo else 'off'}")

    def _publish_loop(self) -> None:
        for chunk in self._capture.chunks():
            try:
                self._pub.publish(convert.audio_chunk_to_msg(chunk, self._factory))
            except Exception:
                if not rclpy.ok(context=self.context):  # ROS went down under us (Ctrl-C): stop quietly
                    return
                raise

    def _on_robot_audio(self, msg: AudioChunk) -> None:
        """The echo reference: robot audio, heard at its stamp + the presentation delay."""
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once(ROBOT_AUDIO, f"ignoring bad audio on {ROBOT_AUDIO}: {exc}")
            return
        assert self._echo is not None
        delay_ms = self._node_parameters.settings.presentation_delay_ms
        self._echo.add_reference(to_timeline(chunk), presentation_ns(chunk.stamp_ns, delay_ms))

    def _report(self) -> None:
        stats = self._capture.stats()
        status = capture_status(self.get_name(), stats, self._previous)
        if self._echo is not None and self._echo.erle_db is not None:
            status.values["echo_erle_db"] = f"{self._echo.erle_db:.1f}"
        self._previous = stats
        now = self.get_clock().now().nanoseconds
        self._diagnostics.publish(diagnostic_array_to_msg([status], now, self._factory))

    def release(self) -> None:
        """Stop the device (the publishing thread then ends) and drop the stream's resampler."""
        self._capture.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._capture = None


def main(args=None) -> int:
    return run_node(AudioCaptureNode, "audio_capture", args)


if __name__ == "__main__":
    sys.exit(main())

"""audio_playback: the robot's voice from ``/moshiface/robot/audio`` on a speaker.

Keeps one output stream open (silence between utterances) and plays each chunk at
``stamp + presentation_delay_ms``, the same moment the face retargeted against the same
stamps is shown. Chunks that come too late are dropped, not played late; where audio is
missing the speaker plays silence, never a repetition. Underruns, late chunks and
missing sequence numbers are reported on ``/diagnostics``. All the work is
``moshiface_ros.audio.playback``.

    ros2 run moshiface_ros audio_playback --ros-args -p device:=speaker -p presentation_delay_ms:=300.0
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from moshiface_ros.audio.devices import parse_device, parse_latency
from moshiface_ros.audio.diagnostics import playback_status
from moshiface_ros.audio.playback import AudioPlayback, PlaybackConfig, PlaybackStats
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages import convert
from moshiface_ros.messages.standard import diagnostic_array_to_msg
from moshiface_ros.msg import AudioChunk
from moshiface_ros.nodes.parameters import AudioPlaybackSettings
from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError
from moshiface_ros.nodes.qos import AUDIO_QOS
from moshiface_ros.nodes.rclpy_messages import RclpyFactory
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.topics import DIAGNOSTICS, ROBOT_AUDIO


class AudioPlaybackNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("audio_playback", **node_options)  # options: e.g. parameter_overrides (tests)
        s: AudioPlaybackSettings = NodeParameters(self, AudioPlaybackSettings).settings
        config = PlaybackConfig(parse_device(s.device), s.sample_rate, s.channels, s.block_ms,
                                parse_latency(s.latency), s.presentation_delay_ms, s.lag_ms, s.sync_to_stamps,
                                s.capacity_s)
        self._playback = AudioPlayback(config)
        self._factory = RclpyFactory()
        self._warn_once = WarnOnce(self.get_logger())
        self._previous: PlaybackStats | None = None
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        try:
            self._playback.start()
        except MoshifaceError as exc:
            raise ParameterError("device", str(exc)) from None
        self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_robot_audio, AUDIO_QOS)
        self.create_timer(s.diagnostics_period_s, self._report)
        stats = self._playback.stats()
        self.get_logger().info(
            f"playing {ROBOT_AUDIO} on '{stats.device}' at {stats.sample_rate} Hz, "
            f"{stats.channels} ch, {config.presentation_delay_ms:g} ms after each stamp")

    def _on_robot_audio(self, msg: AudioChunk) -> None:
        try:
            chunk = convert.audio_chunk_from_msg(msg)
        except ValueError as exc:
            self._warn_once(ROBOT_AUDIO, f"dropping bad audio on {ROBOT_AUDIO}: {exc}")
            return
        self._playback.push(chunk)

    def _report(self) -> None:
        stats = self._playback.stats()
        status = playback_status(self.get_name(), stats, self._previous)
        self._previous = stats
        now = self.get_clock().now().nanoseconds
        self._diagnostics.publish(diagnostic_array_to_msg([status], now, self._factory))

    def release(self) -> None:
        """Close the output stream and drop its resampler."""
        self._playback.stop()
        self._playback = None


def main(args=None) -> int:
    return run_node(AudioPlaybackNode, "audio_playback", args)


if __name__ == "__main__":
    sys.exit(main())

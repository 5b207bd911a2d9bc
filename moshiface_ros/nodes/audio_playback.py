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

from moshiface_ros.audio.diagnostics import playback_status
from moshiface_ros.audio.playback import AudioPlayback, PlaybackConfig, PlaybackStats
from moshiface_ros.messages import convert
from moshiface_ros.msg import AudioChunk
from moshiface_ros.nodes.audio_capture import DIAGNOSTICS, diagnostic_array, parse_device, parse_latency
from moshiface_ros.nodes.parameters import AUDIO_PLAYBACK
from moshiface_ros.nodes.qos import AUDIO_QOS
from moshiface_ros.nodes.spin import WarnOnce, run_node
from moshiface_ros.topics import ROBOT_AUDIO

PARAMETERS = AUDIO_PLAYBACK


class AudioPlaybackNode(Node):
    def __init__(self, **node_options) -> None:
        super().__init__("audio_playback", **node_options)  # options: e.g. parameter_overrides (tests)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        config = PlaybackConfig(
            parse_device(p["device"]), int(p["sample_rate"]), int(p["channels"]),
            float(p["block_ms"]), parse_latency(p["latency"]), float(p["presentation_delay_ms"]),
            float(p["lag_ms"]), bool(p["sync_to_stamps"]), float(p["capacity_s"]))
        self._playback = AudioPlayback(config)
        self._warn_once = WarnOnce(self.get_logger())
        self._previous: PlaybackStats | None = None
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self._playback.start()
        self.create_subscription(AudioChunk, ROBOT_AUDIO, self._on_robot_audio, AUDIO_QOS)
        self.create_timer(float(p["diagnostics_period_s"]), self._report)
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
        self._diagnostics.publish(
            diagnostic_array(self, playback_status(self.get_name(), stats, self._previous)))
        self._previous = stats

    def destroy_node(self) -> None:
        self._playback.stop()
        super().destroy_node()


def main(args=None) -> int:
    return run_node(AudioPlaybackNode, "audio_playback", args)


if __name__ == "__main__":
    sys.exit(main())

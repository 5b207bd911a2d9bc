"""Each node's parameters, in one typed table per node (no rclpy needed to read them).

The nodes declare exactly these, with their descriptions and ranges
(``ros2 param describe``); config/*.yaml must list exactly these names and defaults (a test
checks). ``MOSHIFACE_NODE``, ``AUDIO_CAPTURE``, ... are the name -> default views of the
tables. The conversation node's table takes its sampling defaults from
``speech.engine.Sampling``, which imports torch, so it is loaded only when asked for
(``MOSHIFACE_NODE``, ``NODES``): the audio nodes start without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..audio.devices import parse_latency
from ..constants import FACE_FPS, PRESENTATION_DELAY_MS, SAMPLE_RATE, VHAP_VERTICES
from ..topics import ROBOT_ACTUATORS
from .paramspec import ParameterError, defaults, param

DELAY_MS = dict(low=0.0, high=5000.0)
PERIOD_S = dict(low=0.05, high=60.0)
DEVICE_RATE = dict(low=0, high=384_000)
CHANNELS = dict(low=0, high=32)
BLOCK_MS = dict(low=1.0, high=500.0)


@dataclass(frozen=True)
class AudioCaptureSettings:
    device: str = param("", "input device: its number, exact name or a unique part of it ('' = the default)")
    sample_rate: int = param(0, "rate to open the device at in Hz (0 = its default); resampled to "
                                f"{SAMPLE_RATE} Hz", **DEVICE_RATE)
    channels: int = param(0, "channels to open, averaged to mono (0 = the device's, at most 2)", **CHANNELS)
    block_ms: float = param(20.0, "PortAudio block length in ms", **BLOCK_MS)
    latency: str = param("low", "PortAudio suggested latency: 'low', 'high' or seconds as text ('0.05')")
    queue_seconds: float = param(2.0, "seconds of device audio held for a slow publisher before blocks "
                                      "are dropped", low=0.1, high=60.0)
    frame_id: str = param("user_microphone", "frame_id of the published user audio")
    echo_cancellation: bool = param(False, "remove the robot's voice (/moshiface/robot/audio) from the microphone")
    presentation_delay_ms: float = param(PRESENTATION_DELAY_MS, "the robot's audio is heard at its stamp + "
                                         "this (the echo reference; equal to audio_playback's)", **DELAY_MS)
    diagnostics_period_s: float = param(1.0, "period of the /diagnostics reports in seconds", **PERIOD_S)

    def check(self) -> None:
        parse_latency(self.latency)


@dataclass(frozen=True)
class AudioPlaybackSettings:
    device: str = param("", "output device: its number, exact name or a unique part of it ('' = the default)")
    sample_rate: int = param(0, "rate to open the device at in Hz (0 = its default)", **DEVICE_RATE)
    channels: int = param(0, "channels to open, the voice copied to each (0 = the device's, at most 2)",
                          **CHANNELS)
    block_ms: float = param(20.0, "PortAudio block length in ms", **BLOCK_MS)
    latency: str = param("high", "PortAudio suggested latency: 'low', 'high' or seconds as text ('0.05')")
    presentation_delay_ms: float = param(PRESENTATION_DELAY_MS, "play each chunk at its stamp + this "
                                         "(shared with everything that presents the robot)", **DELAY_MS)
    lag_ms: float = param(0.0, "latency after the sound card that it does not report (Bluetooth, DSP), ms",
                          low=0.0, high=2000.0)
    sync_to_stamps: bool = param(True, "true: stamps are this host's wall clock; false: they only order "
                                       "chunks and the delay counts from arrival (bag replays)")
    capacity_s: float = param(4.0, "how far ahead of its time (s) a chunk may arrive before it is dropped",
                              low=0.5, high=60.0)
    diagnostics_period_s: float = param(1.0, "period of the /diagnostics reports in seconds", **PERIOD_S)

    def check(self) -> None:
        parse_latency(self.latency)


@dataclass(frozen=True)
class FaceTrackerSettings:
    source: str = param("0", "camera device index, video file or URL, or GStreamer pipeline (has '!')")
    width: int = param(640, "requested capture width (devices only; 0 = the camera's)", low=0, high=8192)
    height: int = param(480, "requested capture height (devices only; 0 = the camera's)", low=0, high=8192)
    camera_fps: float = param(30.0, "requested capture rate (devices only; 0 = the camera's)", low=0.0, high=240.0)
    publish_rate: float = param(float(FACE_FPS), "FaceFrames per second on /moshiface/user/face "
                                                 f"(the model expects {FACE_FPS})", low=1.0, high=100.0)
    max_frame_age: float = param(0.1, "seconds a tracked frame may be repeated while no newer camera frame "
                                      "came; older, face-absent frames are published", low=0.0, high=10.0,
                                 dynamic=True)
    reopen_interval: float = param(1.0, "seconds between attempts to reopen a lost camera", low=0.05, high=60.0)
    loop_file: bool = param(True, "a video file source restarts at its end")
    flame_model: str = param("", "FLAME 2020/2023 pickle, or 'synthetic' for the stand-in model")
    embedding: str = param("", "landmark embedding .npz ('' = config/flame_landmark_embedding.npz)")
    teeth: bool = param(True, "add VHAP's 120 teeth vertices (5,143 vertices per frame, the face codec's topology)")
    num_expression: int = param(50, "expression components fitted per frame", low=1, high=100)
    num_shape: int = param(100, "identity components calibrated", low=0, high=300)
    iterations: int = param(4, "Gauss-Newton iterations per frame", low=1, high=100)
    focal_length: float = param(0.0, "camera focal length in pixels (0 = the image width)", low=0.0, high=1e5)
    calibration_frames: int = param(5, "frames (5 apart) the user's identity is calibrated on", low=0, high=100)
    filter_min_cutoff: float = param(2.0, "One-Euro filter cutoff at rest (Hz)", low=0.001, high=100.0)
    filter_beta: float = param(0.3, "One-Euro filter speed coefficient", low=0.0, high=100.0)
    head_pose_in_vertices: bool = param(False, "include the head's rotation in the published vertices")
    frame_id: str = param("user_camera", "frame_id of the published FaceFrames")

    def check(self) -> None:
        if not self.flame_model:
            raise ParameterError("flame_model", "set it to your FLAME pickle (see docs/face-tracking.md), "
                                                "or to 'synthetic' for the stand-in model")
        if not self.source.strip():
            raise ParameterError("source", "give a device index, a file path or a GStreamer pipeline")


@dataclass(frozen=True)
class RetargetSettings:
    head_file: str = param("", "the head file (YAML) ('' = the package's config/heads/servo_head.yaml)")
    regions_file: str = param("", "regions YAML overriding the head file's topology.regions ('' = the head's)")
    presentation_delay_ms: float = param(PRESENTATION_DELAY_MS, "a frame is presented at its stamp + this; "
                                         "equal to every presenting node's", **DELAY_MS)
    command_mode: str = param("trajectory", "'trajectory': trajectory_msgs/JointTrajectory sent at once, "
                              "reaching the positions at stamp + presentation delay; 'forward': "
                              "std_msgs/Float64MultiArray, each actuator sent at its own time",
                              choices=("trajectory", "forward"))
    command_topic: str = param(ROBOT_ACTUATORS, "topic of the actuator commands (a ros2_control "
                                                "controller's command topic)")
    command_rate_hz: float = param(250.0, "how often due commands and Live Link packets are checked and sent",
                                   low=1.0, high=2000.0)
    livelink_enabled: bool = param(False, "send Unreal Live Link Face packets (UDP)")
    livelink_host: str = param("127.0.0.1", "Live Link receiver's address")
    livelink_port: int = param(11111, "Live Link receiver's UDP port", low=1, high=65535)
    livelink_latency_ms: float = param(0.0, "Live Link packets are sent this much before presentation "
                                            "(the renderer's own lag)", low=0.0, high=5000.0, dynamic=True)
    marker_enabled: bool = param(True, "publish the face mesh as a visualization_msgs/Marker for rviz2")
    marker_topic: str = param("/moshiface/robot/face_marker", "topic of the rviz2 marker")
    marker_rate_hz: float = param(5.0, "marker updates per second", low=0.1, high=50.0)
    marker_max_triangles: int = param(4000, "at most this many triangles in the marker (0 = all)",
                                      low=0, high=1_000_000, dynamic=True)
    frame_id: str = param("robot_head", "frame_id of the marker and of the published blendshapes",
                          dynamic=True)

    def check(self) -> None:
        if not self.command_topic.startswith("/"):
            raise ParameterError("command_topic", f"must be an absolute topic name, got {self.command_topic!r}")


@dataclass(frozen=True)
class WebHeadSettings:
    host: str = param("127.0.0.1", "address the page is served on; anything but loopback needs a token")
    port: int = param(8999, "port of the page (0 = a free one, logged)", low=0, high=65535)
    token: str = param("", "required as ?token= on requests from other machines ('' = only this machine)")
    presentation_delay_ms: float = param(PRESENTATION_DELAY_MS, "the page presents voice and face at each "
                                         "stamp + this (equal to every presenting node's)", **DELAY_MS)
    vertices: int = param(VHAP_VERTICES, "vertices of the robot's face frames (the head mesh the page draws)",
                          low=1, high=100_000)
    source: str = param("face", "what the page draws: 'face' (/moshiface/robot/face) or 'blendshapes' "
                        "(/moshiface/robot/blendshapes on head_file's rig)", choices=("face", "blendshapes"))
    head_file: str = param("", "with source blendshapes: the head file whose rig the page draws "
                           "('' = the package's config/heads/arkit_virtual_head.yaml)")

    def check(self) -> None:
        from ..server.pages import is_loopback

        if not is_loopback(self.host) and not self.token:
            raise ParameterError("token", f"host {self.host} lets other machines in: set a token as well")


AUDIO_CAPTURE = defaults(AudioCaptureSettings)
AUDIO_PLAYBACK = defaults(AudioPlaybackSettings)
FACE_TRACKER = defaults(FaceTrackerSettings)
RETARGET = defaults(RetargetSettings)
WEB_HEAD = defaults(WebHeadSettings)

_LAZY: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """``MoshifaceSettings``, ``MOSHIFACE_NODE`` and ``NODES``, built on first use."""
    if name not in ("MoshifaceSettings", "MOSHIFACE_NODE", "NODES", "SETTINGS"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _LAZY:
        from .moshiface_settings import MoshifaceSettings as settings

        classes = {"moshiface_node": settings, "audio_capture": AudioCaptureSettings,
                   "audio_playback": AudioPlaybackSettings, "face_tracker": FaceTrackerSettings,
                   "retarget": RetargetSettings, "web_head": WebHeadSettings}
        _LAZY.update(MoshifaceSettings=settings, MOSHIFACE_NODE=defaults(settings), SETTINGS=classes,
                     NODES={node: defaults(cls) for node, cls in classes.items()})
    return _LAZY[name]

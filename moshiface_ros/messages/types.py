"""Core message objects: what the core produces and consumes, free of ROS.

Each class mirrors one ``msg/*.msg`` definition field for field (the header becomes
``stamp_ns`` + ``frame_id``), so that conversion to rclpy or rosbags messages is a
mechanical mapping (see ``convert.py``) and the core never imports ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NS_PER_S = 1_000_000_000


def _f32(values: object) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)


@dataclass
class AudioChunk:
    """Linear PCM audio; ``samples`` is (frames, channels) or 1-D for mono."""

    stamp_ns: int
    sample_rate: int
    samples: np.ndarray
    channels: int = 1
    sequence: int = 0
    frame_id: str = ""

    def __post_init__(self) -> None:
        self.samples = np.asarray(self.samples, dtype=np.float32)

    @property
    def frames(self) -> int:
        return self.samples.size // max(self.channels, 1)

    @property
    def duration_ns(self) -> int:
        return self.frames * NS_PER_S // self.sample_rate


@dataclass
class DialogueText:
    """One text token of the robot's inner monologue."""

    stamp_ns: int
    step: int
    token_id: int
    piece: str
    frame_id: str = ""


@dataclass
class FaceFrame:
    """One 25 fps face frame on the FLAME topology; ``vertices`` is V x 3 in metres."""

    stamp_ns: int
    vertices: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    face_present: bool = True
    is_displacement: bool = True
    expression: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    jaw_pose: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    global_pose: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    neck_pose: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    eye_pose: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frame_id: str = ""

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        for name in PARAMETER_FIELDS:
            setattr(self, name, _f32(getattr(self, name)))


PARAMETER_FIELDS = ("expression", "jaw_pose", "global_pose", "neck_pose", "eye_pose", "translation")


@dataclass
class FaceTokens:
    """The face codec's N tokens (8 in the paper) for one 80 ms step."""

    stamp_ns: int
    step: int
    tokens: np.ndarray
    frame_id: str = ""

    def __post_init__(self) -> None:
        self.tokens = np.asarray(self.tokens, dtype=np.uint16).reshape(-1)


@dataclass
class BlendshapeWeights:
    """A head's blendshape weights in [0, 1] for one face frame."""

    stamp_ns: int
    names: list[str]
    weights: np.ndarray
    frame_id: str = ""

    def __post_init__(self) -> None:
        self.names = list(self.names)
        self.weights = _f32(self.weights)


@dataclass
class Diagnostic:
    """One component's health for ``/diagnostics`` (diagnostic_msgs/DiagnosticStatus)."""

    name: str
    level: int  # 0 OK, 1 WARN, 2 ERROR
    message: str
    hardware_id: str = ""
    values: dict[str, str] = field(default_factory=dict)

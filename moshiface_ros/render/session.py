"""Reading a recorded session back for a preview: face frames, weights, commands, audio.

A session is either a runner output directory (``bag/`` + ``robot.wav`` +
``summary.json``) or a bare rosbag2 directory (``metadata.yaml`` + MCAP), e.g. one
recorded with ``ros2 bag record``. Messages are read with rosbags' ``AnyReader`` from the
definitions embedded in the bag, so no ROS install and no typestore are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MoshifaceError
from ..messages.convert import (
    audio_chunk_from_msg,
    blendshape_weights_from_msg,
    face_frame_from_msg,
    stamp_ns,
)
from ..messages.types import AudioChunk, BlendshapeWeights, FaceFrame
from ..topics import ROBOT_ACTUATORS, ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE



@dataclass
class RecordedCommands:
    """Actuator positions per frame, as recorded (JointTrajectory, one point each)."""

    names: list[str]
    stamps: list[int] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)


@dataclass
class Session:
    bag: Path
    faces: list[FaceFrame] = field(default_factory=list)
    blendshapes: list[BlendshapeWeights] = field(default_factory=list)
    commands: RecordedCommands | None = None
    audio: list[AudioChunk] = field(default_factory=list)
    wav: Path | None = None  # robot.wav of a runner session
    skipped: int = 0  # messages that could not be read (reported, not fatal)

    def start_ns(self) -> int | None:
        stamps = [m[0].stamp_ns for m in (self.audio, self.faces, self.blendshapes) if m]
        if self.commands and self.commands.stamps:
            stamps.append(self.commands.stamps[0])
        return min(stamps) if stamps else None

    def end_ns(self) -> int | None:
        ends = [m[-1].stamp_ns for m in (self.faces, self.blendshapes) if m]
        if self.audio:
            ends.append(self.audio[-1].stamp_ns + self.audio[-1].duration_ns - 1)
        if self.commands and self.commands.stamps:
            ends.append(self.commands.stamps[-1])
        return max(ends) if ends else None


def find_bag(path: Path) -> tuple[Path, Path | None]:
    """(bag directory, robot.wav or None) for a runner output or a bag directory."""
    path = Path(path)
    if not path.exists():
        raise MoshifaceError(f"session {path} does not exist")
    if (path / "metadata.yaml").is_file():
        wav = path.parent / "robot.wav"
        return path, (wav if wav.is_file() and (path.parent / "summary.json").is_file() else None)
    if (path / "bag" / "metadata.yaml").is_file():
        wav = path / "robot.wav"
        return path / "bag", (wav if wav.is_file() else None)
    raise MoshifaceError(f"{path} is neither a session directory (with bag/) nor a rosbag2 directory "
                         "(with metadata.yaml)")


def load_session(path: Path | str) -> Session:
    from rosbags.highlevel import AnyReader

    bag, wav = find_bag(Path(path))
    session = Session(bag, wav=wav)
    wanted = {ROBOT_FACE, ROBOT_BLENDSHAPES, ROBOT_AUDIO, ROBOT_ACTUATORS}
    try:
        with AnyReader([bag]) as reader:
            connections = [c for c in reader.connections if c.topic in wanted]
            for connection, _, raw in reader.messages(connections=connections):
                try:
                    _add(session, connection.topic, reader.deserialize(raw, connection.msgtype))
                except (ValueError, AttributeError, KeyError):
                    session.skipped += 1
    except MoshifaceError:
        raise
    except Exception as exc:  # rosbags raises its own error types for unreadable bags
        raise MoshifaceError(f"cannot read the bag {bag}: {exc}") from exc
    for items in (session.faces, session.blendshapes, session.audio):
        items.sort(key=lambda m: m.stamp_ns)
    return session


def _add(session: Session, topic: str, msg) -> None:
    if topic == ROBOT_FACE:
        session.faces.append(face_frame_from_msg(msg))
    elif topic == ROBOT_BLENDSHAPES:
        session.blendshapes.append(blendshape_weights_from_msg(msg))
    elif topic == ROBOT_AUDIO:
        session.audio.append(audio_chunk_from_msg(msg))
    elif topic == ROBOT_ACTUATORS:
        names = [str(n) for n in msg.joint_names]
        if session.commands is None:
            session.commands = RecordedCommands(names)
        if names != session.commands.names or not msg.points:
            raise ValueError("actuator names changed within the session")
        session.commands.stamps.append(stamp_ns(msg))
        session.commands.positions.append(np.asarray(msg.points[0].positions, np.float64))

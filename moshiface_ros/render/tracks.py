"""What a preview draws over time, beyond the recorded robot face: the user's face, the
robot's face driven from its own voice, and the voice's loudness per video frame.

``--face-from-voice`` exists because a face model that does not lip-sync (the demo's tiny
random one) says nothing about whether the rest of the chain keeps the mouth in step with
the voice: the robot's recorded audio drives the synthetic head through the voice motion
generator (``flame.voice_motion``), stamped like the audio, so the preview shows what the
presentation path does with a face that does follow the voice, and says so in its title.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import FACE_FRAME_NS, FLAME_VERTICES, NS_PER_S, VHAP_VERTICES
from ..errors import MoshifaceError
from ..messages.types import AudioChunk, FaceFrame


@dataclass
class MeshTrack:
    """Absolute meshes over time (stamps sorted, one V x 3 array each)."""

    stamps: np.ndarray
    vertices: list[np.ndarray]


def latest(stamps: np.ndarray, t: int) -> int:
    """Index of the last stamp <= t, or -1."""
    return int(np.searchsorted(stamps, t, side="right")) - 1


def mesh_track(frames: list[FaceFrame], neutral: np.ndarray) -> MeshTrack:
    """The frames' absolute meshes (displacements added to ``neutral``); broken frames skipped."""
    stamps, vertices = [], []
    for frame in frames:
        v = frame.vertices.astype(np.float64)
        if not frame.face_present or v.shape != neutral.shape or not np.isfinite(v).all():
            continue
        stamps.append(frame.stamp_ns)
        vertices.append(neutral + v if frame.is_displacement else v)
    return MeshTrack(np.asarray(stamps, np.int64), vertices)


def load_user_faces(bag: Path) -> list[FaceFrame]:
    """The user's face frames (``/moshiface/user/face``) of a bag, sorted; none if it has none."""
    from rosbags.highlevel import AnyReader

    from ..messages.convert import face_frame_from_msg
    from ..topics import USER_FACE

    frames = []
    try:
        with AnyReader([bag]) as reader:
            connections = [c for c in reader.connections if c.topic == USER_FACE]
            if not connections:  # an empty list would mean every topic to rosbags
                return []
            for connection, _, raw in reader.messages(connections=connections):
                try:
                    frames.append(face_frame_from_msg(reader.deserialize(raw, connection.msgtype)))
                except (ValueError, AttributeError, KeyError):
                    continue
    except Exception as exc:  # rosbags raises its own error types for unreadable bags
        raise MoshifaceError(f"cannot read the user's face from the bag {bag}: {exc}") from exc
    return sorted(frames, key=lambda f: f.stamp_ns)


def _mono(chunk: AudioChunk) -> np.ndarray:
    return chunk.samples.reshape(-1, max(chunk.channels, 1)).mean(1).astype(np.float32)


def voice_track(audio: list[AudioChunk], vertices: int, seed: int = 0) -> MeshTrack:
    """The synthetic head speaking the robot's recorded audio, one frame per 40 ms from the
    first chunk's stamp (gaps in the audio are heard as silence)."""
    from ..flame.motion_head import motion_head
    from ..flame.voice_motion import VoiceMotion, motion_vertices

    if not audio:
        raise MoshifaceError("--face-from-voice needs the robot's audio, and the session has none")
    count = vertices if vertices in (FLAME_VERTICES, VHAP_VERTICES) else FLAME_VERTICES
    rate, start = audio[0].sample_rate, audio[0].stamp_ns
    end = max(c.stamp_ns + c.duration_ns for c in audio if c.sample_rate == rate)
    samples = np.zeros(int((end - start) * rate // NS_PER_S) + 1, np.float32)
    for chunk in audio:
        if chunk.sample_rate == rate:
            at = int((chunk.stamp_ns - start) * rate // NS_PER_S)
            mono = _mono(chunk)[: max(0, samples.size - at)]
            samples[at: at + mono.size] = mono
    head = motion_head(count)
    motion = VoiceMotion(seed=seed).generate(samples, rate)
    stamps = start + np.arange(motion.frames, dtype=np.int64) * FACE_FRAME_NS
    return MeshTrack(stamps, list(motion_vertices(head, motion).astype(np.float64)))


def loudness(audio: list[AudioChunk], start_ns: int, frames: int) -> np.ndarray:
    """RMS of the robot's audio in each video frame's 40 ms (by the chunks' stamps)."""
    energy, count = np.zeros(frames), np.zeros(frames)
    for chunk in audio:
        mono = _mono(chunk).astype(np.float64)
        times = chunk.stamp_ns + np.arange(mono.size) * NS_PER_S // chunk.sample_rate
        index = (times - start_ns) // FACE_FRAME_NS
        keep = (index >= 0) & (index < frames)
        np.add.at(energy, index[keep], mono[keep] ** 2)
        np.add.at(count, index[keep], 1)
    return np.sqrt(energy / np.maximum(count, 1))


def aperture_per_frame(track: MeshTrack, gauge, start_ns: int, frames: int) -> np.ndarray:
    """The lip aperture (mm) shown in each video frame (NaN before the first face)."""
    if not track.vertices:
        return np.full(frames, np.nan)
    values = np.array([float(gauge(v)) for v in track.vertices]) * 1e3
    shown = np.array([latest(track.stamps, start_ns + i * FACE_FRAME_NS) for i in range(frames)])
    return np.where(shown >= 0, values[np.maximum(shown, 0)], np.nan)

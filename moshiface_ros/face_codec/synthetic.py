"""Synthetic FLAME-like face motion, for tests and demos (real FLAME data cannot ship).

``SyntheticFace`` is a random but spatially smooth, low-rank face model with FLAME's
vertex count: a face-shaped half-ellipsoid surface (x to the face's left, y up, z out of
the face, metres), a few smooth expression fields (sums of Gaussian bumps), a jaw that
rotates the lower face about a pivot behind the mouth, and rigid head motion about the
neck. ``motion`` drives it with smooth trajectories: a speech-like jaw (syllables at about
4 Hz in phrases with pauses), slowly drifting expressions, and small head rotations and
translations. ``write_dataset`` writes a codec dataset directory (``data.py``'s format)
with a regions file whose ``lips`` set the LVE metric uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import FACE_FPS, VHAP_VERTICES
from ..regions import Regions, save_regions

FPS = FACE_FPS
HEAD_RADII = np.array([0.075, 0.105, 0.09])  # x, y, z half-axes in metres
MOUTH_Y = -0.045  # height of the mouth line
JAW_PIVOT = np.array([0.0, -0.01, -0.05])  # behind and above the mouth
NECK_PIVOT = np.array([0.0, -0.12, -0.04])


def _face_surface(vertices: int) -> np.ndarray:
    """Evenly spread points on the front of an ellipsoid (a Fibonacci spiral)."""
    i = np.arange(vertices) + 0.5
    z = 1.0 - 1.1 * i / vertices  # z from 1 down to -0.1: the front and the sides
    radius = np.sqrt(np.clip(1.0 - z ** 2, 0.0, None))
    angle = np.pi * (1 + 5 ** 0.5) * i
    unit = np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)
    return (unit * HEAD_RADII).astype(np.float64)


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from pitch (x), yaw (y), roll (z) angles in radians."""
    pitch, yaw, roll = np.moveaxis(np.asarray(angles), -1, 0)
    c, s = np.cos, np.sin
    one, zero = np.ones_like(pitch), np.zeros_like(pitch)
    rx = np.stack([one, zero, zero, zero, c(pitch), -s(pitch), zero, s(pitch), c(pitch)], -1)
    ry = np.stack([c(yaw), zero, s(yaw), zero, one, zero, -s(yaw), zero, c(yaw)], -1)
    rz = np.stack([c(roll), -s(roll), zero, s(roll), c(roll), zero, zero, zero, one], -1)
    shape = pitch.shape + (3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def _smooth_field(points: np.ndarray, rng: np.random.Generator, bumps: int, amplitude: float) -> np.ndarray:
    """A displacement field that varies smoothly over the surface (Gaussian bumps)."""
    centres = points[rng.integers(0, len(points), bumps)]
    widths = rng.uniform(0.015, 0.04, bumps)
    directions = rng.normal(size=(bumps, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    d2 = ((points[:, None, :] - centres[None]) ** 2).sum(-1)
    weights = np.exp(-d2 / (2 * widths ** 2))
    return amplitude * weights @ directions


def _smooth_noise(rng: np.random.Generator, frames: int, channels: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Sums of sinusoids at random frequencies in [low, high] Hz: smooth, zero-mean, ~unit peak."""
    t = np.arange(frames) / FPS
    out = np.zeros((frames, channels))
    for _ in range(4):
        freq = rng.uniform(low_hz, high_hz, channels)
        phase = rng.uniform(0, 2 * np.pi, channels)
        out += np.sin(2 * np.pi * t[:, None] * freq + phase) / 4
    return out


@dataclass
class SyntheticFace:
    vertices: int = VHAP_VERTICES
    rank: int = 10  # expression fields
    seed: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.template = _face_surface(self.vertices)
        self.basis = np.stack([_smooth_field(self.template, rng, 6, 0.004) for _ in range(self.rank)])
        below = np.clip((MOUTH_Y + 0.005 - self.template[:, 1]) / 0.02, 0.0, 1.0)
        front = np.clip(self.template[:, 2] / HEAD_RADII[2] + 0.2, 0.0, 1.0)
        self.jaw_weight = below * front  # 0 above the mouth, 1 on the chin
        self.lips = np.flatnonzero((np.abs(self.template[:, 1] - MOUTH_Y) < 0.008)
                                   & (np.abs(self.template[:, 0]) < 0.028)
                                   & (self.template[:, 2] > 0.6 * HEAD_RADII[2]))
        if self.lips.size < 4:  # a coarse mesh: the vertices nearest the mouth
            mouth = np.array([0.0, MOUTH_Y, HEAD_RADII[2]])
            self.lips = np.sort(np.argsort(((self.template - mouth) ** 2).sum(-1))[:4])

    def neutral(self, speaker: int) -> np.ndarray:
        """A speaker's neutral face: the template plus a smooth identity offset."""
        rng = np.random.default_rng((self.seed, speaker))
        return (self.template + _smooth_field(self.template, rng, 12, 0.006)).astype(np.float32)

    def motion(self, frames: int, seed: int, speaker: int = 0) -> np.ndarray:
        """(frames, V, 3) float32 displacements from ``neutral(speaker)``, 25 fps."""
        rng = np.random.default_rng((self.seed, speaker, seed, 1))
        neutral = self.neutral(speaker).astype(np.float64)
        expression = _smooth_noise(rng, frames, self.rank, 0.05, 0.8)
        deformed = neutral[None] + np.einsum("tk,kvc->tvc", expression, self.basis)
        jaw = self._jaw_angles(rng, frames)
        jaw_rot = _rotation(np.stack([jaw, np.zeros_like(jaw), np.zeros_like(jaw)], -1))
        offset = deformed - JAW_PIVOT
        opened = np.einsum("tij,tvj->tvi", jaw_rot, offset) + JAW_PIVOT
        deformed += self.jaw_weight[None, :, None] * (opened - deformed)
        head = _smooth_noise(rng, frames, 3, 0.05, 0.5) * np.radians([6.0, 10.0, 4.0])
        shift = _smooth_noise(rng, frames, 3, 0.05, 0.4) * 0.004
        posed = np.einsum("tij,tvj->tvi", _rotation(head), deformed - NECK_PIVOT) + NECK_PIVOT + shift[:, None]
        return (posed - neutral[None]).astype(np.float32)

    @staticmethod
    def _jaw_angles(rng: np.random.Generator, frames: int) -> np.ndarray:
        """Speech-like jaw opening in radians: ~4 Hz syllables in phrases, closed in pauses."""
        t = np.arange(frames) / FPS
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 2 * np.pi))
        phrases = (_smooth_noise(rng, frames, 1, 0.1, 0.4)[:, 0] > -0.1).astype(float)
        kernel = np.hanning(7) / np.hanning(7).sum()
        gate = np.convolve(phrases, kernel, mode="same")
        return np.radians(14.0) * syllables * gate

    def regions(self) -> Regions:
        return Regions(self.vertices, {"lips": self.lips}, source=f"synthetic face, seed {self.seed}")


def write_dataset(directory: Path | str, *, vertices: int = VHAP_VERTICES, speakers: int = 2, sequences: int = 10,
                  frames: int = 250, seed: int = 0, absolute: bool = True, rank: int = 10) -> Path:
    """A codec dataset of synthetic motion: ``sequences`` per speaker of ``frames`` frames.

    With ``absolute`` the sequences hold meshes (neutral + motion) and each speaker's
    neutral mesh is written, as tracked data would come; otherwise displacements."""
    directory = Path(directory)
    (directory / "sequences").mkdir(parents=True, exist_ok=True)
    face = SyntheticFace(vertices=vertices, rank=rank, seed=seed)
    manifest: dict = {"fps": FPS, "vertices": vertices, "speakers": {}, "sequences": [], "regions": "regions.yaml"}
    for speaker in range(speakers):
        name = f"speaker{speaker}"
        neutral = face.neutral(speaker)
        if absolute:
            (directory / "speakers").mkdir(exist_ok=True)
            np.save(directory / "speakers" / f"{name}.npy", neutral)
            manifest["speakers"][name] = {"neutral": f"speakers/{name}.npy"}
        for index in range(sequences):
            motion = face.motion(frames, seed=index, speaker=speaker)
            data = motion + neutral[None] if absolute else motion
            file = f"sequences/{name}_{index:03d}.npy"
            np.save(directory / file, data.astype(np.float32))
            manifest["sequences"].append({"name": f"{name}_{index:03d}", "file": file, "speaker": name,
                                          "displacement": not absolute})
    save_regions(face.regions(), directory / "regions.yaml")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return directory

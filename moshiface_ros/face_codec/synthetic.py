"""Codec training data without FLAME data: the synthetic head, driven by synthetic speech.

Real FLAME sequences cannot ship, so ``codec synth`` writes motion of the package's
synthetic head (``flame.motion_head``) as it talks: a speech-like voice per sequence
(``audio.synth.synthetic_speech``) drives its jaw and lips through the voice motion
generator (``flame.voice_motion``), which adds blinks, brow lifts, nods and head sway.
Each speaker is the head with its own identity coefficients. The head's regions go with
the data, so the codec's LVE is measured on the lips the voice opened.

A vertex count below FLAME's keeps a fixed subset of the head's face vertices (a quarter
of them on the lips), so small test codecs train on the same face, only sampled sparsely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio.synth import synthetic_speech
from ..constants import FACE_FPS, FLAME_VERTICES, VHAP_VERTICES
from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from ..flame.motion_head import MotionHead, motion_head
from ..flame.synthetic_expressions import EXPRESSION_NAMES
from ..flame.voice_motion import VoiceMotion, motion_vertices
from ..regions import Regions, save_regions

FPS = FACE_FPS
VOICE_RATE = 16000  # the driving voice only sets the motion: a low rate is enough and fast
IDENTITY_COMPONENTS = 20  # identity coefficients that differ between speakers


def _subset(head: MotionHead, count: int) -> np.ndarray:
    """``count`` head vertices, spread evenly over the lips (a quarter) and the rest of the face."""
    if count in (FLAME_VERTICES, VHAP_VERTICES):
        return np.arange(count)
    if not 4 <= count < FLAME_VERTICES:
        raise MoshifaceError(f"the synthetic head has {FLAME_VERTICES} or {VHAP_VERTICES} vertices (or a subset "
                             f"of at least 4), not {count}")
    lips = head.regions.get("lips")
    face = np.setdiff1d(head.regions.sets.get("face", np.arange(FLAME_VERTICES)), lips)
    on_lips = min(max(1, count // 4), lips.size)
    pick = lambda rows, k: rows[np.linspace(0, rows.size - 1, k).round().astype(np.int64)]
    chosen = np.union1d(pick(lips, on_lips), pick(face, count - on_lips))
    if chosen.size < count:  # rounding picked a vertex twice: fill from the face in order
        chosen = np.union1d(chosen, np.setdiff1d(face, chosen)[: count - chosen.size])
    return chosen


@dataclass
class SyntheticFace:
    """The synthetic head (or a subset of ``vertices`` of it), talking.

    ``rank`` is kept for the dataset's signature: the motion always uses the head's named
    expression components (``flame.synthetic_expressions``); ranks above that add small slow
    motion on further components."""

    vertices: int = VHAP_VERTICES
    rank: int = len(EXPRESSION_NAMES)
    seed: int = 0

    def __post_init__(self) -> None:
        self.head = motion_head(VHAP_VERTICES if self.vertices == VHAP_VERTICES else FLAME_VERTICES)
        self.rows = _subset(self.head, self.vertices)
        self.template = self.head.neutral[self.rows]
        self.lips = np.flatnonzero(np.isin(self.rows, self.head.regions.get("lips")))

    def _identity(self, speaker: int) -> np.ndarray:
        return np.random.default_rng((self.seed, speaker, 7)).normal(0.0, 1.0, IDENTITY_COMPONENTS)

    def neutral(self, speaker: int) -> np.ndarray:
        """A speaker's neutral face: the head with the speaker's identity coefficients."""
        return self.head.model.neutral(self._identity(speaker))[self.rows].astype(np.float32)

    def voice(self, frames: int, seed: int, speaker: int = 0) -> np.ndarray:
        """The speech that drives sequence ``seed`` of ``speaker`` (at ``VOICE_RATE``)."""
        return synthetic_speech(frames / FPS, VOICE_RATE, seed=int(self.seed * 100003 + speaker * 1009 + seed))

    def speaking(self, samples: np.ndarray, sample_rate: int, seed: int = 0, speaker: int = 0) -> np.ndarray:
        """(frames, V, 3) float32 displacements from ``neutral(speaker)``: this face saying ``samples``."""
        params = VoiceMotion(seed=seed).generate(samples, sample_rate)
        identity = self._identity(speaker)
        posed = motion_vertices(self.head, params, identity)[:, self.rows]
        return (posed - self.neutral(speaker)[None]).astype(np.float32)

    def motion(self, frames: int, seed: int, speaker: int = 0) -> np.ndarray:
        """(frames, V, 3) float32 displacements from ``neutral(speaker)``, 25 fps."""
        generator = VoiceMotion(seed=int(self.seed * 100003 + speaker * 1009 + seed))
        params = generator.generate(self.voice(frames, seed, speaker), VOICE_RATE, frames=frames)
        extra = self.rank - len(EXPRESSION_NAMES)
        if extra > 0:
            rng = np.random.default_rng((self.seed, speaker, seed, 3))
            t = np.arange(frames)[:, None] / FPS
            tail = np.sin(2 * np.pi * rng.uniform(0.05, 0.5, extra) * t + rng.uniform(0, 2 * np.pi, extra))
            params.expression = np.concatenate([params.expression, 0.5 * tail], axis=1)
        identity = self._identity(speaker)
        posed = motion_vertices(self.head, params, identity)[:, self.rows]
        return (posed - self.neutral(speaker)[None]).astype(np.float32)

    def regions(self) -> Regions:
        """The head's named regions, on this subset of its vertices."""
        position = {int(row): k for k, row in enumerate(self.rows)}
        sets = {name: [position[int(i)] for i in rows if int(i) in position]
                for name, rows in self.head.regions.sets.items()}
        return Regions(self.vertices, {k: v for k, v in sets.items() if v},
                       f"synthetic head, {self.vertices} vertices")


def write_dataset(directory: Path | str, *, vertices: int = VHAP_VERTICES, speakers: int = 2, sequences: int = 10,
                  frames: int = 250, seed: int = 0, absolute: bool = True, rank: int = len(EXPRESSION_NAMES)) -> Path:
    """A codec dataset of the synthetic head talking: ``sequences`` per speaker of ``frames`` frames.

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
    atomic_write_text(directory / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return directory

"""Tokenized dialogues on disk, and random training crops of them.

``moshiface data prepare`` writes ``DATA/tokens/<dialogue>.npz`` (one per dialogue) and
``DATA/splits.json``. Each npz holds both speakers' streams over the same T steps:

- ``text``  [2, T]     inner-monologue text tokens (padding where the speaker says nothing new)
- ``audio`` [2, 8, T]  Mimi tokens
- ``face``  [2, N, T]  face codec tokens, -1 where the speaker's face is missing
- ``energy`` [2, F]    optional: log RMS of each speaker's original waveform per 40 ms face
                       frame (what evaluation scores lip sync against, not audio decoded by Mimi)

Either speaker can play the model (the robot) and the other the user, so every dialogue
gives two training conversations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import MoshifaceError

SPLITS_FILE = "splits.json"
TOKENS_DIR = "tokens"


@dataclass
class Dialogue:
    name: str
    text: np.ndarray  # [2, T]
    audio: np.ndarray  # [2, Q, T]
    face: np.ndarray  # [2, N, T]
    energy: np.ndarray | None = None  # [2, frames]: speech energy of the original waveforms

    @property
    def steps(self) -> int:
        return int(self.text.shape[-1])

    def streams(self, robot: int) -> tuple[np.ndarray, np.ndarray]:
        """(codes [1 + 2Q, T], face [2N, T]) with speaker ``robot`` as the model."""
        user = 1 - robot
        codes = np.concatenate([self.text[robot][None], self.audio[robot], self.audio[user]], axis=0)
        face = np.concatenate([self.face[robot], self.face[user]], axis=0)
        return codes.astype(np.int64), face.astype(np.int64)


def load_dialogue(path: Path) -> Dialogue:
    try:
        with np.load(path) as data:
            text, audio, face = data["text"], data["audio"], data["face"]
            energy = data["energy"] if "energy" in data.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise MoshifaceError(f"{path} is not a tokenized dialogue (text, audio, face arrays): {exc}") from exc
    if text.ndim != 2 or audio.ndim != 3 or face.ndim != 3 or not (
            text.shape[0] == audio.shape[0] == face.shape[0] == 2
            and text.shape[1] == audio.shape[2] == face.shape[2]):
        raise MoshifaceError(f"{path}: inconsistent shapes text {text.shape}, audio {audio.shape}, face {face.shape}")
    if energy is not None and (energy.ndim != 2 or energy.shape[0] != 2):
        raise MoshifaceError(f"{path}: energy must be [2, frames], got {energy.shape}")
    return Dialogue(path.stem, text, audio, face, energy)


def read_splits(data_dir: Path) -> dict[str, list[str]]:
    path = data_dir / SPLITS_FILE
    try:
        splits = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MoshifaceError(f"{path} is missing or unreadable: run `moshiface data prepare` first") from exc
    return {k: list(v) for k, v in splits.items()}


def load_split(data_dir: Path, split: str) -> list[Dialogue]:
    names = read_splits(data_dir).get(split, [])
    if not names:
        raise MoshifaceError(f"{data_dir / SPLITS_FILE} lists no {split!r} dialogues")
    return [load_dialogue(data_dir / TOKENS_DIR / f"{name}.npz") for name in names]


class CropSampler:
    """Random crops of ``seq_len`` steps, both speakers taking turns as the robot.

    Shorter dialogues are padded with -1 (no input, no loss). ``user_face_dropout`` hides
    the user's face for a whole crop with that probability, so that the model also learns
    what to do when the camera sees no one. Each process seeds its own generator with
    ``seed + rank``: ranks draw different crops.
    """

    def __init__(self, dialogues: list[Dialogue], seq_len: int, seed: int = 0, rank: int = 0,
                 user_face_dropout: float = 0.0) -> None:
        if not dialogues:
            raise MoshifaceError("no dialogues to train on")
        self.dialogues = dialogues
        self.seq_len = seq_len
        self.user_face_dropout = user_face_dropout
        self.rng = np.random.default_rng(seed + 1000 * rank)
        lengths = np.array([d.steps for d in dialogues], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def crop(self, dialogue: Dialogue, robot: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        codes, face = dialogue.streams(robot)
        codes, face = codes[:, start:start + self.seq_len], face[:, start:start + self.seq_len]
        missing = self.seq_len - codes.shape[1]
        if missing > 0:
            codes = np.pad(codes, ((0, 0), (0, missing)), constant_values=-1)
            face = np.pad(face, ((0, 0), (0, missing)), constant_values=-1)
        return codes, face

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        codes, faces = [], []
        for _ in range(size):
            dialogue = self.dialogues[self.rng.choice(len(self.dialogues), p=self.weights)]
            start = int(self.rng.integers(0, max(1, dialogue.steps - self.seq_len + 1)))
            c, f = self.crop(dialogue, int(self.rng.integers(2)), start)
            if self.user_face_dropout and self.rng.random() < self.user_face_dropout:
                f = f.copy()
                f[f.shape[0] // 2:] = -1
            codes.append(c)
            faces.append(f)
        return torch.from_numpy(np.stack(codes)), torch.from_numpy(np.stack(faces))

    def fixed_batches(self, count: int, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Deterministic batches (validation): same crops on every call."""
        saved = self.rng
        self.rng = np.random.default_rng(12345)
        try:
            return [self.batch(size) for _ in range(count)]
        finally:
            self.rng = saved

"""A face-motion dataset directory, its 8:1:1 split, and training windows.

Layout (``synthetic.write_dataset`` writes one)::

    DIR/manifest.json
    DIR/sequences/*.npy        float32 (T, V, 3) at 25 fps: meshes or displacements
    DIR/speakers/*.npy         float32 (V, 3) neutral mesh per speaker (for meshes)
    DIR/regions.yaml           optional: vertex regions, ``lips`` for the LVE metric

    manifest.json: {"fps": 25, "vertices": 5143,
                    "speakers": {"alice": {"neutral": "speakers/alice.npy"}},
                    "sequences": [{"name": "alice_001", "file": "sequences/alice_001.npy",
                                   "speaker": "alice", "displacement": false}],
                    "regions": "regions.yaml"}

A sequence with ``"displacement": false`` holds meshes; its speaker's neutral mesh is
subtracted on load, so the codec always sees displacements from the neutral face. Files
are memory-mapped: a 70-hour corpus (hundreds of GB) is read window by window.

The split is by sequence (windows of one sequence never straddle splits): names sorted,
shuffled with a fixed seed, then 8:1:1 into train / validation / test, with at least one
sequence in validation and test when there are three or more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..constants import FACE_FPS
from ..errors import MoshifaceError
from ..regions import Regions, load_regions

SPLITS = ("train", "validation", "test")
FPS = FACE_FPS  # the motion rate the codec is built for


@dataclass
class Sequence:
    name: str
    path: Path
    speaker: str
    neutral: np.ndarray | None  # (V, 3), None when the file holds displacements
    frames: int

    def load(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Displacements (frames, V, 3) float32 of frames [start, stop)."""
        data = np.load(self.path, mmap_mode="r")[start:stop]
        out = np.array(data, dtype=np.float32)
        if self.neutral is not None:
            out -= self.neutral[None]
        if not np.isfinite(out).all():
            raise MoshifaceError(f"{self.path} contains NaN or infinite values (frames {start}..{start + len(out)})")
        return out


def split_names(names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """8:1:1 by sequence, reproducible for a given seed and set of names."""
    order = sorted(names)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_val = n_test = max(1, round(n / 10)) if n >= 3 else 0
    n_train = n - n_val - n_test
    return {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


class FaceDataset:
    """The sequences of a dataset directory, validated up front (shapes, not values)."""

    def __init__(self, directory: Path | str, seed: int = 0) -> None:
        self.directory = Path(directory)
        manifest = self._manifest()
        self.fps = manifest.get("fps", FPS)
        if self.fps != FPS:
            raise MoshifaceError(f"{self.directory}: motion must be at {FPS} fps, the manifest says {self.fps}")
        self.vertices = self._int(manifest, "vertices")
        neutrals = {name: self._neutral(name, entry) for name, entry in (manifest.get("speakers") or {}).items()}
        self.sequences = {s.name: s for s in (self._sequence(e, neutrals) for e in manifest.get("sequences") or [])}
        if not self.sequences:
            raise MoshifaceError(f"{self.directory}/manifest.json lists no sequences")
        self.splits = split_names(list(self.sequences), seed)
        regions = manifest.get("regions")
        self.regions_path = self.directory / regions if regions else None

    def _manifest(self) -> dict:
        path = self.directory / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except OSError as exc:
            raise MoshifaceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise MoshifaceError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise MoshifaceError(f"{path} must hold a JSON object")
        return manifest

    def _int(self, manifest: dict, key: str) -> int:
        value = manifest.get(key)
        if not isinstance(value, int) or value < 1:
            raise MoshifaceError(f"{self.directory}/manifest.json: '{key}' must be a positive integer")
        return value

    def _array_header(self, path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise MoshifaceError(f"cannot read {path} as a .npy array: {exc}") from exc

    def _neutral(self, speaker: str, entry: dict) -> np.ndarray:
        path = self.directory / str(entry.get("neutral", ""))
        neutral = np.asarray(self._array_header(path), dtype=np.float32)
        if neutral.shape != (self.vertices, 3):
            raise MoshifaceError(f"{path}: the neutral mesh of {speaker} must be ({self.vertices}, 3), "
                                 f"got {neutral.shape}")
        return neutral

    def _sequence(self, entry: dict, neutrals: dict[str, np.ndarray]) -> Sequence:
        path = self.directory / str(entry.get("file", ""))
        name = str(entry.get("name") or Path(path).stem)
        data = self._array_header(path)
        if data.ndim != 3 or data.shape[1:] != (self.vertices, 3):
            raise MoshifaceError(f"{path}: a sequence must be (frames, {self.vertices}, 3), got {data.shape}")
        if not np.issubdtype(data.dtype, np.floating):
            raise MoshifaceError(f"{path}: a sequence must hold floats, got {data.dtype}")
        neutral = None
        if not entry.get("displacement", False):
            speaker = entry.get("speaker")
            if speaker not in neutrals:
                raise MoshifaceError(f"{path} holds meshes but its speaker {speaker!r} has no neutral mesh "
                                     "in the manifest (or mark it \"displacement\": true)")
            neutral = neutrals[speaker]
        return Sequence(name, path, str(entry.get("speaker", "")), neutral, data.shape[0])

    def split(self, name: str) -> list[Sequence]:
        if name not in SPLITS:
            raise MoshifaceError(f"unknown split {name!r}: one of {', '.join(SPLITS)}")
        return [self.sequences[n] for n in self.splits[name]]

    def regions(self) -> Regions | None:
        if self.regions_path is None:
            return None
        regions = load_regions(self.regions_path)
        regions.check_vertices(self.vertices, self.regions_path)
        return regions


class Windows(torch.utils.data.Dataset):
    """Fixed-length training windows (a whole number of steps) over some sequences."""

    def __init__(self, sequences: list[Sequence], window: int, stride: int | None = None, step_frames: int = 2) -> None:
        if window < step_frames or window % step_frames:
            raise MoshifaceError(f"the window ({window} frames) must be a whole number of {step_frames}-frame steps")
        stride = stride or window // 2
        self.sequences = sequences
        self.window = window
        self.index = [(i, start) for i, seq in enumerate(sequences)
                      for start in range(0, seq.frames - window + 1, stride)]
        if not self.index:
            longest = max((s.frames for s in sequences), default=0)
            raise MoshifaceError(f"no sequence is as long as one {window}-frame window (longest: {longest} frames)")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        sequence, start = self.index[item]
        return torch.from_numpy(self.sequences[sequence].load(start, start + self.window))


def whole_steps(sequence: Sequence, step_frames: int = 2, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """A sequence as displacements in chunks of at most ``max_frames`` whole steps (a trailing
    odd frame is left out: it is less than a step)."""
    usable = sequence.frames - sequence.frames % step_frames
    chunk = usable if max_frames is None else max(step_frames, max_frames - max_frames % step_frames)
    for start in range(0, usable, chunk):
        yield sequence.load(start, min(start + chunk, usable))

"""What ``moshiface eval`` evaluates, loaded and checked once: the model (as ``moshiface run``
loads it: ``speech.session``'s thread, device and dtype rules), its Mimi, the face codec and
the lip vertices; and the two decoders every protocol uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from moshi.models.compression import MimiModel

from ..errors import MoshifaceError
from ..face_codec.model import FaceCodec
from ..face_lm.model import FaceLMModel
from ..speech.engine import Sampling
from ..speech.session import SessionOptions, load_models, resolve_placement


@dataclass
class EvalConfig:
    data: Path
    model: str
    codec: Path
    out: Path
    regions: Path | None = None
    corpus: Path | None = None  # a `data synth` corpus: also measure the user-face effect on its head
    modes: tuple[str, ...] = ("teacher-forced", "free-run")
    max_dialogues: int | None = None
    max_steps: int | None = None
    free_runs: int = 4
    free_run_steps: int = 250
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    face_temperature: float | None = None  # None: what `moshiface run` samples with (``Sampling``)


@dataclass
class Subject:
    """What both protocols evaluate: the model, its Mimi, the face codec and the lips."""

    lm: FaceLMModel
    mimi: MimiModel
    codec: FaceCodec
    lips: np.ndarray
    device: torch.device
    sampling: Sampling = field(default_factory=Sampling)


def load_subject(config: EvalConfig) -> Subject:
    """The model, the codec and the lip vertices, each checked against the others."""
    from ..face_codec.checkpoint import load_codec
    from ..regions import DEFAULT_REGIONS_FILE, load_regions

    options = SessionOptions(model=config.model, device=config.device, seed=config.seed)
    placement = resolve_placement(options)  # the same thread, device and dtype rules as `moshiface run`
    models = load_models(options, placement)
    device = placement.device
    if not isinstance(models.lm, FaceLMModel):
        raise MoshifaceError(f"{config.model} is an audio-only Moshi model: evaluation needs a Moshi-Face checkpoint")
    codec = load_codec(config.codec, device)
    face = models.lm.face_config
    if codec.config.n_tokens != face.n_tokens or codec.config.codebook_size != face.card:
        raise MoshifaceError(f"the codec ({codec.config.n_tokens} tokens of {codec.config.codebook_size}) does not "
                             f"match the model's face streams ({face.n_tokens} of {face.card})")
    regions_path = config.regions or DEFAULT_REGIONS_FILE
    regions = load_regions(regions_path)
    regions.check_vertices(codec.config.vertices, regions_path)
    sampling = Sampling() if config.face_temperature is None else Sampling(face_temperature=config.face_temperature)
    return Subject(models.lm, models.mimi, codec, regions.get("lips", regions_path), device, sampling)


@torch.no_grad()
def decode_face(codec: FaceCodec, tokens: np.ndarray, window_steps: int = 250) -> np.ndarray:
    """[N, S] tokens (all valid) -> (2S, V, 3) displacements, window by window."""
    steps = tokens.shape[1]
    r = codec.config.downsample
    out = np.zeros((steps * r, codec.config.vertices, 3), dtype=np.float32)
    device = codec.scale.device
    for first in range(0, steps, window_steps):
        chunk = torch.from_numpy(tokens[:, first:first + window_steps].T.copy()).long().to(device)[None]
        out[first * r:(first + chunk.shape[1]) * r] = codec.decode(chunk)[0].float().cpu().numpy()
    return out


@torch.no_grad()
def decode_audio(mimi: MimiModel, tokens: np.ndarray) -> np.ndarray:
    """[8, S] Mimi tokens -> 24 kHz float32 audio."""
    device = next(mimi.parameters()).device
    pcm = mimi.decode(torch.from_numpy(tokens).long().to(device)[None])
    return pcm[0, 0].float().cpu().numpy()

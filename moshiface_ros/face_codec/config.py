"""The face codec's hyper-parameters, saved next to its weights as JSON.

The paper's sizes are the defaults: N = 8 tokens per step, one codebook of K = 256
entries of dimension C = 128, temporal downsampling r = 2 (25 fps -> 12.5 Hz), on VHAP's
5,143-vertex FLAME topology. The widths are ours: the per-frame vertex projection is the
largest weight of the model, and at batch 1 a step is bound by reading weights from
memory, so they are sized for a streaming step of about 1 ms on one CPU core.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..constants import FACE_CARD, FACE_FRAMES_PER_STEP, FACE_TOKENS, VHAP_VERTICES
from ..errors import MoshifaceError


@dataclass
class CodecConfig:
    """Everything that defines a codec's architecture and loss."""

    vertices: int = VHAP_VERTICES  # V: 5,143 for FLAME 2023 + VHAP teeth, 5,023 for plain FLAME
    n_tokens: int = FACE_TOKENS  # N latents (and tokens) per downsampled frame
    codebook_size: int = FACE_CARD  # K entries in the one shared codebook
    latent_dim: int = 128  # C, the dimension of a latent and of a codebook entry
    downsample: int = FACE_FRAMES_PER_STEP  # r: face frames per token step
    vertex_dim: int = 128  # per-frame projection of the V x 3 coordinates (a learned basis)
    width: int = 256  # transformer width
    heads: int = 4
    layers: int = 1  # transformer layers in the encoder, and again in the decoder
    ff_dim: int = 1024
    causal: bool = False  # True: the streaming variant (2 frames in -> 8 tokens out, and back)
    context: int = 64  # causal attention span in token steps (5.1 s): bounds the streaming state
    commitment: float = 0.25  # beta of the commitment term inside L_q
    ema_decay: float = 0.99  # codebook EMA; 0 switches to a learned codebook (codebook loss)
    dead_code_fraction: float = 0.03  # restart a code whose EMA usage falls below this share of the average
    lambda_q: float = 1.0
    lambda_vel: float = 1.0

    @property
    def step_frames(self) -> int:
        return self.downsample

    def validate(self) -> "CodecConfig":
        for name in ("vertices", "n_tokens", "codebook_size", "latent_dim", "downsample", "vertex_dim",
                     "width", "heads", "layers", "ff_dim", "context"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise MoshifaceError(f"codec config: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.width % self.heads:
            raise MoshifaceError(f"codec config: width {self.width} is not a multiple of heads {self.heads}")
        if self.codebook_size > 65536:
            raise MoshifaceError("codec config: codebook_size above 65536 does not fit the uint16 FaceTokens message")
        if not 0.0 <= self.ema_decay < 1.0:
            raise MoshifaceError(f"codec config: ema_decay must be in [0, 1), got {self.ema_decay}")
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "config") -> "CodecConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MoshifaceError(f"{source}: unknown codec config field(s) {', '.join(unknown)}")
        try:
            return cls(**data).validate()
        except TypeError as exc:
            raise MoshifaceError(f"{source}: {exc}") from exc


PRESETS = {
    "paper": CodecConfig(),
    "paper-causal": CodecConfig(causal=True),
    # Small enough to train in seconds on a CPU (tests, demos); V still comes from the data.
    "small": CodecConfig(vertex_dim=64, width=64, heads=2, ff_dim=128, latent_dim=32, codebook_size=256),
    "small-causal": CodecConfig(vertex_dim=64, width=64, heads=2, ff_dim=128, latent_dim=32,
                                codebook_size=256, causal=True, context=32),
}


def config_from_name(name: str, **overrides: Any) -> CodecConfig:
    """A preset by name, or a JSON file of fields; ``overrides`` (e.g. vertices) win."""
    if name in PRESETS:
        base = asdict(PRESETS[name])
    else:
        path = Path(name)
        try:
            base = json.loads(path.read_text())
        except OSError as exc:
            raise MoshifaceError(f"codec config {name!r} is neither a preset ({', '.join(PRESETS)}) "
                                 f"nor a readable JSON file: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise MoshifaceError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(base, dict):
            raise MoshifaceError(f"{path} must hold a JSON object of codec config fields")
    base.update({k: v for k, v in overrides.items() if v is not None})
    return CodecConfig.from_json(base, source=name)

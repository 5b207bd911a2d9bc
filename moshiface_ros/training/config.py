"""What ``moshiface train`` takes, and the paper's settings of its two stages.

- Stage 1: the RQ-Transformer (every Moshi weight) is frozen and only the Face
  Transformer learns: lr 5e-4, batch 32, 500 steps.
- Stage 2: everything is fine-tuned: lr 2e-6 (temporal transformer), 4e-6 (depth
  transformer), 1e-5 (Face Transformer and the face input embeddings), batch 16, 1,200
  steps.

A field left ``None`` takes its stage's value (``TrainConfig.resolved``), so the command
line's defaults and these are one set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MoshifaceError

STAGE_DEFAULTS: dict[int, dict[str, float | int]] = {
    1: {"steps": 500, "batch_size": 32, "lr_temporal": 0.0, "lr_depth": 0.0, "lr_face": 5e-4},
    2: {"steps": 1200, "batch_size": 16, "lr_temporal": 2e-6, "lr_depth": 4e-6, "lr_face": 1e-5},
}


@dataclass
class TrainConfig:
    """Everything ``moshiface train`` takes; ``None`` fields get the stage's defaults."""

    stage: int
    data: Path
    out: Path
    model: str = "tiny"  # stage 1: a Moshi (or Moshi-Face) model; stage 2: usually stage 1's final/
    steps: int | None = None
    batch_size: int | None = None
    micro_batch: int = 4
    seq_len: int = 250  # steps per crop (20 s at 12.5 Hz)
    lr_temporal: float | None = None
    lr_depth: float | None = None
    lr_face: float | None = None
    face_weight: float = 1.0  # lambda
    text_padding_weight: float = 1.0
    semantic_weight: float = 1.0
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 4
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    progress: bool = True
    activation_checkpointing: bool = False
    user_face_dropout: float = 0.0
    stage1_face_inputs: bool = False  # also train the face input embeddings in stage 1
    face: dict[str, Any] = field(default_factory=dict)  # FaceConfig fields when extending Moshi

    def resolved(self) -> "TrainConfig":
        if self.stage not in STAGE_DEFAULTS:
            raise MoshifaceError(f"--stage must be 1 or 2, got {self.stage}")
        values = asdict(self)
        for key, default in STAGE_DEFAULTS[self.stage].items():
            if values[key] is None:
                values[key] = default
        config = TrainConfig(**values)
        for name in ("steps", "batch_size", "micro_batch", "seq_len", "eval_every", "save_every"):
            if getattr(config, name) <= 0:
                raise MoshifaceError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
        if not 0.0 <= config.user_face_dropout <= 1.0:
            raise MoshifaceError("--user-face-dropout must lie in [0, 1]")
        return config

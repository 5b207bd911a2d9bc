"""The model a training run starts from, what each stage trains, and its optimizer.

``--model`` names a Moshi model (extended here with new face parameters) or a Moshi-Face
checkpoint. Parameters fall into three groups with their own learning rates: the temporal
transformer (and everything else of Moshi), the depth transformer, and the face parameters
(the Face Transformer and the face input embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import MoshifaceError
from ..face_lm.config import FaceConfig
from ..face_lm.model import FaceLMModel
from ..face_lm.weights import FACE_SECTION, extend_lm, read_face_section
from ..moshi_compat import default_lm_kwargs
from ..speech.models import ModelSpec, SpeechModels, load_speech_models
from .config import TrainConfig

GROUPS = ("temporal", "depth", "face")
_DEPTH_PREFIXES = ("depformer", "linears.")
_FACE_PREFIXES = ("face_transformer.", "face_emb.")


@dataclass
class Loaded:
    lm: FaceLMModel
    lm_config: dict[str, Any]
    base: str  # what a face-only checkpoint of this model names as its base
    models: SpeechModels | None  # Mimi and tokenizer for full checkpoints; None off rank 0
    root: torch.nn.Module | None = None  # the FSDP root (``distributed.ShardedLM``) when sharded

    @property
    def module(self) -> torch.nn.Module:
        """What the training loop calls: the FSDP root, or the model itself."""
        return self.root if self.root is not None else self.lm


def _base_of(spec_text: str) -> str:
    spec = ModelSpec.parse(spec_text)
    if spec.kind == "dir":
        section = read_face_section(Path(spec.location))
        if section is not None and section["weights"] == "face":
            return str(section["base"])
    return str(spec)


def load_model(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> Loaded:
    """The model ``--model`` names, extended with the face streams when it is plain Moshi
    (new face parameters from ``config.face``); stage 1 may replace an existing face."""
    models = load_speech_models(ModelSpec.parse(config.model), device, dtype)
    lm_config = dict(models.lm_config or default_lm_kwargs())
    lm_config.pop(FACE_SECTION, None)
    if isinstance(models.lm, FaceLMModel):
        if config.face and (config.stage == 1 or config.model == "tiny"):  # tiny's face is untrained anyway
            wanted = face_config(models.lm.face_config, config.face)
            if wanted != models.lm.face_config:
                models.lm.face_config = wanted
                models.lm.build_face_modules(device, dtype)
    else:
        models.lm, _ = extend_lm(models.lm, lm_config, face_config(FaceConfig(), config.face), device, dtype)
    _take_data_tokenizer(models, config.data)
    return Loaded(models.lm, lm_config, _base_of(config.model), models)


def face_config(current: FaceConfig, asked: dict) -> FaceConfig:
    """``current`` with the fields asked for; a new width without a feed-forward size keeps
    the current ratio of the two (tiny's 64 / 128, the paper's 1,024 / 4,224)."""
    fields = dict(asked)
    if "dim" in fields and "dim_feedforward" not in fields:
        fields["dim_feedforward"] = round(current.dim_feedforward * fields["dim"] / current.dim)
    return FaceConfig.from_dict({**current.to_dict(), **fields})


def _take_data_tokenizer(models: SpeechModels, data: Path) -> None:
    """The tokenizer the data's text stream was made with (``data prepare`` leaves it there)
    becomes the model's, so that every checkpoint of this run carries it."""
    from .tokenizer import TOKENIZER_FILE, load_tokenizer

    path = data / TOKENIZER_FILE
    if path.is_file():
        models.tokenizer = load_tokenizer(path)


def group_of(name: str) -> str:
    """temporal, depth or face (names as in the model, or under the FSDP root's ``lm.``)."""
    name = name.removeprefix("lm.")
    if name.startswith(_FACE_PREFIXES):
        return "face"
    if name.startswith(_DEPTH_PREFIXES):
        return "depth"
    return "temporal"


def set_trainable(model: FaceLMModel, stage: int, stage1_face_inputs: bool = False) -> dict[str, int]:
    """Freezes what the stage does not train; returns trainable parameter counts by group."""
    counts = dict.fromkeys(GROUPS, 0)
    for name, param in model.named_parameters():
        if stage == 1:
            train = name.startswith("face_transformer.") or (stage1_face_inputs and name.startswith("face_emb."))
        else:
            train = True
        param.requires_grad_(train)
        if train:
            counts[group_of(name)] += param.numel()
    return counts


def trainable_counts(model: FaceLMModel) -> dict[str, int]:
    """Parameters that need a gradient, by group."""
    return {g: sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and group_of(n) == g)
            for g in GROUPS}


def checkpoint_activations(model: FaceLMModel) -> None:
    """Recomputes the transformers' activations in the backward pass (memory for time)."""
    model.transformer.checkpointing = True
    if model.depformer is not None:
        model.depformer.checkpointing = True


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    lrs = {"temporal": config.lr_temporal, "depth": config.lr_depth, "face": config.lr_face}
    groups: dict[str, list[torch.nn.Parameter]] = {g: [] for g in GROUPS}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[group_of(name)].append(param)
    param_groups = [{"params": p, "lr": lrs[g], "base_lr": lrs[g], "name": g} for g, p in groups.items() if p]
    if not param_groups:
        raise MoshifaceError("nothing to train: every parameter is frozen")
    return torch.optim.AdamW(param_groups, betas=(0.9, 0.95), weight_decay=config.weight_decay, eps=1e-8)


def set_lr(optimizer: torch.optim.Optimizer, step: int, warmup: int) -> None:
    """Linear warm-up over ``warmup`` steps, then each group's base rate."""
    scale = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale

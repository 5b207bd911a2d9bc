"""The paper's two training stages.

- Stage 1: the RQ-Transformer (every Moshi weight) is frozen and only the Face
  Transformer learns: lr 5e-4, batch 32, 500 steps. The frozen part runs without
  autograd. Output: face-only checkpoints over the base model.
- Stage 2: everything is fine-tuned: lr 2e-6 (temporal transformer), 4e-6 (depth
  transformer), 1e-5 (Face Transformer and the face input embeddings), batch 16, 1,200
  steps. Output: full checkpoints.

Loss = L_text + L_audio + lambda * L_face (lambda = 1). One process on the CPU or one GPU
(bf16 autocast, trainable weights kept in float32, frozen ones in bf16); under
``torchrun`` with several processes the model is sharded with PyTorch FSDP2
(``fully_shard``, bf16 compute, float32 reduction): a full fine-tune of the 7B model
needs ~16 bytes per parameter of weights, gradients and AdamW state, more than one GPU
holds. The batch is split into micro-batches over processes and gradient accumulation.

Outputs in ``--out``: ``checkpoints/step-NNNNNN/`` (model checkpoint + trainer state, for
``--resume``), ``final/`` (the model checkpoint of the last step), ``history.jsonl``,
``loss.png`` and ``train_config.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import MoshifaceError
from .config import FaceConfig
from .dataset import CropSampler, load_split
from .model import FaceLMModel, LossWeights, face_lm_loss

STAGE_DEFAULTS: dict[int, dict[str, float | int]] = {
    1: {"steps": 500, "batch_size": 32, "lr_temporal": 0.0, "lr_depth": 0.0, "lr_face": 5e-4},
    2: {"steps": 1200, "batch_size": 16, "lr_temporal": 2e-6, "lr_depth": 4e-6, "lr_face": 1e-5},
}
GROUPS = ("temporal", "depth", "face")
_DEPTH_PREFIXES = ("depformer", "linears.")
_FACE_PREFIXES = ("face_transformer.", "face_emb.")


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


# -- processes -------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.sharded:
            torch.distributed.barrier()


def init_distributed(device: str) -> Dist:
    """One process, or the ``torchrun`` group (NCCL on GPUs, gloo on CPUs)."""
    from ..speech.models import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    wanted = resolve_device(device)
    if world == 1:
        return Dist(0, 1, wanted)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.type == "cuda":
        torch.cuda.set_device(local)
        wanted = torch.device("cuda", local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    return Dist(rank, world, wanted)


# -- the model to train --------------------------------------------------------------------


@dataclass
class Loaded:
    lm: FaceLMModel
    lm_config: dict[str, Any]
    base: str  # what a face-only checkpoint of this model names as its base
    models: Any  # SpeechModels (Mimi, tokenizer) for full checkpoints; None off rank 0
    root: torch.nn.Module | None = None  # the FSDP root (``ShardedLM``) when sharded

    @property
    def module(self) -> torch.nn.Module:
        """What the training loop calls: the FSDP root, or the model itself."""
        return self.root if self.root is not None else self.lm


def _base_of(spec_text: str) -> str:
    from ..speech.models import ModelSpec
    from .weights import read_face_section

    spec = ModelSpec.parse(spec_text)
    if spec.kind == "dir":
        section = read_face_section(Path(spec.location))
        if section is not None and section["weights"] == "face":
            return str(section["base"])
    return str(spec)


def load_model(config: TrainConfig, device: torch.device, dtype: torch.dtype) -> Loaded:
    """The model ``--model`` names, extended with the face streams when it is plain Moshi
    (new face parameters from ``config.face``); stage 1 may replace an existing face."""
    from moshi.models import loaders

    from ..speech.models import ModelSpec, load_speech_models
    from .weights import extend_lm

    models = load_speech_models(ModelSpec.parse(config.model), device, dtype)
    lm_config = dict(models.lm_config or loaders._lm_kwargs)
    lm_config.pop("moshi_face", None)
    if isinstance(models.lm, FaceLMModel):
        if config.face and config.stage == 1:
            wanted = FaceConfig.from_dict({**models.lm.face_config.to_dict(), **config.face})
            if wanted != models.lm.face_config:
                models.lm.face_config = wanted
                models.lm.build_face_modules(device, dtype)
    else:
        face = FaceConfig.from_dict(config.face)
        models.lm, _ = extend_lm(models.lm, lm_config, face, device, dtype)
    return Loaded(models.lm, lm_config, _base_of(config.model), models)


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


def _set_lr(optimizer: torch.optim.Optimizer, step: int, warmup: int) -> None:
    scale = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale


# -- FSDP ------------------------------------------------------------------------------------


class ShardedLM(torch.nn.Module):
    """The FSDP root. ``fully_shard`` swaps a module's class for a subclass, which Python
    refuses for moshi's modules (their bases include ``typing.Generic`` and ``abc.ABC``);
    this plain wrapper takes the root's place, and inside moshi's layers the plain
    submodules (projections, gating) become the FSDP units."""

    def __init__(self, lm: FaceLMModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, codes: torch.Tensor, face_codes: torch.Tensor):
        return self.lm(codes, face_codes)


def _shard_plain_parts(module: torch.nn.Module, kwargs: dict[str, Any]) -> None:
    from moshi.modules.streaming import StreamingModule
    from torch.distributed.fsdp import fully_shard

    for child in module.children():
        if isinstance(child, (StreamingModule, torch.nn.ModuleList)):
            _shard_plain_parts(child, kwargs)
        elif any(True for _ in child.parameters()):
            fully_shard(child, **kwargs)


def shard_model(model: FaceLMModel, device: torch.device) -> ShardedLM:
    """FSDP2: units inside every transformer layer, the Face Transformer, and the rest at the root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.transformer.layers:
        _shard_plain_parts(layer, kwargs)
    if model.depformer is not None:
        for layer in model.depformer.layers:
            _shard_plain_parts(layer, kwargs)
    fully_shard(model.face_transformer, **kwargs)
    root = ShardedLM(model)
    fully_shard(root, **kwargs)
    return root


def build_sharded(config: TrainConfig, dist: Dist) -> Loaded:
    """Rank 0 reads the weights on the CPU; every rank builds the model on the meta device,
    shards it, and receives its shards by broadcast (no rank holds two copies)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    from .model import lm_constructor_kwargs

    payload: list[Any] = [None]
    loaded = None
    if dist.main:
        loaded = load_model(config, torch.device("cpu"), torch.float32)
        payload = [(loaded.lm_config, loaded.lm.face_config.to_dict(), loaded.base)]
    torch.distributed.broadcast_object_list(payload, src=0)
    lm_config, face_dict, base = payload[0]
    model = FaceLMModel(FaceConfig.from_dict(face_dict), device="meta", dtype=torch.float32,
                        **lm_constructor_kwargs(lm_config))
    set_trainable(model, config.stage, config.stage1_face_inputs)
    if config.activation_checkpointing:
        _checkpoint_activations(model)
    root = shard_model(model, dist.device)
    root.to_empty(device=dist.device)
    state = {f"lm.{k}": v for k, v in loaded.lm.state_dict().items()} if loaded is not None else {}
    set_model_state_dict(root, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return Loaded(model, lm_config, base, loaded.models if loaded is not None else None, root)


def _checkpoint_activations(model: FaceLMModel) -> None:
    model.transformer.checkpointing = True
    if model.depformer is not None:
        model.depformer.checkpointing = True


# -- checkpoints -----------------------------------------------------------------------------


def _full_state(loaded: Loaded, dist: Dist) -> dict[str, torch.Tensor]:
    if loaded.root is None:
        return loaded.lm.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(loaded.root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("lm."): v for k, v in state.items()}


def save_model_dir(loaded: Loaded, stage: int, directory: Path, dist: Dist) -> None:
    """Stage 1: face parameters over the base; stage 2: the full model with Mimi and tokenizer."""
    from ..speech.models import SpeechModels, save_checkpoint_dir
    from .weights import FACE_PREFIXES, save_face_only

    state = _full_state(loaded, dist)  # collective under FSDP: every rank takes part
    if not dist.main:
        return
    if stage == 1:
        face_state = {k: v for k, v in state.items() if k.startswith(FACE_PREFIXES)}
        save_face_only(loaded.lm, directory, loaded.base, loaded.lm_config, face_state)
        return
    models = loaded.models
    holder = _StateHolder(state, loaded.lm.face_config)
    save_checkpoint_dir(SpeechModels(models.mimi, holder, models.tokenizer, "", loaded.lm_config,
                                     models.mimi_config), directory)


class _StateHolder(torch.nn.Module):
    """Stands in for the LM when writing a checkpoint from a gathered state dict."""

    def __init__(self, state: dict[str, torch.Tensor], face: FaceConfig) -> None:
        super().__init__()
        self._state = state
        self.face_config = face

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self._state


def _trainer_state(optimizer: torch.optim.Optimizer, step: int, sampler: CropSampler,
                   history: list[dict[str, Any]]) -> dict[str, Any]:
    return {"optimizer": optimizer.state_dict(), "step": step, "sampler_rng": sampler.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(), "history": history}


def save_checkpoint(loaded: Loaded, optimizer: torch.optim.Optimizer, config: TrainConfig, step: int,
                    sampler: CropSampler, history: list[dict[str, Any]], dist: Dist) -> Path:
    """``checkpoints/step-NNNNNN``, written under a temporary name and renamed when whole."""
    final = config.out / "checkpoints" / f"step-{step:06d}"
    tmp = final.with_name(final.name + ".tmp")
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    save_model_dir(loaded, config.stage, tmp, dist)
    if dist.sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(loaded.root, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(tmp / "sharded"))
        if dist.main:
            extra = _trainer_state(optimizer, step, sampler, history)
            extra.pop("optimizer")
            torch.save(extra, tmp / "trainer.pt")
    else:
        torch.save(_trainer_state(optimizer, step, sampler, history), tmp / "trainer.pt")
    dist.barrier()
    if dist.main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    dist.barrier()
    return final


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(p for p in (out / "checkpoints").glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                   and (p / "trainer.pt").is_file())
    return found[-1] if found else None


def resume_from(checkpoint: Path, loaded: Loaded, optimizer: torch.optim.Optimizer, sampler: CropSampler,
                config: TrainConfig, dist: Dist) -> tuple[int, list[dict[str, Any]]]:
    from safetensors.torch import load_file

    from .weights import load_face_weights

    extra = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
    if dist.sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(loaded.root, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=str(checkpoint / "sharded"))
        set_state_dict(loaded.root, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        if config.stage == 1:
            load_face_weights(loaded.lm, checkpoint)
        else:
            state = load_file(str(checkpoint / "model.safetensors"), device=str(dist.device))
            loaded.lm.load_state_dict(state, strict=True)
        optimizer.load_state_dict(extra["optimizer"])
    sampler.rng.bit_generator.state = extra["sampler_rng"]
    torch.set_rng_state(extra["torch_rng"])
    return int(extra["step"]), list(extra["history"])


# -- the loop --------------------------------------------------------------------------------


def _micro_batches(sampler: CropSampler, config: TrainConfig, dist: Dist) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    per_rank = config.batch_size // dist.world
    for first in range(0, per_rank, config.micro_batch):
        yield sampler.batch(min(config.micro_batch, per_rank - first))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _weights(config: TrainConfig) -> LossWeights:
    return LossWeights(config.face_weight, config.text_padding_weight, config.semantic_weight)


def train_step(model: FaceLMModel, optimizer: torch.optim.Optimizer, batches: list[tuple[torch.Tensor, torch.Tensor]],
               config: TrainConfig, dist: Dist) -> dict[str, float]:
    """One optimizer step over the micro-batches (gradient accumulation). ``model`` is
    the model or its FSDP root (``ShardedLM``)."""
    lm = model.lm if isinstance(model, ShardedLM) else model
    total_items = sum(c.shape[0] for c, _ in batches)
    sums = {"total": 0.0, "text": 0.0, "audio": 0.0, "face": 0.0}
    optimizer.zero_grad(set_to_none=True)
    for index, (codes, face) in enumerate(batches):
        codes, face = codes.to(dist.device), face.to(dist.device)
        if dist.sharded:
            model.set_requires_gradient_sync(index == len(batches) - 1)
        with _autocast(dist.device):
            output = model(codes, face)
            losses = face_lm_loss(lm, output, codes, face, _weights(config))
        share = codes.shape[0] / total_items
        (losses["total"] * share).backward()
        for key in sums:
            sums[key] += float(losses[key].detach()) * share
    params = [p for p in model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    optimizer.step()
    if dist.sharded:
        packed = torch.tensor([sums[k] for k in sums], device=dist.device)
        torch.distributed.all_reduce(packed)
        sums = {k: float(v) / dist.world for k, v in zip(sums, packed.tolist())}
    sums["grad_norm"] = float(norm)
    return sums


@torch.no_grad()
def evaluate_loss(model: FaceLMModel, batches: list[tuple[torch.Tensor, torch.Tensor]], config: TrainConfig,
                  dist: Dist) -> dict[str, float]:
    lm = model.lm if isinstance(model, ShardedLM) else model
    was_training = model.training
    model.eval()
    sums = {"total": 0.0, "text": 0.0, "audio": 0.0, "face": 0.0}
    for codes, face in batches:
        codes, face = codes.to(dist.device), face.to(dist.device)
        with _autocast(dist.device):
            losses = face_lm_loss(lm, model(codes, face), codes, face, _weights(config))
        for key in sums:
            sums[key] += float(losses[key]) / len(batches)
    model.train(was_training)
    return sums


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """Training and validation losses by step, one panel per loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, key in zip(axes, ("total", "text", "audio", "face")):
        train = [(h["step"], h[key]) for h in history if h.get("split") == "train"]
        valid = [(h["step"], h[key]) for h in history if h.get("split") == "valid"]
        if train:
            ax.plot(*zip(*train), label="train", lw=1)
        if valid:
            ax.plot(*zip(*valid), "o-", label="valid", ms=3)
        ax.set_title(f"{key} loss")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Trains one stage; returns a summary (also written as ``summary.json``)."""
    from tqdm import tqdm

    config = config.resolved()
    dist = init_distributed(config.device)
    if config.batch_size % dist.world:
        raise MoshifaceError(f"--batch-size {config.batch_size} is not a multiple of the {dist.world} processes")
    _seed_everything(config.seed)
    train_set = load_split(Path(config.data), "train")
    valid_set = load_split(Path(config.data), "valid")
    if dist.main:
        config.out.mkdir(parents=True, exist_ok=True)
        checkpoints = config.out / "checkpoints"
        if not config.resume and checkpoints.exists() and any(checkpoints.iterdir()):
            raise MoshifaceError(f"{config.out} already holds checkpoints: pass --resume, or another --out")
        (config.out / "train_config.json").write_text(json.dumps(asdict(config), indent=1, default=str))
    dist.barrier()

    if dist.sharded:
        loaded = build_sharded(config, dist)
    else:
        loaded = load_model(config, dist.device, torch.float32)
        set_trainable(loaded.lm, config.stage, config.stage1_face_inputs)
        if dist.device.type == "cuda":
            for param in loaded.lm.parameters():  # frozen weights in bf16, trained ones in float32
                param.data = param.data.float() if param.requires_grad else param.data.to(torch.bfloat16)
        if config.activation_checkpointing:
            _checkpoint_activations(loaded.lm)
    model = loaded.module
    counts = {g: sum(p.numel() for n, p in loaded.lm.named_parameters() if p.requires_grad and group_of(n) == g)
              for g in GROUPS}
    model.train()
    optimizer = make_optimizer(model, config)
    sampler = CropSampler(train_set, config.seq_len, config.seed, dist.rank, config.user_face_dropout)
    valid = CropSampler(valid_set, config.seq_len, config.seed).fixed_batches(
        config.eval_batches, min(config.micro_batch, config.batch_size))

    start, history = 0, []
    if config.resume:
        found = latest_checkpoint(config.out)
        if found is not None:
            start, history = resume_from(found, loaded, optimizer, sampler, config, dist)

    bar = tqdm(total=config.steps, initial=start, disable=not (config.progress and dist.main),
               desc=f"stage {config.stage}", unit="step")
    step = start
    for step in range(start, config.steps):
        _set_lr(optimizer, step, config.warmup_steps)
        batches = list(_micro_batches(sampler, config, dist))
        losses = train_step(model, optimizer, batches, config, dist)
        record = {"step": step + 1, "split": "train", **{k: round(v, 5) for k, v in losses.items()}}
        history.append(record)
        bar.set_postfix(face=f"{losses['face']:.3f}", text=f"{losses['text']:.3f}", audio=f"{losses['audio']:.3f}")
        bar.update(1)
        if not all(math.isfinite(v) for v in losses.values()):
            raise MoshifaceError(f"the loss became {losses['total']} at step {step + 1}: lower the learning rate")
        last = step + 1 == config.steps
        if (step + 1) % config.eval_every == 0 or last:
            scores = evaluate_loss(model, valid, config, dist)
            history.append({"step": step + 1, "split": "valid", **{k: round(v, 5) for k, v in scores.items()}})
        if (step + 1) % config.save_every == 0 or last:
            save_checkpoint(loaded, optimizer, config, step + 1, sampler, history, dist)
            if dist.main:
                _write_history(config.out, history)
    bar.close()

    final = config.out / "final"
    tmp = config.out / "final.tmp"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    save_model_dir(loaded, config.stage, tmp, dist)
    summary: dict[str, Any] = {}
    if dist.main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_history(config.out, history)
        train = [h for h in history if h["split"] == "train"]
        summary = {
            "stage": config.stage, "steps": config.steps, "processes": dist.world,
            "trainable_parameters": counts, "final": str(final),
            "first_loss": train[0] if train else None, "last_loss": train[-1] if train else None,
            "valid": [h for h in history if h["split"] == "valid"][-1:] or None,
        }
        (config.out / "summary.json").write_text(json.dumps(summary, indent=1))
    dist.barrier()
    return summary


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    tmp = out / "history.jsonl.tmp"
    tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
    os.replace(tmp, out / "history.jsonl")
    plot_history(history, out / "loss.png")

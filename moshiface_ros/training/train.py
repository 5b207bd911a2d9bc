"""``moshiface train``: the paper's two training stages (settings in ``config.py``).

- Stage 1: the RQ-Transformer is frozen and only the Face Transformer learns; the frozen
  part runs without autograd. Output: face-only checkpoints over the base model.
- Stage 2: everything is fine-tuned. Output: full checkpoints.

Loss = L_text + L_audio + lambda * L_face (``loss.py``, lambda = 1). One process on the CPU
or one GPU (bf16 autocast, trainable weights kept in float32, frozen ones in bf16), or
several under ``torchrun`` with the model sharded by FSDP2 (``distributed.py``). The batch
is split into micro-batches over processes and gradient accumulation.

Outputs in ``--out``: ``checkpoints/step-NNNNNN/`` (model checkpoint + trainer state, for
``--resume``, see ``checkpoints.py``), ``final/`` (the model checkpoint of the last step),
``history.jsonl``, ``loss.png``, ``train_config.json`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text
from .checkpoints import latest_checkpoint, resume_from, save_checkpoint, save_model_dir
from .config import TrainConfig
from .dataset import CropSampler, load_split
from .distributed import Dist, ShardedLM, build_sharded, init_distributed
from .loss import LossWeights, face_lm_loss
from .model_setup import (
    Loaded,
    checkpoint_activations,
    load_model,
    make_optimizer,
    set_lr,
    set_trainable,
    trainable_counts,
)

Batch = tuple[torch.Tensor, torch.Tensor]  # (codes [B, 1 + 2Q, T], face codes [B, 2N, T])


def _micro_batches(sampler: CropSampler, config: TrainConfig, dist: Dist) -> Iterator[Batch]:
    per_rank = config.batch_size // dist.world
    for first in range(0, per_rank, config.micro_batch):
        yield sampler.batch(min(config.micro_batch, per_rank - first))


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _weights(config: TrainConfig) -> LossWeights:
    return LossWeights(config.face_weight, config.text_padding_weight, config.semantic_weight)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[Batch],
               config: TrainConfig, dist: Dist) -> dict[str, float]:
    """One optimizer step over the micro-batches (gradient accumulation). ``model`` is
    the ``FaceLMModel`` or its FSDP root (``ShardedLM``)."""
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
def evaluate_loss(model: torch.nn.Module, batches: list[Batch], config: TrainConfig,
                  dist: Dist) -> dict[str, float]:
    """Mean validation losses over fixed batches (the model's train/eval mode is kept)."""
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "history.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    plot_history(history, out / "loss.png")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- one run -----------------------------------------------------------------------------------


@dataclass
class _Run:
    """What the loop works on, built once by ``_start``."""

    config: TrainConfig
    dist: Dist
    loaded: Loaded
    optimizer: torch.optim.Optimizer
    sampler: CropSampler
    valid: list[Batch]
    counts: dict[str, int]


def _prepare_out(config: TrainConfig, dist: Dist) -> None:
    if dist.main:
        config.out.mkdir(parents=True, exist_ok=True)
        checkpoints = config.out / "checkpoints"
        if not config.resume and checkpoints.exists() and any(checkpoints.iterdir()):
            raise MoshifaceError(f"{config.out} already holds checkpoints: pass --resume, or another --out")
        atomic_write_text(config.out / "train_config.json", json.dumps(asdict(config), indent=1, default=str))
    dist.barrier()


def _build(config: TrainConfig, dist: Dist) -> Loaded:
    """The model on this process, with what the stage trains set trainable."""
    if dist.sharded:
        return build_sharded(config, dist)
    loaded = load_model(config, dist.device, torch.float32)
    set_trainable(loaded.lm, config.stage, config.stage1_face_inputs)
    if dist.device.type == "cuda":
        for param in loaded.lm.parameters():  # frozen weights in bf16, trained ones in float32
            param.data = param.data.float() if param.requires_grad else param.data.to(torch.bfloat16)
    if config.activation_checkpointing:
        checkpoint_activations(loaded.lm)
    return loaded


def _start(config: TrainConfig) -> _Run:
    """Checks, seeds, reads the data and builds the model, optimizer and samplers."""
    dist = init_distributed(config.device)
    if config.batch_size % dist.world:
        raise MoshifaceError(f"--batch-size {config.batch_size} is not a multiple of the {dist.world} processes")
    _seed_everything(config.seed)
    train_set = load_split(Path(config.data), "train")
    valid_set = load_split(Path(config.data), "valid")
    _prepare_out(config, dist)
    loaded = _build(config, dist)
    counts = trainable_counts(loaded.lm)
    loaded.module.train()
    optimizer = make_optimizer(loaded.module, config)
    sampler = CropSampler(train_set, config.seq_len, config.seed, dist.rank, config.user_face_dropout)
    valid = CropSampler(valid_set, config.seq_len, config.seed).fixed_batches(
        config.eval_batches, min(config.micro_batch, config.batch_size))
    return _Run(config, dist, loaded, optimizer, sampler, valid, counts)


def _train_steps(run: _Run, start: int, history: list[dict[str, Any]]) -> None:
    """Steps ``start`` .. ``config.steps``: train, validate and save on their schedules."""
    from tqdm import tqdm

    config, dist, model = run.config, run.dist, run.loaded.module
    bar = tqdm(total=config.steps, initial=start, disable=not (config.progress and dist.main),
               desc=f"stage {config.stage}", unit="step")
    for step in range(start, config.steps):
        set_lr(run.optimizer, step, config.warmup_steps)
        batches = list(_micro_batches(run.sampler, config, dist))
        losses = train_step(model, run.optimizer, batches, config, dist)
        history.append({"step": step + 1, "split": "train", **{k: round(v, 5) for k, v in losses.items()}})
        bar.set_postfix(face=f"{losses['face']:.3f}", text=f"{losses['text']:.3f}", audio=f"{losses['audio']:.3f}")
        bar.update(1)
        if not all(math.isfinite(v) for v in losses.values()):
            raise MoshifaceError(f"the loss became {losses['total']} at step {step + 1}: lower the learning rate")
        last = step + 1 == config.steps
        if (step + 1) % config.eval_every == 0 or last:
            scores = evaluate_loss(model, run.valid, config, dist)
            history.append({"step": step + 1, "split": "valid", **{k: round(v, 5) for k, v in scores.items()}})
        if (step + 1) % config.save_every == 0 or last:
            save_checkpoint(run.loaded, run.optimizer, config, step + 1, run.sampler, history, dist)
            if dist.main:
                _write_history(config.out, history)
    bar.close()


def _finish(run: _Run, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Writes ``final/``, the history and ``summary.json``; returns the summary (rank 0)."""
    config, dist = run.config, run.dist
    final = config.out / "final"
    tmp = config.out / "final.tmp"
    if dist.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    save_model_dir(run.loaded, config.stage, tmp, dist)
    summary: dict[str, Any] = {}
    if dist.main:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_history(config.out, history)
        train = [h for h in history if h["split"] == "train"]
        summary = {
            "stage": config.stage, "steps": config.steps, "processes": dist.world,
            "trainable_parameters": run.counts, "final": str(final),
            "first_loss": train[0] if train else None, "last_loss": train[-1] if train else None,
            "valid": [h for h in history if h["split"] == "valid"][-1:] or None,
        }
        atomic_write_text(config.out / "summary.json", json.dumps(summary, indent=1))
    dist.barrier()
    return summary


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Trains one stage; returns a summary (also written as ``summary.json``)."""
    run = _start(config.resolved())
    start, history = 0, []
    if run.config.resume:
        found = latest_checkpoint(run.config.out)
        if found is not None:
            start, history = resume_from(found, run.loaded, run.optimizer, run.sampler, run.config, run.dist)
    _train_steps(run, start, history)
    return _finish(run, history)

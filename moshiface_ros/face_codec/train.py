"""Training the face codec: AdamW, validation every epoch, checkpoints, resume, loss plot.

The output directory is a codec checkpoint (``checkpoint.py``) after every epoch, plus
``train_state.pt`` (optimizer, epoch, random state: what ``resume`` needs; tensors and
plain values only, read back with ``weights_only=True`` so a tampered file runs nothing),
``history.json`` (per-epoch losses and validation metrics) and ``loss.png``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text
from .checkpoint import WEIGHTS_FILE, load_codec, load_train_state, save_codec
from .config import config_from_name
from .data import FaceDataset, Windows
from .evaluate import evaluate_codec
from .model import FaceCodec

STATE_FILE = "train_state.pt"
HISTORY_FILE = "history.json"
PLOT_FILE = "loss.png"


@dataclass
class TrainOptions:
    epochs: int = 70  # the paper's
    lr: float = 1e-4
    batch_size: int = 4
    window: int = 32  # frames per training window (1.28 s, 16 steps)
    stride: int | None = None  # between windows; default half a window
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def _sample_frames(windows: Windows, max_frames: int = 4096) -> torch.Tensor:
    """Frames from windows spread over the training data (for the scale and the basis)."""
    count = max(1, min(len(windows), max_frames // windows.window))
    picks = np.linspace(0, len(windows) - 1, count).astype(int)
    return torch.cat([windows[int(i)] for i in picks])


def _init_from_data(codec: FaceCodec, windows: Windows) -> None:
    """Scale = RMS of the training motion; vertex basis = its principal components."""
    frames = _sample_frames(windows)
    rms = float(frames.double().pow(2).mean().sqrt())
    if rms <= 0:
        raise MoshifaceError("the training motion is all zeros: nothing to learn")
    codec.scale.fill_(rms)
    codec.init_basis(frames)


def _start(out: Path, config: str, dataset: FaceDataset, windows: Windows, options: TrainOptions,
           resume: bool) -> tuple[FaceCodec, dict[str, Any] | None]:
    has_checkpoint = (out / WEIGHTS_FILE).exists()
    if resume:
        if not has_checkpoint or not (out / STATE_FILE).exists():
            raise MoshifaceError(f"--resume: {out} holds no codec training to resume")
        codec = load_codec(out, options.device)
        if codec.config.vertices != dataset.vertices:
            raise MoshifaceError(f"--resume: {out} was trained on {codec.config.vertices} vertices, "
                                 f"the data has {dataset.vertices}")
        return codec.train(), load_train_state(out / STATE_FILE)
    if has_checkpoint:
        raise MoshifaceError(f"{out} already holds a codec checkpoint: --resume to continue it, or another --out")
    codec = FaceCodec(config_from_name(config, vertices=dataset.vertices)).to(options.device)
    _init_from_data(codec, windows)
    return codec.train(), None


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_mve) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "reconstruction", "quantization", "velocity"):
        ax_loss.plot(epochs, [h["train"][key] for h in history], label=f"train {key}")
    ax_loss.set_xlabel("epoch"), ax_loss.set_yscale("log"), ax_loss.legend(), ax_loss.set_title("training loss")
    ax_mve.plot(epochs, [h["validation"]["mve"] for h in history], label="validation MVE")
    ax_mve.plot(epochs, [h["validation"]["zero_motion_mve"] for h in history], "--", label="zero motion")
    ax_mve.set_xlabel("epoch"), ax_mve.set_ylabel("x1e-3"), ax_mve.legend(), ax_mve.set_title("validation")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def train_codec(data: Path | str, out: Path | str, config: str = "paper", options: TrainOptions | None = None,
                resume: bool = False) -> dict[str, Any]:
    """Trains (or resumes) a codec on ``data``; returns the last epoch's history entry."""
    options = options or TrainOptions()
    out = Path(out)
    dataset = FaceDataset(data, seed=options.seed)
    lips = _lips(dataset)
    train_windows = Windows(dataset.split("train"), options.window, options.stride)
    validation = dataset.split("validation") or dataset.split("train")
    torch.manual_seed(options.seed)
    codec, state = _start(out, config, dataset, train_windows, options, resume)
    optimizer = torch.optim.AdamW(codec.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    history: list[dict] = []
    first_epoch = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        history, first_epoch = state["history"], state["epoch"]
        torch.set_rng_state(state["rng"])
        if first_epoch >= options.epochs:
            raise MoshifaceError(f"{out} is already trained for {first_epoch} epochs; ask for more with --epochs")
    generator = torch.Generator().manual_seed(options.seed + first_epoch)
    loader = torch.utils.data.DataLoader(train_windows, batch_size=options.batch_size, shuffle=True,
                                         generator=generator)
    out.mkdir(parents=True, exist_ok=True)
    for epoch in range(first_epoch, options.epochs):
        train = _train_epoch(codec, optimizer, loader, epoch, options)
        entry = {"epoch": epoch + 1, "train": train, "validation": evaluate_codec(codec, validation, lips)}
        history.append(entry)
        _save(out, codec, optimizer, history, options)
    return history[-1]


def _lips(dataset: FaceDataset) -> np.ndarray | None:
    regions = dataset.regions()
    return regions.sets.get("lips") if regions is not None else None


def _train_epoch(codec: FaceCodec, optimizer: torch.optim.Optimizer, loader, epoch: int,
                 options: TrainOptions) -> dict[str, float]:
    codec.train()
    totals = {"loss": 0.0, "reconstruction": 0.0, "quantization": 0.0, "velocity": 0.0}
    frames = 0
    bar = tqdm(loader, desc=f"codec epoch {epoch + 1}/{options.epochs}", disable=not options.progress, leave=False)
    for batch in bar:
        batch = batch.to(options.device)
        losses = codec.losses(batch, codec(batch))
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        n = batch.shape[0] * batch.shape[1]
        frames += n
        for key, value in (("loss", losses.total), ("reconstruction", losses.reconstruction),
                           ("quantization", losses.quantization), ("velocity", losses.velocity)):
            totals[key] += float(value.detach()) * n
        bar.set_postfix(loss=f"{float(losses.total.detach()):.4f}")
    return {key: value / max(frames, 1) for key, value in totals.items()} | {"frames": frames}


def _save(out: Path, codec: FaceCodec, optimizer: torch.optim.Optimizer, history: list[dict],
          options: TrainOptions) -> None:
    save_codec(codec, out)
    state = {"optimizer": optimizer.state_dict(), "epoch": history[-1]["epoch"], "history": history,
             "rng": torch.get_rng_state(), "options": asdict(options)}
    with atomic_path(out / STATE_FILE) as tmp:
        torch.save(state, tmp)
    atomic_write_text(out / HISTORY_FILE, json.dumps(history, indent=1) + "\n")
    _plot(history, out / PLOT_FILE)

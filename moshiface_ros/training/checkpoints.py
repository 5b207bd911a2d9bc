"""What a training run writes and resumes from.

- The model: stage 1 writes face-only checkpoints over the base model (the face
  parameters, a config naming the base, and the text tokenizer of the data); stage 2 the full model with Mimi and the
  tokenizer, as a Moshi directory holds them (``face_lm.weights``, ``speech.models``).
- ``checkpoints/step-NNNNNN/``: the model plus the trainer state (optimizer, step, random
  generators, loss history) for ``--resume``; under FSDP the sharded state goes beside it
  through ``torch.distributed.checkpoint``. Each is written under a temporary name and
  renamed when whole, so a checkpoint that exists is complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from moshi.models.loaders import TEXT_TOKENIZER_NAME

from ..face_codec.checkpoint import load_train_state
from ..face_lm.config import FaceConfig
from ..face_lm.weights import FACE_PREFIXES, WEIGHTS_NAME, load_face_weights, save_face_only
from ..speech.models import SpeechModels, save_checkpoint_dir
from .config import TrainConfig
from .dataset import CropSampler
from .distributed import Dist
from .model_setup import Loaded
from .tokenizer import save_tokenizer


def _full_state(loaded: Loaded, dist: Dist) -> dict[str, torch.Tensor]:
    if loaded.root is None:
        return loaded.lm.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(loaded.root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("lm."): v for k, v in state.items()}


class _StateHolder(torch.nn.Module):
    """Stands in for the LM when writing a checkpoint from a gathered state dict."""

    def __init__(self, state: dict[str, torch.Tensor], face: FaceConfig) -> None:
        super().__init__()
        self._state = state
        self.face_config = face

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self._state


def save_model_dir(loaded: Loaded, stage: int, directory: Path, dist: Dist) -> None:
    """Stage 1: face parameters over the base; stage 2: the full model with Mimi and tokenizer."""
    state = _full_state(loaded, dist)  # collective under FSDP: every rank takes part
    if not dist.main:
        return
    if stage == 1:
        face_state = {k: v for k, v in state.items() if k.startswith(FACE_PREFIXES)}
        save_face_only(loaded.lm, directory, loaded.base, loaded.lm_config, face_state)
        if loaded.models is not None and loaded.models.tokenizer is not None:  # the run's words travel with it
            save_tokenizer(loaded.models.tokenizer, directory / TEXT_TOKENIZER_NAME)
        return
    models = loaded.models
    holder = _StateHolder(state, loaded.lm.face_config)
    save_checkpoint_dir(SpeechModels(models.mimi, holder, models.tokenizer, "", loaded.lm_config,
                                     models.mimi_config), directory)


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
    """Restores the model, optimizer and random generators; returns (step, history)."""
    from safetensors.torch import load_file

    extra = load_train_state(checkpoint / "trainer.pt")  # weights_only: a tampered file runs nothing
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
            state = load_file(str(checkpoint / WEIGHTS_NAME), device=str(dist.device))
            loaded.lm.load_state_dict(state, strict=True)
        optimizer.load_state_dict(extra["optimizer"])
    sampler.rng.bit_generator.state = extra["sampler_rng"]
    torch.set_rng_state(extra["torch_rng"])
    return int(extra["step"]), list(extra["history"])

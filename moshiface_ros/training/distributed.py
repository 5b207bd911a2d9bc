"""One process, or several under ``torchrun`` with the model sharded by PyTorch FSDP2.

A full fine-tune of the 7B model needs ~16 bytes per parameter of weights, gradients and
AdamW state, more than one GPU holds: with several processes the model is sharded with
``fully_shard`` (bf16 compute, float32 reduction on GPUs). Rank 0 alone reads the weights;
every rank builds the model on the meta device and receives its shards by broadcast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from moshi.modules.streaming import StreamingModule

from ..face_lm.config import FaceConfig
from ..face_lm.model import FaceLMModel, FaceLMOutput, lm_constructor_kwargs
from ..speech.models import resolve_device
from .config import TrainConfig
from .model_setup import Loaded, checkpoint_activations, load_model, set_trainable


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


class ShardedLM(torch.nn.Module):
    """The FSDP root. ``fully_shard`` swaps a module's class for a subclass, which Python
    refuses for moshi's modules (their bases include ``typing.Generic`` and ``abc.ABC``);
    this plain wrapper takes the root's place, and inside moshi's layers the plain
    submodules (projections, gating) become the FSDP units."""

    def __init__(self, lm: FaceLMModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, codes: torch.Tensor, face_codes: torch.Tensor) -> FaceLMOutput:
        return self.lm(codes, face_codes)


def _shard_plain_parts(module: torch.nn.Module, kwargs: dict[str, Any]) -> None:
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
        checkpoint_activations(model)
    root = shard_model(model, dist.device)
    root.to_empty(device=dist.device)
    state = {f"lm.{k}": v for k, v in loaded.lm.state_dict().items()} if loaded is not None else {}
    set_model_state_dict(root, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    return Loaded(model, lm_config, base, loaded.models if loaded is not None else None, root)

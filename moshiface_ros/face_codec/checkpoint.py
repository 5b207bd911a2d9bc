"""A codec checkpoint: a directory with ``config.json`` and ``model.safetensors``.

Each file is written under a temporary name and renamed into place, so an interrupted
save never leaves a checkpoint that loads half-written weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text
from .config import CodecConfig
from .model import FaceCodec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_codec(codec: FaceCodec, directory: Path | str) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in codec.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "moshiface-codec"})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(codec.config.to_json(), indent=1) + "\n")
    return directory


def load_codec(directory: Path | str, device: str | torch.device = "cpu") -> FaceCodec:
    """The codec saved in ``directory``, in eval mode; one-line errors when it is not one."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise MoshifaceError(f"{directory} is not a codec checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = CodecConfig.from_json(json.loads(config_path.read_text()), source=str(config_path))
    except json.JSONDecodeError as exc:
        raise MoshifaceError(f"{config_path} is not valid JSON: {exc}") from exc
    codec = FaceCodec(config)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise MoshifaceError(f"cannot read {weights_path}: {exc}") from exc
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise MoshifaceError(f"{weights_path} does not match {config_path}: {first}") from exc
    return codec.to(device).eval()

"""A codec checkpoint: a directory with ``config.json`` and ``model.safetensors``.

Each file is written under a temporary name and renamed into place, so an interrupted
save never leaves a checkpoint that loads half-written weights.

Reading one trusts nothing in it: the config is size-limited JSON, and the weights file's
header (tensor names and shapes) is compared with the model the config describes, built
on torch's ``meta`` device (no memory), before any real model is allocated -- a config
claiming a billion vertices is refused in one line rather than exhausting memory.
Training state files (``train_state.pt``, ``trainer.pt``) are read with
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only and
never calls anything a tampered file names (``load_train_state``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text
from .config import CodecConfig
from .model import FaceCodec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MAX_CONFIG_BYTES = 1 << 20


def read_json(path: Path, limit: int = MAX_CONFIG_BYTES) -> object:
    """A small JSON file; an oversized, unreadable, deeply nested or invalid one is one line."""
    try:
        if path.stat().st_size > limit:
            raise MoshifaceError(f"{path} is larger than {limit:,} bytes: not a configuration file")
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise MoshifaceError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise MoshifaceError(f"{path} is not valid JSON: {' '.join(str(exc).split())[:200]}") from None


def load_train_state(path: Path) -> dict:
    """A training state file, read with ``weights_only=True``: tensors, numbers, strings and
    containers only; a file that names any other object is refused in one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MoshifaceError(f"{path} does not exist") from None
    except Exception as exc:  # torch raises many kinds for a bad file; each becomes one line
        first = " ".join(str(exc).split())[:240]
        raise MoshifaceError(f"{path} is not a training state this package wrote "
                             f"({type(exc).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise MoshifaceError(f"{path} is not a training state this package wrote (not a mapping)")
    return state


def _check_shapes(config: CodecConfig, weights_path: Path) -> None:
    """Compares the file's tensor names and shapes with the model ``config`` describes,
    without allocating either."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in FaceCodec(config).state_dict().items()}
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise MoshifaceError(f"cannot read {weights_path}: {exc}") from None
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            raise MoshifaceError(f"{weights_path} does not match its config: {key} is "
                                 f"{found.get(key, 'missing')} in the file, {expected.get(key, 'absent')} in the model")


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
    config = CodecConfig.from_json(read_json(config_path), source=str(config_path))
    _check_shapes(config, weights_path)
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

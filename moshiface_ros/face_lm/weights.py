"""Moshi-Face weights: Moshi checkpoints into the extended model, and our own checkpoints.

A Moshi-Face checkpoint is a directory with ``config.json`` and ``model.safetensors``.
``config.json`` is Moshi's LM configuration (as in Kyutai's repositories) plus a
``moshi_face`` section::

    "moshi_face": {"face": {...FaceConfig...}, "weights": "full" | "face", "base": "hf:OWNER/NAME"}

- ``weights: "face"`` (what training stage 1 writes): ``model.safetensors`` holds only
  the face parameters; the RQ-Transformer, Mimi and the tokenizer come from ``base``
  (``tiny``, a checkpoint directory or ``hf:OWNER/NAME``); a SentencePiece tokenizer beside
  it (Moshi's file name) replaces the base's, since the face was trained on its text stream.
- ``weights: "full"`` (stage 2, or ``save_checkpoint_dir`` of a Moshi-Face model): every
  LM weight, and the Mimi weights and tokenizer beside it, as a Moshi directory has them.

Every problem with a checkpoint is one ``MoshifaceError`` naming the directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from moshi.models.lm import LMModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text
from ..moshi_compat import forget_streaming_children
from .config import FaceConfig
from .model import FACE_PREFIXES, FaceLMModel, lm_constructor_kwargs

FACE_SECTION = "moshi_face"
WEIGHTS_NAME = "model.safetensors"


def _first_line(exc: BaseException) -> str:
    """The informative line of an error: for ``load_state_dict`` the first mismatch, not
    its "Error(s) in loading state_dict" header."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return (lines[0] if lines else type(exc).__name__)[:240]


def extend_lm(lm: LMModel, lm_kwargs: dict[str, Any], face: FaceConfig,
              device: str | torch.device | None = None, dtype: torch.dtype | None = None,
              ) -> tuple[FaceLMModel, list[str]]:
    """A Moshi-Face model holding ``lm``'s weights (shared, not copied) and new face weights.

    The model is built on the meta device, Moshi's tensors are assigned into it, and only
    the face modules get fresh storage; so extending the 7B model costs no extra memory.
    Returns the model and the names of the parameters that were not in ``lm`` (exactly
    the face parameters, or a ``MoshifaceError`` says which others were missing).
    """
    device = device if device is not None else lm.device
    dtype = dtype if dtype is not None else lm.dtype
    model = FaceLMModel(face, device="meta", dtype=dtype, **lm_constructor_kwargs(lm_kwargs))
    new_keys = _load_moshi_keys(model, lm.state_dict(), assign=True)
    model.build_face_modules(device, dtype)
    model.to(device)
    return model.eval(), new_keys


def load_moshi_state_into(model: FaceLMModel, state: dict[str, torch.Tensor]) -> list[str]:
    """Loads a Moshi-format state dict into ``model``; returns the keys it did not have
    (the face parameters, kept as they are). Anything else missing or unexpected, or a
    shape that differs, is a ``MoshifaceError``."""
    return _load_moshi_keys(model, state)


def _load_moshi_keys(model: FaceLMModel, state: dict[str, torch.Tensor], assign: bool = False) -> list[str]:
    """Loads Moshi weights non-strictly and checks that exactly the face parameters were
    left out; returns them, sorted."""
    try:
        result = model.load_state_dict(state, strict=False, assign=assign)
    except RuntimeError as exc:
        raise MoshifaceError(f"the Moshi weights do not fit the Moshi-Face model: {_first_line(exc)}") from exc
    not_face = [k for k in result.missing_keys if not k.startswith(FACE_PREFIXES)]
    if not_face or result.unexpected_keys:
        raise MoshifaceError(
            f"the Moshi weights do not fit the Moshi-Face model: missing {not_face[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}")
    return sorted(result.missing_keys)


def face_state_dict(model: FaceLMModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(FACE_PREFIXES)}


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def face_section(face: FaceConfig, weights: str, base: str | None = None) -> dict[str, Any]:
    section: dict[str, Any] = {"face": face.to_dict(), "weights": weights}
    if base is not None:
        section["base"] = base
    return section


def save_face_only(model: FaceLMModel, directory: str | Path, base: str, lm_config: dict[str, Any],
                   state: dict[str, torch.Tensor] | None = None) -> Path:
    """Writes the face parameters and a config naming the base checkpoint they extend."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in lm_config.items() if k != FACE_SECTION}
    config[FACE_SECTION] = face_section(model.face_config, "face", base)
    _atomic_save(state if state is not None else face_state_dict(model), directory / WEIGHTS_NAME)
    atomic_write_text(directory / "config.json", json.dumps(config, indent=1))
    return directory


def read_face_section(directory: Path) -> dict[str, Any] | None:
    """The ``moshi_face`` section of a checkpoint directory's config, or None (plain Moshi)."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON and its number limits
        raise MoshifaceError(f"{path} is not readable JSON: {_first_line(exc)}") from exc
    section = config.get(FACE_SECTION) if isinstance(config, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict) or section.get("weights") not in ("full", "face") or "face" not in section:
        raise MoshifaceError(f"{path}: '{FACE_SECTION}' needs 'face' and 'weights' ('full' or 'face')")
    if section["weights"] == "face" and not section.get("base"):
        raise MoshifaceError(f"{path}: a face-only checkpoint must name its 'base' model")
    return section


def _read_weights(directory: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise MoshifaceError(f"checkpoint directory {directory} has no {WEIGHTS_NAME}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise MoshifaceError(f"cannot read {path}: {_first_line(exc)}") from exc


def load_face_weights(model: FaceLMModel, directory: str | Path) -> None:
    """Loads a checkpoint's face parameters into ``model`` (every one must be there)."""
    directory = Path(directory)
    state = _read_weights(directory, "cpu")
    face_keys = set(model.face_parameter_names())
    extra = sorted(set(state) - face_keys)
    missing = sorted(face_keys - set(state))
    if missing or extra:
        raise MoshifaceError(
            f"{directory / WEIGHTS_NAME} does not hold this model's face parameters "
            f"(missing {missing[:3]}, unexpected {extra[:3]})")
    params = dict(model.named_parameters())
    for key, value in state.items():
        if params[key].shape != value.shape:
            raise MoshifaceError(
                f"{directory / WEIGHTS_NAME}: {key} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(params[key].shape)} (a different face or LM configuration)")
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value.to(params[key].dtype))


def build_full_from_dir(directory: Path, lm_config: dict[str, Any], face: FaceConfig,
                        device: str | torch.device, dtype: torch.dtype) -> FaceLMModel:
    """A full Moshi-Face checkpoint: the model is built on meta and the weights assigned."""
    state = _read_weights(directory, device)
    for key, value in state.items():
        if value.dtype.is_floating_point:
            state[key] = value.to(dtype)
    model = FaceLMModel(face, device="meta", dtype=dtype, **lm_constructor_kwargs(lm_config))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise MoshifaceError(f"cannot load {directory}: {WEIGHTS_NAME} does not match config.json "
                             f"({_first_line(exc)})") from exc
    forget_streaming_children(model)
    return model.eval()

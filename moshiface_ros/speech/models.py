"""Where the speech models come from: a tiny random configuration, a local checkpoint
directory, or a Hugging Face repository in Moshi's own format.

``--model tiny`` needs no download and is what tests and CI use: a tiny **Moshi-Face**
model (Moshi's ``LMModel`` extended with the face streams, see ``face_lm.model``; its
configuration is ``face_lm.tiny``) and a tiny ``MimiModel``, with fixed random weights.
Real Moshi weights load through moshi's ``CheckpointInfo`` so anything moshi can load, we
can; a directory whose ``config.json`` has a ``moshi_face`` section loads the extended
model (see ``face_lm.weights``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from moshi.models import loaders
from moshi.models.compression import MimiModel
from moshi.models.lm import LMModel
from safetensors.torch import save_file

from ..audio.synth import synthetic_speech
from ..errors import MoshifaceError
from ..face_lm.config import FaceConfig
from ..face_lm.model import FaceLMModel, build_face_lm
from ..face_lm.tiny import tiny_face_config, tiny_lm_kwargs
from ..face_lm.weights import (
    FACE_SECTION,
    build_full_from_dir,
    extend_lm,
    face_section,
    load_face_weights,
    read_face_section,
)
from ..moshi_compat import (
    codebook_inputs,
    codebooks,
    default_lm_kwargs,
    default_mimi_config,
    fill_codebook,
    no_compile,
)

DEFAULT_REPO = loaders.DEFAULT_REPO  # kyutai/moshiko-pytorch-bf16
TINY_WEIGHT_SEED = 1234
CHECKPOINT_FILES = (loaders.MOSHI_NAME, loaders.MIMI_NAME, loaders.TEXT_TOKENIZER_NAME)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value: ``tiny``, ``DIR`` or ``hf:REPO``."""

    kind: str  # "tiny" | "dir" | "hf"
    location: str = ""

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        text = text.strip()
        if text == "tiny":
            return cls("tiny")
        if text.startswith("hf:"):
            repo = text[3:].strip()
            if repo.count("/") != 1:
                raise MoshifaceError(f"--model {text!r}: expected hf:OWNER/NAME, e.g. hf:{DEFAULT_REPO}")
            return cls("hf", repo)
        path = Path(text).expanduser()
        if not path.is_dir():
            looks_like_repo = re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text) is not None
            hint = f"; for the Hugging Face repository, write --model hf:{text}" if looks_like_repo else ""
            raise MoshifaceError(
                f"--model {text!r} is neither 'tiny', 'hf:OWNER/NAME' nor an existing checkpoint directory{hint}"
            )
        return cls("dir", str(path))

    def __str__(self) -> str:
        return {"tiny": "tiny", "dir": self.location, "hf": f"hf:{self.location}"}[self.kind]


@dataclass
class SpeechModels:
    """Mimi, the Moshi LM and (when the checkpoint has one) its text tokenizer."""

    mimi: MimiModel
    lm: LMModel
    tokenizer: Any | None  # sentencepiece.SentencePieceProcessor
    description: str
    lm_config: dict | None = None
    mimi_config: dict | None = None


# -- tiny random configuration --------------------------------------------------------


def tiny_mimi_config() -> dict:
    """Mimi at its real rates (24 kHz, 1920-sample frames, 12.5 Hz) but tiny widths."""
    config = default_mimi_config()
    dim = 64
    config["seanet"].update(dimension=dim, n_filters=4)
    config["quantizer"].update(dimension=32, n_q=8, bins=1024, input_dimension=dim, output_dimension=dim)
    config["transformer"].update(
        d_model=dim, num_heads=2, num_layers=1, dim_feedforward=128, context=32,
        input_dimension=dim, output_dimensions=[dim],
    )
    return config


def _seed_codebooks(mimi: MimiModel, seconds: float = 4.0) -> None:
    """Fills Mimi's codebooks with latents its encoder really produces.

    At init every codebook is all zeros, so every frame would encode to token 0 and the
    LM would hear nothing of the user. Entries drawn from the encoder's own latents on a
    speech-like signal (a one-step k-means initialisation, level by level because each
    residual level sees what the previous ones left) make the tokens follow the input.
    """
    frames = int(seconds * mimi.frame_rate)
    audio = synthetic_speech(frames * mimi.frame_size / mimi.sample_rate, mimi.sample_rate, seed=0)
    audio = torch.from_numpy(audio).view(1, 1, -1)
    for book in codebooks(mimi):
        with codebook_inputs(book) as seen:  # every vector this codebook is asked to quantize
            mimi.encode(audio)
        pool = torch.cat(seen)
        picks = pool[torch.randint(len(pool), (book.codebook_size,))]
        picks = picks + 0.2 * pool.std() * torch.randn_like(picks)
        fill_codebook(book, picks)


def build_tiny(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
               face: bool = True) -> SpeechModels:
    """The tiny random models; the same weights every time (fixed seed).

    ``face=True`` (the default) builds a tiny Moshi-Face LM, so the demo and the tests
    have a face path; ``face=False`` Moshi's plain ``LMModel``. Both share every Moshi
    weight (the face parameters are drawn after them).
    """
    lm_config, mimi_config = tiny_lm_kwargs(), tiny_mimi_config()
    with torch.random.fork_rng(devices=[]), torch.no_grad(), no_compile():
        torch.manual_seed(TINY_WEIGHT_SEED)
        mimi = loaders.get_mimi(None, mimi_config, device="cpu", num_codebooks=8)
        _seed_codebooks(mimi)
        if face:
            lm = build_face_lm(lm_config, tiny_face_config(), device="cpu", dtype=torch.float32)
        else:
            lm = loaders.get_moshi_lm(None, lm_kwargs=lm_config, device="cpu", dtype=torch.float32)
    kind = "Moshi-Face" if face else "Moshi"
    return SpeechModels(
        mimi=mimi.to(device).eval(),
        lm=lm.to(device=device, dtype=dtype).eval(),
        tokenizer=None,
        description=f"tiny random {kind} model (no weights; output is noise-like)",
        lm_config=lm_config,
        mimi_config=mimi_config,
    )


# -- checkpoints on disk ---------------------------------------------------------------


def save_checkpoint_dir(models: SpeechModels, directory: str | Path, tokenizer_file: str | Path | None = None) -> Path:
    """Writes models as a Moshi-format checkpoint directory that ``--model DIR`` loads.

    Layout (as in Kyutai's repositories): ``config.json`` (LM configuration plus the
    names of the other files), ``model.safetensors`` (LM), the Mimi weights, an optional
    ``mimi_config.json`` and the SentencePiece text tokenizer when there is one
    (``tokenizer_file``, or the models' own). A Moshi-Face LM adds the ``moshi_face``
    section to ``config.json`` (full weights, see ``face_lm.weights``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in (models.lm_config or default_lm_kwargs()).items() if k != FACE_SECTION}
    config.update(moshi_name=loaders.MOSHI_NAME, mimi_name=loaders.MIMI_NAME)
    face = getattr(models.lm, "face_config", None)  # a Moshi-Face LM
    if face is not None:
        config[FACE_SECTION] = face_section(face, "full")
    if models.mimi_config is not None:
        (directory / "mimi_config.json").write_text(json.dumps(models.mimi_config, indent=1))
        config["mimi_config_name"] = "mimi_config.json"
    if tokenizer_file is not None:
        (directory / loaders.TEXT_TOKENIZER_NAME).write_bytes(Path(tokenizer_file).read_bytes())
    elif models.tokenizer is not None:
        (directory / loaders.TEXT_TOKENIZER_NAME).write_bytes(models.tokenizer.serialized_model_proto())
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.contiguous() for k, v in models.lm.state_dict().items()}, str(directory / loaders.MOSHI_NAME))
    save_file({k: v.contiguous() for k, v in models.mimi.state_dict().items()}, str(directory / loaders.MIMI_NAME))
    return directory


def _checkpoint_from_dir(directory: Path) -> loaders.CheckpointInfo:
    """A CheckpointInfo for a local directory, resolving every file inside it."""
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    files = {
        "moshi_weights": directory / config.get("moshi_name", loaders.MOSHI_NAME),
        "mimi_weights": directory / config.get("mimi_name", loaders.MIMI_NAME),
        "tokenizer": directory / config.get("tokenizer_name", loaders.TEXT_TOKENIZER_NAME),
    }
    for key in ("moshi_weights", "mimi_weights"):
        if not files[key].is_file():
            raise MoshifaceError(f"checkpoint directory {directory} has no {files[key].name}")
    mimi_config = directory / config["mimi_config_name"] if "mimi_config_name" in config else None
    if config_path.is_file():
        return loaders.CheckpointInfo.from_hf_repo(
            str(directory), config_path=config_path, mimi_config_path=mimi_config, **files
        )
    return loaders.CheckpointInfo(files["moshi_weights"], files["mimi_weights"], files["tokenizer"])


def _cached_file(repo: str, name: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, name)
    return Path(found) if isinstance(found, str) else None


def hf_repo_is_cached(repo: str = DEFAULT_REPO) -> bool:
    """Whether a repository's weights are already in the local Hugging Face cache."""
    return all(_cached_file(repo, name) is not None for name in CHECKPOINT_FILES)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick look for the hub, so that an offline machine gets one clear error at once
    instead of a minute of download retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _checkpoint_from_hf(repo: str) -> loaders.CheckpointInfo:
    if hf_repo_is_cached(repo):  # everything is here: no network round trip at all
        files = dict(zip(("moshi_weights", "mimi_weights", "tokenizer"),
                         (_cached_file(repo, name) for name in CHECKPOINT_FILES)))
        config = _cached_file(repo, "config.json")
        if config is None:
            return loaders.CheckpointInfo(**files)
        return loaders.CheckpointInfo.from_hf_repo(repo, config_path=config, **files)
    if not _hub_reachable():
        raise MoshifaceError(
            f"hf:{repo} is not in the local Hugging Face cache and the hub cannot be reached: "
            f"on a connected machine run `huggingface-cli download {repo}` (about 16 GB), "
            "or pass --model DIR with a downloaded checkpoint, or --model tiny"
        )
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    try:
        return loaders.CheckpointInfo.from_hf_repo(repo)
    except Exception as exc:  # unknown repo, gated, no access: a user fixes all of them alike
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MoshifaceError(
            f"cannot download hf:{repo} ({type(exc).__name__}: {reason[:160]}); check the name "
            "and your access, or pass --model DIR or --model tiny"
        ) from exc


def load_speech_models(spec: ModelSpec, device: str | torch.device, dtype: torch.dtype) -> SpeechModels:
    """Builds Mimi and the LM for ``spec`` on ``device``; LM weights in ``dtype``."""
    if spec.kind == "tiny":
        return build_tiny(device, dtype)
    if spec.kind == "dir":
        section = read_face_section(Path(spec.location))
        if section is not None:
            return _load_face_dir(Path(spec.location), section, device, dtype)
        info = _checkpoint_from_dir(Path(spec.location))
        description = f"checkpoint directory {spec.location}"
    else:
        info = _checkpoint_from_hf(spec.location)
        description = f"hf:{spec.location}"
    try:
        mimi = info.get_mimi(device=device)
        lm = info.get_moshi(device=device, dtype=dtype)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MoshifaceError(f"cannot load {description}: {first[:200]}") from exc
    tokenizer = info.get_text_tokenizer() if Path(info.tokenizer).is_file() else None
    return SpeechModels(mimi, lm.eval(), tokenizer, description, info.lm_config, info.mimi_config)


def _read_tokenizer(path: Path) -> Any:
    import sentencepiece

    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise MoshifaceError(f"{path} is not a SentencePiece model: {str(exc).strip()[:160]}") from exc


def _load_face_dir(directory: Path, section: dict, device: str | torch.device, dtype: torch.dtype) -> SpeechModels:
    """A Moshi-Face checkpoint directory: full weights, or face weights over a base model."""
    face = FaceConfig.from_dict(section["face"])
    if section["weights"] == "face":
        base = ModelSpec.parse(str(section["base"]))
        if base.kind == "dir" and Path(base.location).resolve() == directory.resolve():
            raise MoshifaceError(f"{directory}: a face-only checkpoint cannot be its own base")
        models = load_speech_models(base, device, dtype)
        if isinstance(models.lm, FaceLMModel):
            if models.lm.face_config != face:
                models.lm.face_config = face
                models.lm.build_face_modules(device, dtype)
        else:
            models.lm, _ = extend_lm(models.lm, models.lm_config or default_lm_kwargs(), face, device, dtype)
        load_face_weights(models.lm, directory)
        own = directory / loaders.TEXT_TOKENIZER_NAME  # the tokenizer the face was trained with
        if own.is_file():
            models.tokenizer = _read_tokenizer(own)
        models.description = f"Moshi-Face {directory} over {models.description}"
        return models
    info = _checkpoint_from_dir(directory)
    lm_config = {k: v for k, v in (info.lm_config or default_lm_kwargs()).items() if k != FACE_SECTION}
    try:
        mimi = info.get_mimi(device=device)
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MoshifaceError(f"cannot load the Mimi weights of {directory}: {first[:200]}") from exc
    lm = build_full_from_dir(directory, lm_config, face, device, dtype)
    tokenizer = info.get_text_tokenizer() if Path(info.tokenizer).is_file() else None
    return SpeechModels(mimi, lm, tokenizer, f"Moshi-Face checkpoint directory {directory}", lm_config,
                        info.mimi_config)


# -- where the models run ----------------------------------------------------------------

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(text: str = "auto") -> torch.device:
    """``auto`` picks CUDA when there is a GPU; ``cuda`` without one is an error."""
    text = text.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise MoshifaceError(f"--device {text!r} is not a device (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MoshifaceError(f"--device {text}: this machine has no CUDA GPU visible to torch")
    if device.type not in ("cpu", "cuda"):
        raise MoshifaceError(f"--device {text}: only cpu and cuda are supported")
    return device


SMALL_MODEL_BYTES = 2 * 1024**3  # LM weights below this are a "small" model (the 7B one is ~15 GB)


def is_small(spec: ModelSpec) -> bool:
    """Whether ``spec`` is a small model: the tiny one, or a checkpoint directory whose LM
    weights (its base's, for a face-only checkpoint) are under ``SMALL_MODEL_BYTES``.
    Small models run fastest on the CPU in float32 on one thread: bfloat16 matrices of a
    few hundred columns and torch's thread pool cost more than they save (57-165 ms per
    step against 21 ms for the trained tiny model)."""
    if spec.kind == "tiny":
        return True
    if spec.kind != "dir":
        return False
    directory = Path(spec.location)
    section = read_face_section(directory)
    if section is not None and section["weights"] == "face":
        try:
            base = ModelSpec.parse(str(section["base"]))
        except MoshifaceError:
            return False
        return base.location != spec.location and is_small(base)
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    except (OSError, ValueError):
        return False
    weights = directory / str(config.get("moshi_name", loaders.MOSHI_NAME) if isinstance(config, dict) else "")
    return weights.is_file() and weights.stat().st_size < SMALL_MODEL_BYTES


def resolve_dtype(text: str, device: torch.device, spec: ModelSpec) -> torch.dtype:
    """``auto``: bfloat16 on CUDA; on the CPU float32 for small models (``is_small``) and
    bfloat16 for real weights (the 7B model in float32 needs ~31 GB of memory)."""
    text = text.strip().lower()
    if text == "auto":
        if device.type == "cuda" or not is_small(spec):
            return torch.bfloat16
        return torch.float32
    if text not in DTYPES:
        raise MoshifaceError(f"--dtype {text!r}: use auto, {', '.join(DTYPES)}")
    return DTYPES[text]

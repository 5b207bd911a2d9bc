"""``moshiface data prepare``: audiovisual dialogues -> the token streams Moshi-Face trains on.

A dialogue is a directory::

    DIALOGUE/<speaker>.wav           one WAV per speaker (exactly two; any rate; channels mixed)
    DIALOGUE/<speaker>.npy           (frames, V, 3) float32 face meshes at 25 fps (optional:
                                     without it that speaker's face streams are -1, "unseen")
    DIALOGUE/<speaker>.neutral.npy   optional (V, 3) neutral mesh: then <speaker>.npy holds
                                     meshes and the neutral is subtracted; otherwise it holds
                                     displacements from the neutral face already
    DIALOGUE/transcript.json         {"words": [{"speaker": "<speaker>", "word": "hello",
                                                 "start": 0.52, "end": 0.81}, ...]}

Each speaker becomes, over the dialogue's T steps of 80 ms:

- a text stream aligned as Moshi's inner monologue: a word's SentencePiece tokens start at
  the step of its start time (later pieces on the following steps, pushed back when the
  previous word still runs), padding (id 3) elsewhere, and the end-of-padding token (id 0)
  on the padding step just before a word;
- 8 Mimi audio tokens per step;
- 8 face tokens per step from the face codec (2 frames at 25 fps per step), -1 where
  there is no face.

Split as the paper does: a held-out test set (``--test-list`` names the dialogues the
face codec never saw, or ``--test-count`` of them are drawn), the rest 9:1 into train and
validation. Under ``torchrun`` the dialogues are shared out over the processes and rank 0
writes the split when all are done; a dialogue already tokenized is skipped, so an
interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from moshi.models.compression import MimiModel

from ..constants import FRAME_SIZE, SAMPLE_RATE
from ..errors import MoshifaceError
from ..face_codec.model import FaceCodec
from ..fileio import atomic_path, atomic_write_text
from ..speech.models import ModelSpec, SpeechModels, load_speech_models, resolve_device, resolve_dtype
from .dataset import SPLITS_FILE, TOKENS_DIR
from .sync import energy_envelope
from .tokenizer import DEFAULT_PIECES, TOKENIZER_FILE, save_tokenizer

STEP_RATE = SAMPLE_RATE / FRAME_SIZE  # model steps per second (12.5)
TEXT_PADDING = 3  # Moshi's text padding token
TEXT_END_PADDING = 0  # Moshi's end-of-padding token


@dataclass
class Word:
    speaker: str
    word: str
    start: float
    end: float


@dataclass
class DialogueFiles:
    name: str
    directory: Path
    speakers: list[str]  # two names, sorted
    words: list[Word]


def find_dialogues(root: Path) -> list[DialogueFiles]:
    """Every dialogue directory under ``root`` (itself, or its subdirectories)."""
    if not root.is_dir():
        raise MoshifaceError(f"--dialogues {root} is not a directory")
    candidates = [root] if (root / "transcript.json").is_file() else sorted(
        p for p in root.iterdir() if p.is_dir() and (p / "transcript.json").is_file())
    if not candidates:
        raise MoshifaceError(f"{root} holds no dialogue directory (none has a transcript.json)")
    return [read_dialogue(path) for path in candidates]


def read_dialogue(directory: Path) -> DialogueFiles:
    speakers = sorted(p.stem for p in directory.glob("*.wav"))
    if len(speakers) != 2:
        raise MoshifaceError(f"{directory}: a dialogue needs one WAV per speaker, two in all; found {len(speakers)}")
    path = directory / "transcript.json"
    try:
        data = json.loads(path.read_text())
        words = [Word(str(w["speaker"]), str(w["word"]), float(w["start"]), float(w["end"])) for w in data["words"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MoshifaceError(f"{path}: expected {{\"words\": [{{speaker, word, start, end}}, ...]}} ({exc})") from exc
    unknown = sorted({w.speaker for w in words} - set(speakers))
    if unknown:
        raise MoshifaceError(f"{path}: words by {unknown}, but the WAV files are {speakers}")
    return DialogueFiles(directory.name, directory, speakers, words)


# -- the three streams -------------------------------------------------------------------------


def align_text(words: list[Word], steps: int, encode: Callable[[str], list[int]]) -> np.ndarray:
    """One speaker's words -> [steps] text tokens, the inner-monologue way (see above)."""
    text = np.full(steps, TEXT_PADDING, dtype=np.int64)
    busy_until = 0
    for word in sorted(words, key=lambda w: w.start):
        pieces = encode(word.word)
        step = max(int(math.floor(word.start * STEP_RATE)), busy_until)
        for piece in pieces:
            if step >= steps:
                break
            text[step] = piece
            step += 1
        busy_until = step
    starts = np.flatnonzero((text[1:] != TEXT_PADDING) & (text[:-1] == TEXT_PADDING)) + 1
    text[starts - 1] = TEXT_END_PADDING  # the padding step just before a word begins
    return text


def audio_24k(path: Path) -> np.ndarray:
    from ..audio.wav import read_wav

    samples, rate = read_wav(path)
    mono = samples.mean(axis=1).astype(np.float32)
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE).astype(np.float32)
    return mono


def load_motion(directory: Path, speaker: str, vertices: int) -> np.ndarray | None:
    """(frames, V, 3) displacements from the neutral face, or None when there is no file."""
    path = directory / f"{speaker}.npy"
    if not path.is_file():
        return None
    try:
        motion = np.asarray(np.load(path), dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise MoshifaceError(f"cannot read {path} as a .npy array: {exc}") from exc
    if motion.ndim != 3 or motion.shape[1:] != (vertices, 3):
        raise MoshifaceError(f"{path}: face motion must be (frames, {vertices}, 3) for this codec, got {motion.shape}")
    neutral_path = directory / f"{speaker}.neutral.npy"
    if neutral_path.is_file():
        neutral = np.asarray(np.load(neutral_path), dtype=np.float32)
        if neutral.shape != (vertices, 3):
            raise MoshifaceError(f"{neutral_path}: the neutral mesh must be ({vertices}, 3), got {neutral.shape}")
        motion = motion - neutral[None]
    if not np.isfinite(motion).all():
        raise MoshifaceError(f"{path} contains NaN or infinite values")
    return motion


@torch.no_grad()
def face_tokens(codec: FaceCodec, motion: np.ndarray | None, steps: int, window_steps: int = 250) -> np.ndarray:
    """[N, steps] face tokens, encoded window by window (the codec is non-causal: windows
    bound its attention to the lengths it was trained on); -1 where there is no motion."""
    n = codec.config.n_tokens
    out = np.full((n, steps), -1, dtype=np.int64)
    if motion is None:
        return out
    r = codec.config.downsample
    usable = min(len(motion) // r, steps)
    device = codec.scale.device
    for first in range(0, usable, window_steps):
        last = min(usable, first + window_steps)
        chunk = torch.from_numpy(motion[first * r:last * r]).to(device)[None]
        out[:, first:last] = codec.encode(chunk)[0].T.cpu().numpy()
    return out


@torch.no_grad()
def audio_tokens(mimi: MimiModel, pcm: np.ndarray, steps: int) -> np.ndarray:
    """[8, steps] Mimi tokens of 24 kHz audio (padded with silence to whole steps)."""
    padded = np.zeros(steps * FRAME_SIZE, dtype=np.float32)
    padded[:min(len(pcm), len(padded))] = pcm[:len(padded)]
    device = next(mimi.parameters()).device
    codes = mimi.encode(torch.from_numpy(padded).to(device).view(1, 1, -1))
    return codes[0, :, :steps].cpu().numpy().astype(np.int64)


def tokenize_dialogue(dialogue: DialogueFiles, mimi: MimiModel, codec: FaceCodec, encode_text: Callable[[str], list[int]],
                      window_steps: int = 250) -> dict[str, np.ndarray]:
    pcm = [audio_24k(dialogue.directory / f"{s}.wav") for s in dialogue.speakers]
    steps = max(1, math.ceil(max(len(p) for p in pcm) / FRAME_SIZE))
    text = np.stack([align_text([w for w in dialogue.words if w.speaker == s], steps, encode_text)
                     for s in dialogue.speakers])
    audio = np.stack([audio_tokens(mimi, p, steps) for p in pcm])
    face = np.stack([face_tokens(codec, load_motion(dialogue.directory, s, codec.config.vertices), steps, window_steps)
                     for s in dialogue.speakers])
    # the speech energy of the original waveform per face frame: what evaluation scores lip sync against
    energy = np.stack([energy_envelope(p, steps * codec.config.downsample) for p in pcm])
    return {"text": text.astype(np.int32), "audio": audio.astype(np.int16), "face": face.astype(np.int16),
            "energy": energy.astype(np.float32), "speakers": np.array(dialogue.speakers)}


# -- splits --------------------------------------------------------------------------------


def split_dialogues(names: list[str], test: list[str] | None = None, test_count: int | None = None,
                    seed: int = 0) -> dict[str, list[str]]:
    """Held-out test dialogues, then the rest 9:1 into train and validation."""
    order = sorted(names)
    rng = np.random.default_rng(seed)
    if test is not None:
        missing = sorted(set(test) - set(order))
        if missing:
            raise MoshifaceError(f"--test-list names dialogues that are not there: {missing[:5]}")
        held = sorted(test)
    else:
        count = test_count if test_count is not None else (100 if len(order) >= 1000 else max(1, round(len(order) * 0.03)))
        shuffled = list(order)
        rng.shuffle(shuffled)
        held = sorted(shuffled[:count])
    rest = [n for n in order if n not in set(held)]
    rng.shuffle(rest)
    n_valid = max(1, round(len(rest) / 10)) if len(rest) >= 2 else 0
    return {"train": sorted(rest[n_valid:]), "valid": sorted(rest[:n_valid]), "test": held}


# -- the command ---------------------------------------------------------------------------


@dataclass
class PrepareConfig:
    dialogues: Path
    out: Path
    codec: Path
    model: str = "tiny"
    tokenizer: Path | None = None
    device: str = "auto"
    test_list: Path | None = None
    test_count: int | None = None
    seed: int = 0
    window_steps: int = 250
    overwrite: bool = False
    progress: bool = True
    tokenizer_pieces: int = DEFAULT_PIECES  # the most pieces of a tokenizer trained here


def _tokenizer(config: PrepareConfig, models: SpeechModels, dialogues: list[DialogueFiles]) -> Any:
    """``--tokenizer``, else the model's, else one trained on the transcripts (see ``tokenizer.py``)."""
    from .tokenizer import load_tokenizer, train_tokenizer

    text_card = int(models.lm.text_card)
    if config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer)
    elif models.tokenizer is not None:
        tokenizer = models.tokenizer
    else:
        sentences = [" ".join(w.word for w in sorted(d.words, key=lambda w: w.start) if w.speaker == s)
                     for d in dialogues for s in d.speakers]
        tokenizer = train_tokenizer(sentences, min(text_card, config.tokenizer_pieces))
        print(f"{config.model} has no text tokenizer: trained one of {tokenizer.vocab_size()} pieces on the "
              f"transcripts ({config.out / TOKENIZER_FILE}; give your own with --tokenizer FILE)")
    if tokenizer.vocab_size() > text_card:
        raise MoshifaceError(f"the tokenizer has {tokenizer.vocab_size()} pieces, the model's text vocabulary {text_card}")
    return tokenizer


def run_prepare(config: PrepareConfig) -> dict[str, Any]:
    """Tokenizes every dialogue (this process's share under torchrun) and writes the split."""
    from tqdm import tqdm

    from ..face_codec.checkpoint import load_codec

    dialogues = find_dialogues(config.dialogues)
    names = [d.name for d in dialogues]
    if len(set(names)) != len(names):
        raise MoshifaceError(f"{config.dialogues}: dialogue directory names must be unique")
    test = None
    if config.test_list is not None:
        try:
            test = [line.strip() for line in config.test_list.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise MoshifaceError(f"cannot read --test-list {config.test_list}: {exc.strerror or exc}") from exc
    splits = split_dialogues(names, test, config.test_count, config.seed)  # validates before any work

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    codec = load_codec(config.codec, device)
    spec = ModelSpec.parse(config.model)
    models = load_speech_models(spec, device, resolve_dtype("auto", device, spec))
    tokens_dir = config.out / TOKENS_DIR
    tokens_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(config, models, dialogues)
    if rank == 0:
        save_tokenizer(tokenizer, config.out / TOKENIZER_FILE)

    def encode_text(word: str) -> list[int]:
        return list(tokenizer.encode(word))
    mine = dialogues[rank::world]
    done = 0
    for dialogue in tqdm(mine, disable=not (config.progress and rank == 0), desc="tokenizing", unit="dialogue"):
        target = tokens_dir / f"{dialogue.name}.npz"
        if target.exists() and not config.overwrite:
            continue
        arrays = tokenize_dialogue(dialogue, models.mimi, codec, encode_text, config.window_steps)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        done += 1
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()
    summary = {"dialogues": len(names), "tokenized_here": done, "rank": rank, "processes": world}
    if rank == 0:
        summary.update({k: len(v) for k, v in splits.items()})
        manifest = {"dialogues": len(names), "codec": str(config.codec), "model": config.model,
                    "codec_config": codec.config.to_json(), "text_card": int(models.lm.text_card),
                    "tokenizer": TOKENIZER_FILE, "tokenizer_pieces": int(tokenizer.vocab_size()),
                    "splits": {k: len(v) for k, v in splits.items()}}
        for path, content in ((config.out / SPLITS_FILE, splits), (config.out / "manifest.json", manifest)):
            atomic_write_text(path, json.dumps(content, indent=1))
    return summary

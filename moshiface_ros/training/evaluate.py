"""``moshiface eval``: the paper's two end-to-end protocols, with measures that need no
external model.

- Teacher-forced: for each test dialogue and each speaker in the robot's seat, the
  ground-truth text and audio tokens are forced step by step (the depth transformer does
  not run) while the user's audio and face are the other speaker's; only the face is
  generated, from the model's own previous face tokens. The generated face is decoded by
  the face codec and compared with the ground truth decoded the same way: MVE and LVE
  (in the paper's x10^-3 units), and audio-visual synchrony against the ground-truth
  speech, beside the two bounds of the paper's table: the "reconstructed face" (the
  ground-truth tokens decoded) and the "random face" (uniform random tokens decoded).
- Free-run: two Moshi-Face conversations talk to each other, each one's robot audio and
  face tokens becoming the other's user streams one step later (the 80 ms a real link
  takes). They run as one batch of two on the same weights, which is two identical
  models; audio and face are decoded and their synchrony measured.

The synchrony measure (``sync.py``) replaces SyncNet's LSE-D / LSE-C, which need a
pretrained network and rendered video. The model is loaded as ``moshiface run`` loads it
(``speech.session``: the same thread, device and dtype rules).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from moshi.models.compression import MimiModel

from ..constants import FACE_FPS, FRAME_SIZE
from ..errors import MoshifaceError
from ..face_codec.model import FaceCodec
from ..face_lm.generate import FaceLMGen
from ..face_lm.model import FaceLMModel
from ..face_lm.step import StepTokens
from ..fileio import atomic_path, atomic_write_text
from ..moshi_compat import delay_sequence, initial_tokens
from ..speech.engine import Sampling
from ..speech.session import SessionOptions, load_models, resolve_placement
from .dataset import Dialogue, load_split
from .sync import MAX_LAG_FRAMES, av_sync, energy_envelope, lip_aperture, masked_pcm, zscore


# -- decoding helpers --------------------------------------------------------------------------


@torch.no_grad()
def decode_face(codec: FaceCodec, tokens: np.ndarray, window_steps: int = 250) -> np.ndarray:
    """[N, S] tokens (all valid) -> (2S, V, 3) displacements, window by window."""
    steps = tokens.shape[1]
    r = codec.config.downsample
    out = np.zeros((steps * r, codec.config.vertices, 3), dtype=np.float32)
    device = codec.scale.device
    for first in range(0, steps, window_steps):
        chunk = torch.from_numpy(tokens[:, first:first + window_steps].T.copy()).long().to(device)[None]
        out[first * r:(first + chunk.shape[1]) * r] = codec.decode(chunk)[0].float().cpu().numpy()
    return out


@torch.no_grad()
def decode_audio(mimi: MimiModel, tokens: np.ndarray) -> np.ndarray:
    """[8, S] Mimi tokens -> 24 kHz float32 audio."""
    device = next(mimi.parameters()).device
    pcm = mimi.decode(torch.from_numpy(tokens).long().to(device)[None])
    return pcm[0, 0].float().cpu().numpy()


# -- teacher-forced ------------------------------------------------------------------------------


@torch.no_grad()
def teacher_forced_faces(lm: FaceLMModel, codes: np.ndarray, face: np.ndarray, seed: int, device: torch.device,
                         sampling: Sampling | None = None) -> np.ndarray:
    """Generated robot face tokens [N, T] for one conversation, text and robot audio forced.

    ``codes`` [1 + 2Q, T] (text, robot audio, user audio), ``face`` [2N, T] (robot, user).
    Step s takes the user's frame s - 1 and the text/audio the model emits at step s (the
    delayed streams), and returns the face of frame s - 1. The face is sampled with
    ``sampling``'s face temperature and top-k (``Sampling``'s defaults when None).
    """
    sampling = sampling or Sampling()
    n = lm.face_config.n_tokens
    q = lm.dep_q
    steps = codes.shape[1]
    extra = np.concatenate([codes, codes[:, -1:]], axis=1)  # one more frame: the last step's text/audio
    extra[0, -1] = lm.text_padding_token_id
    forced = torch.from_numpy(extra[:1 + q]).long().to(device)[None]
    initial = initial_tokens(lm)[:, :1 + q]
    delayed = delay_sequence(lm.delays[:1 + q], forced, initial)
    user_audio = torch.from_numpy(np.clip(codes[1 + q:], 0, None)).long().to(device)
    user_face = torch.from_numpy(face[n:]).long().to(device)
    gen = FaceLMGen(lm, face_temp=sampling.face_temperature, face_top_k=sampling.face_top_k, teacher_forcing=True)
    torch.manual_seed(seed)
    generated = np.zeros((n, steps), dtype=np.int64)
    with gen.streaming(1):
        for s in range(steps + 1):
            frame = max(s - 1, 0)
            uface = user_face[:, frame].view(1, n, 1)
            out = gen.step(user_audio[:, frame].view(1, -1, 1), None if bool((uface < 0).any()) else uface,
                           delayed[:, :, s:s + 1])
            if out is not None:
                generated[:, s - 1] = StepTokens.unpack(out, q).face[0, :, 0].cpu().numpy()
    return generated


@dataclass
class TeacherForcedResult:
    name: str
    robot: int
    mve: float
    lve: float
    sync: dict[str, dict[str, float]]
    curves: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def evaluate_teacher_forced(lm: FaceLMModel, mimi: MimiModel, codec: FaceCodec, dialogue: Dialogue, robot: int,
                            lips: np.ndarray, device: torch.device, seed: int,
                            max_steps: int | None = None) -> TeacherForcedResult | None:
    """One conversation with speaker ``robot`` in the robot's seat; None when that
    speaker's face is missing (nothing to compare with)."""
    from ..face_codec.metrics import lve, mve

    codes, face = dialogue.streams(robot)
    if max_steps:
        codes, face = codes[:, :max_steps], face[:, :max_steps]
    n = lm.face_config.n_tokens
    truth = face[:n]
    valid = (truth >= 0).all(axis=0)
    if valid.sum() < 4:
        return None  # this speaker's face is missing: nothing to compare
    generated = teacher_forced_faces(lm, codes, face, seed, device)
    rng = np.random.default_rng(seed)
    random = rng.integers(0, lm.face_config.card, truth.shape)
    filled = np.where(truth >= 0, truth, generated)
    faces = {"generated": decode_face(codec, generated), "reconstructed": decode_face(codec, filled),
             "random": decode_face(codec, random)}
    frames = np.repeat(valid, codec.config.downsample)
    pred, target = torch.from_numpy(faces["generated"][frames]), torch.from_numpy(faces["reconstructed"][frames])
    pcm = decode_audio(mimi, codes[1:1 + lm.dep_q])
    speech = masked_pcm(pcm, frames)  # the frames where the ground-truth face exists
    sync, curves = {}, {}
    for key, motion in faces.items():
        sync[key], curves[key] = av_sync(speech, motion[frames], lips)
    return TeacherForcedResult(dialogue.name, robot, float(mve(pred, target)) * 1e3,
                               float(lve(pred, target, lips)) * 1e3, sync, curves)


# -- free-run ----------------------------------------------------------------------------------


@torch.no_grad()
def free_run(lm: FaceLMModel, mimi: MimiModel, steps: int, seed: int, device: torch.device,
             sampling: Sampling | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two conversations feeding each other: returns audio tokens [2, Q, steps - 1] and face
    tokens [2, N, steps - 1] of both sides (the first step produces nothing)."""
    sampling = sampling or Sampling()
    gen = FaceLMGen(lm, temp=sampling.temperature, temp_text=sampling.text_temperature, top_k=sampling.top_k,
                    top_k_text=sampling.text_top_k, face_temp=sampling.face_temperature,
                    face_top_k=sampling.face_top_k)
    q = lm.dep_q
    with torch.no_grad():
        silence = mimi.encode(torch.zeros(1, 1, FRAME_SIZE, device=device))[:, :, :1]
    heard_audio = silence.expand(2, -1, -1).clone()
    heard_face: torch.Tensor | None = None
    torch.manual_seed(seed)
    audio, face = [], []
    with gen.streaming(2):
        for _ in range(steps):
            out = gen.step(heard_audio, heard_face)
            if out is None:
                continue
            tokens = StepTokens.unpack(out, q)
            audio.append(tokens.audio[:, :, 0].cpu().numpy())
            face.append(tokens.face[:, :, 0].cpu().numpy())
            heard_audio = tokens.audio.flip(0).clone()  # each side hears the other
            heard_face = tokens.face.flip(0).clone()
    return np.stack(audio, axis=-1), np.stack(face, axis=-1)


# -- the command -------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    data: Path
    model: str
    codec: Path
    out: Path
    regions: Path | None = None
    modes: tuple[str, ...] = ("teacher-forced", "free-run")
    max_dialogues: int | None = None
    max_steps: int | None = None
    free_runs: int = 4
    free_run_steps: int = 250
    device: str = "auto"
    seed: int = 0
    progress: bool = True


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _sync_summary(items: list[dict[str, float]]) -> dict[str, float | None]:
    return {key: _mean([i[key] for i in items]) for key in ("lag_ms", "corr_peak", "corr_zero")}


@dataclass
class _Subject:
    """What both protocols evaluate: the model, its Mimi, the face codec and the lips."""

    lm: FaceLMModel
    mimi: MimiModel
    codec: FaceCodec
    lips: np.ndarray
    device: torch.device


def _load_subject(config: EvalConfig) -> _Subject:
    """The model, the codec and the lip vertices, each checked against the others."""
    from ..face_codec.checkpoint import load_codec
    from ..regions import DEFAULT_REGIONS_FILE, load_regions

    options = SessionOptions(model=config.model, device=config.device, seed=config.seed)
    placement = resolve_placement(options)  # the same thread, device and dtype rules as `moshiface run`
    models = load_models(options, placement)
    device = placement.device
    if not isinstance(models.lm, FaceLMModel):
        raise MoshifaceError(f"{config.model} is an audio-only Moshi model: evaluation needs a Moshi-Face checkpoint")
    codec = load_codec(config.codec, device)
    face = models.lm.face_config
    if codec.config.n_tokens != face.n_tokens or codec.config.codebook_size != face.card:
        raise MoshifaceError(f"the codec ({codec.config.n_tokens} tokens of {codec.config.codebook_size}) does not "
                             f"match the model's face streams ({face.n_tokens} of {face.card})")
    regions_path = config.regions or DEFAULT_REGIONS_FILE
    regions = load_regions(regions_path)
    regions.check_vertices(codec.config.vertices, regions_path)
    return _Subject(models.lm, models.mimi, codec, regions.get("lips", regions_path), device)


def _teacher_forced(config: EvalConfig, subject: _Subject, curves: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    from tqdm import tqdm

    dialogues = load_split(config.data, "test")[:config.max_dialogues]
    per: list[TeacherForcedResult] = []
    jobs = [(d, r) for d in dialogues for r in (0, 1)]
    for i, (dialogue, robot) in enumerate(tqdm(jobs, disable=not config.progress, desc="teacher-forced")):
        result = evaluate_teacher_forced(subject.lm, subject.mimi, subject.codec, dialogue, robot, subject.lips,
                                         subject.device, config.seed + i, config.max_steps)
        if result is None:
            continue
        per.append(result)
        for key, curve in result.curves.items():
            curves.setdefault(f"teacher-forced {key}", []).append(curve)
    if not per:
        raise MoshifaceError(f"no test dialogue of {config.data} has face tokens to compare with")
    return {
        "conversations": len(per),
        "mve_x1e-3": _mean([r.mve for r in per]),
        "lve_x1e-3": _mean([r.lve for r in per]),
        "sync": {key: _sync_summary([r.sync[key] for r in per]) for key in ("generated", "reconstructed", "random")},
        "per_conversation": [{"dialogue": r.name, "robot_speaker": r.robot, "mve_x1e-3": r.mve,
                              "lve_x1e-3": r.lve, "sync": r.sync} for r in per],
    }


def _free_runs(config: EvalConfig, subject: _Subject, curves: dict[str, list[np.ndarray]],
               example: dict[str, np.ndarray]) -> dict[str, Any]:
    from tqdm import tqdm

    runs = []
    for i in tqdm(range(config.free_runs), disable=not config.progress, desc="free-run"):
        audio, face = free_run(subject.lm, subject.mimi, config.free_run_steps, config.seed + 1000 + i, subject.device)
        for side in range(2):
            pcm = decode_audio(subject.mimi, audio[side])
            motion = decode_face(subject.codec, face[side])
            scores, curve = av_sync(pcm, motion, subject.lips)
            runs.append(scores)
            curves.setdefault("free-run", []).append(curve)
            if not example:
                example.update(envelope=energy_envelope(pcm, len(motion)), aperture=lip_aperture(motion, subject.lips))
    return {"conversations": config.free_runs, "sides": len(runs), "steps": config.free_run_steps,
            "sync": _sync_summary(runs), "per_side": runs}


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Runs the chosen protocols; writes ``results.json`` and ``eval.png`` into ``--out``."""
    unknown = sorted(set(config.modes) - {"teacher-forced", "free-run"})
    if unknown or not config.modes:
        raise MoshifaceError(f"--mode takes teacher-forced and/or free-run, got {', '.join(unknown) or 'nothing'}")
    subject = _load_subject(config)
    config.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": config.model, "codec": str(config.codec), "device": str(subject.device)}
    curves: dict[str, list[np.ndarray]] = {}
    example: dict[str, np.ndarray] = {}
    if "teacher-forced" in config.modes:
        results["teacher_forced"] = _teacher_forced(config, subject, curves)
    if "free-run" in config.modes:
        results["free_run"] = _free_runs(config, subject, curves, example)
    results["paper_rows"] = {
        "teacher-forced generated": "Moshi-Face, teacher-forced AV sync (Table 2, LSE-D/LSE-C columns)",
        "teacher-forced reconstructed": "Reconstructed face (upper bound)",
        "teacher-forced random": "Random face (lower bound)",
        "free-run": "Moshi-Face, free-run AV sync",
    }
    atomic_write_text(config.out / "results.json", json.dumps(results, indent=1))
    plot_eval(curves, example, config.out / "eval.png")
    return results


def plot_eval(curves: dict[str, list[np.ndarray]], example: dict[str, np.ndarray], path: Path) -> None:
    """Mean lag-correlation curve per condition, and one free-run envelope/aperture trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    lags = np.arange(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1) * 1000 / FACE_FPS
    for label, items in curves.items():
        axes[0].plot(lags, np.mean(items, axis=0), marker="o", ms=3, label=label)
    axes[0].axvline(0, color="grey", lw=0.5)
    axes[0].set_xlabel("lag of the lips behind the voice (ms)")
    axes[0].set_ylabel("correlation (speech energy, lip aperture)")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    if example:
        t = np.arange(len(example["envelope"])) / FACE_FPS
        axes[1].plot(t, zscore(example["envelope"]), lw=1, label="speech energy (z)")
        axes[1].plot(t, zscore(example["aperture"]), lw=1, label="lip aperture (z)")
        axes[1].set_xlabel("time (s), free-run example")
        axes[1].legend(fontsize=8)
    else:
        axes[1].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

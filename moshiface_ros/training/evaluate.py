"""``moshiface eval``: the paper's two end-to-end protocols and its table, with honest
controls and measures that need no external model.

- Teacher-forced (here): for each test dialogue and each speaker in the robot's seat, the
  ground-truth text and audio tokens are forced step by step (the depth transformer does
  not run) while the user's audio and face are the other speaker's; only the face is
  generated, from the model's own previous face tokens. The generated face is decoded by
  the face codec and compared with the ground truth decoded the same way: MVE and LVE
  (the paper's x10^-3 units; LVE both as FaceFormer's max squared error and as max L2 in
  mm, see ``face_codec.metrics``). Its lip sync is scored against the speaker's speech
  energy from the **original waveform** (stored by ``data prepare``), not from audio that a
  small or untrained Mimi decodes, next to three controls: the reconstructed face
  (ground-truth tokens decoded: the upper bound), the random face (uniform random tokens:
  the lower bound) and a mismatched pair (another test conversation's face in the same seat).
- Free-run (``free_run.py``): two models talking to each other, scored against the robot's
  own speech energy read from its audio tokens by a probe fitted on the training split.

Each protocol reports ``recovered = (generated - random) / (reconstructed - random)`` of the
sync score (the correlation at lag 0, ``sync.py``), the share of the gap the model closes;
the paper's LSE-D gives 0.93 teacher-forced and about 0.24 free-run. The synchrony measure
replaces SyncNet's LSE-D / LSE-C, which need a pretrained network and rendered video.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from moshi.models.compression import MimiModel

from ..errors import MoshifaceError
from ..face_codec.model import FaceCodec
from ..face_lm.generate import FaceLMGen
from ..face_lm.model import ABSENT_FACE_TOKEN, FaceLMModel
from ..face_lm.step import StepTokens
from ..fileio import atomic_write_text
from ..moshi_compat import delay_sequence, initial_tokens
from ..speech.engine import Sampling
from .dataset import Dialogue, load_split
from .eval_report import add_recovered, format_table, mean, plot_eval, sync_summary, table_rows
from .eval_setup import EvalConfig, Subject, decode_audio, decode_face, load_subject
from .expression_probe import ExpressionProbe, reply_strength
from .sync import energy_envelope, envelope_sync

__all__ = ["EvalConfig", "run_eval", "evaluate_teacher_forced", "teacher_forced_faces"]
CONDITIONS = ("generated", "reconstructed", "random", "mismatched")


# -- teacher-forced ------------------------------------------------------------------------------


@torch.no_grad()
def teacher_forced_faces(lm: FaceLMModel, codes: np.ndarray, face: np.ndarray, seed: int, device: torch.device,
                         sampling: Sampling | None = None) -> np.ndarray:
    """Generated robot face tokens [N, T] for one conversation, text and robot audio forced.

    ``codes`` [1 + 2Q, T] (text, robot audio, user audio), ``face`` [2N, T] (robot, user).
    Step s takes the user's frame s - 1 and the text/audio the model emits at step s (the
    delayed streams), and returns the face of frame s - ``face.delay``. The face is sampled with
    ``sampling``'s face temperature and top-k (``Sampling``'s defaults when None).
    """
    sampling = sampling or Sampling()
    n = lm.face_config.n_tokens
    q = lm.dep_q
    steps, delay = codes.shape[1], lm.face_config.delay
    # ``delay`` more frames: the steps that emit the last frames' faces
    extra = np.concatenate([codes] + [codes[:, -1:]] * delay, axis=1)
    extra[0, steps:] = lm.text_padding_token_id
    forced = torch.from_numpy(extra[:1 + q]).long().to(device)[None]
    initial = initial_tokens(lm)[:, :1 + q]
    delayed = delay_sequence(lm.delays[:1 + q], forced, initial)
    user_audio = torch.from_numpy(np.clip(codes[1 + q:], 0, None)).long().to(device)
    user_face = torch.from_numpy(face[n:]).long().to(device)
    gen = FaceLMGen(lm, face_temp=sampling.face_temperature, face_top_k=sampling.face_top_k, teacher_forcing=True)
    torch.manual_seed(seed)
    generated = np.zeros((n, steps), dtype=np.int64)
    with gen.streaming(1):
        for s in range(steps + delay):
            frame = min(max(s - 1, 0), steps - 1)
            uface = user_face[:, frame].view(1, n, 1)
            out = gen.step(user_audio[:, frame].view(1, -1, 1), None if bool((uface < 0).any()) else uface,
                           delayed[:, :, s:s + 1])
            if s >= delay:
                generated[:, s - delay] = StepTokens.unpack(out, q).face[0, :, 0].cpu().numpy()
    return generated


@dataclass
class TeacherForcedResult:
    name: str
    robot: int
    mve: float
    lve: float
    lve_l2: float
    speech: str  # what the sync was scored against
    sync: dict[str, dict[str, float]]
    user_face: dict[str, float] | None = None  # the smile-back strength (``user_face_effect``)
    curves: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def speech_envelope(dialogue: Dialogue, seat: int, frames: int, mimi: MimiModel, audio: np.ndarray) -> tuple[np.ndarray, str]:
    """The speaker's speech energy per face frame: from the original waveform (stored by
    ``data prepare``), else from the audio tokens decoded by Mimi (older prepared data)."""
    if dialogue.energy is not None:
        energy = np.zeros(frames)
        stored = dialogue.energy[seat][:frames]
        energy[:len(stored)] = stored
        energy[len(stored):] = stored.min() if len(stored) else 0.0
        return energy, "original waveform"
    return energy_envelope(decode_audio(mimi, audio), frames), "Mimi-decoded audio tokens"


def mismatched_tokens(other: Dialogue | None, seat: int, truth: np.ndarray) -> np.ndarray:
    """Another conversation's face in the same seat, cut or repeated to this one's length (the
    mismatched-pair control); when that seat has no face there, this face shifted by half its length."""
    steps = truth.shape[1]
    face = other.face[seat] if other is not None else None
    if face is None or (face >= 0).all(axis=0).sum() < 4:
        return np.roll(truth, steps // 2, axis=1)
    face = face[:, (face >= 0).all(axis=0)]
    reps = -(-steps // face.shape[1])
    tiled = np.tile(face, (1, reps))[:, :steps]
    return tiled


def user_face_effect(lm: FaceLMModel, codec: FaceCodec, probe: ExpressionProbe, codes: np.ndarray, face: np.ndarray,
                     faces: dict[str, np.ndarray], seed: int, device: torch.device,
                     sampling: Sampling | None = None) -> dict[str, float] | None:
    """How strongly the robot's smile follows the user's (``expression_probe.reply_strength``):
    the generated face with the user's face seen (``faces["generated"]``), generated again
    with it blanked, and the ground truth; None when the user's face is missing."""
    n = lm.face_config.n_tokens
    user = face[n:]
    if not (user >= 0).all():
        return None
    blanked = face.copy()
    blanked[n:] = ABSENT_FACE_TOKEN
    user_smile = probe.smile(decode_face(codec, user))
    unseen = decode_face(codec, teacher_forced_faces(lm, codes, blanked, seed, device, sampling))
    robot = {"seen": faces["generated"], "blanked": unseen, "ground_truth": faces["reconstructed"]}
    return {key: reply_strength(user_smile, probe.smile(motion)) for key, motion in robot.items()}


def evaluate_teacher_forced(lm: FaceLMModel, mimi: MimiModel, codec: FaceCodec, dialogue: Dialogue, robot: int,
                            lips: np.ndarray, device: torch.device, seed: int, max_steps: int | None = None,
                            other: Dialogue | None = None, probe: ExpressionProbe | None = None,
                            sampling: Sampling | None = None) -> TeacherForcedResult | None:
    """One conversation with speaker ``robot`` in the robot's seat; None when that
    speaker's face is missing (nothing to compare with). ``other`` gives the mismatched face;
    with ``probe``, the user-face effect is measured too."""
    from ..face_codec.metrics import lve, lve_max_l2, mve

    codes, face = dialogue.streams(robot)
    if max_steps:
        codes, face = codes[:, :max_steps], face[:, :max_steps]
    n = lm.face_config.n_tokens
    truth = face[:n]
    valid = (truth >= 0).all(axis=0)
    if valid.sum() < 4:
        return None  # this speaker's face is missing: nothing to compare
    generated = teacher_forced_faces(lm, codes, face, seed, device, sampling)
    rng = np.random.default_rng(seed)
    filled = np.where(truth >= 0, truth, generated)
    tokens = {"generated": generated, "reconstructed": filled,
              "random": rng.integers(0, lm.face_config.card, truth.shape),
              "mismatched": mismatched_tokens(other, robot, filled)}
    faces = {key: decode_face(codec, value) for key, value in tokens.items()}
    frames = np.repeat(valid, codec.config.downsample)
    pred, target = torch.from_numpy(faces["generated"][frames]), torch.from_numpy(faces["reconstructed"][frames])
    envelope, source = speech_envelope(dialogue, robot, len(frames), mimi, codes[1:1 + lm.dep_q])
    sync, curves = {}, {}
    for key, motion in faces.items():
        sync[key], curves[key] = envelope_sync(envelope[frames], motion[frames], lips)
    effect = None
    if probe is not None:
        effect = user_face_effect(lm, codec, probe, codes, face, faces, seed, device, sampling)
    return TeacherForcedResult(dialogue.name, robot, float(mve(pred, target)) * 1e3,
                               float(lve(pred, target, lips)) * 1e3, float(lve_max_l2(pred, target, lips)) * 1e3,
                               source, sync, effect, curves)


def _teacher_forced(config: EvalConfig, subject: Subject, curves: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    from tqdm import tqdm

    dialogues = load_split(config.data, "test")[:config.max_dialogues]
    per: list[TeacherForcedResult] = []
    # the mismatched faces: the next test conversation's, or with one test conversation a training one's
    others = dialogues[1:] + dialogues[:1] if len(dialogues) > 1 else load_split(config.data, "train")[:1]
    jobs = [(i, r) for i in range(len(dialogues)) for r in (0, 1)]
    probe = ExpressionProbe.for_corpus(config.corpus) if config.corpus is not None else None
    for n, (i, robot) in enumerate(tqdm(jobs, disable=not config.progress, desc="teacher-forced")):
        other = others[i % len(others)] if others else None
        result = evaluate_teacher_forced(subject.lm, subject.mimi, subject.codec, dialogues[i], robot, subject.lips,
                                         subject.device, config.seed + n, config.max_steps, other, probe,
                                         subject.sampling)
        if result is None:
            continue
        per.append(result)
        for key, curve in result.curves.items():
            curves.setdefault(f"teacher-forced {key}", []).append(curve)
    if not per:
        raise MoshifaceError(f"no test dialogue of {config.data} has face tokens to compare with")
    effects = [r.user_face for r in per if r.user_face is not None]
    return {
        "user_face_effect": {key: mean([e[key] for e in effects]) for key in ("seen", "blanked", "ground_truth")}
        if effects else None,
        "conversations": len(per),
        "speech": sorted({r.speech for r in per}),
        "mve_x1e-3": mean([r.mve for r in per]),
        "lve_x1e-3": mean([r.lve for r in per]),
        "lve_max_l2_mm": mean([r.lve_l2 for r in per]),
        "sync": {key: sync_summary([r.sync[key] for r in per]) for key in CONDITIONS},
        "per_conversation": [{"dialogue": r.name, "robot_speaker": r.robot, "mve_x1e-3": r.mve,
                              "lve_x1e-3": r.lve, "lve_max_l2_mm": r.lve_l2, "sync": r.sync} for r in per],
    }


# -- the command -------------------------------------------------------------------------------


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Runs the chosen protocols; writes ``results.json`` (with ``table``, the rows printed)
    and ``eval.png`` into ``--out``; ``results["table_text"]`` is the printed table."""
    from .free_run import free_runs

    unknown = sorted(set(config.modes) - {"teacher-forced", "free-run"})
    if unknown or not config.modes:
        raise MoshifaceError(f"--mode takes teacher-forced and/or free-run, got {', '.join(unknown) or 'nothing'}")
    subject = load_subject(config)
    config.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": config.model, "codec": str(config.codec), "device": str(subject.device),
                               "face_sampling": {"temperature": subject.sampling.face_temperature,
                                                 "top_k": subject.sampling.face_top_k},
                               "sync_score": "correlation of lip aperture with speech energy at lag 0"}
    curves: dict[str, list[np.ndarray]] = {}
    example: dict[str, np.ndarray] = {}
    if "teacher-forced" in config.modes:
        results["teacher_forced"] = _teacher_forced(config, subject, curves)
        add_recovered(results["teacher_forced"])
    if "free-run" in config.modes:
        results["free_run"] = free_runs(config, subject, curves, example)
        add_recovered(results["free_run"])
    results["table"] = table_rows(results)
    results["paper"] = {"recovered_teacher_forced": 0.93, "recovered_free_run": 0.24,
                        "note": "from LSE-D, Table 2: (11.7 - 8.76) / (11.7 - 8.53), (11.8 - 11.0) / (11.8 - 8.53)"}
    atomic_write_text(config.out / "results.json", json.dumps(results, indent=1))
    plot_eval(curves, example, config.out / "eval.png")
    results["table_text"] = format_table(results)
    return results

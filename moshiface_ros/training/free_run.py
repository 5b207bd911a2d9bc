"""Free-run evaluation: two Moshi-Face conversations talking to each other, scored against
the robot's own speech as its audio tokens carry it (``probe.py``).

Each side's robot audio and face tokens become the other's user streams one step later
(the 80 ms a real link takes); the two run as one batch of two on the same weights, which
is two identical models, as in the paper. There is no ground truth, so the table's bounds
are measured the same way on the test split: the reconstructed face (ground-truth face
tokens decoded) against the probe's energy of the ground-truth audio tokens. The random
face is uniform random tokens; the mismatched face another free-run conversation's face
(or, with a single conversation, this face shifted by half its length).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from moshi.models.compression import MimiModel

from ..constants import FRAME_SIZE
from ..face_lm.generate import FaceLMGen
from ..face_lm.model import FaceLMModel
from ..face_lm.step import StepTokens
from ..speech.engine import Sampling
from .dataset import Dialogue, load_split
from .eval_report import sync_summary
from .eval_setup import EvalConfig, Subject, decode_face
from .probe import EnergyProbe, fit_probe
from .sync import envelope_sync, lip_aperture

CONDITIONS = ("generated", "reconstructed", "random", "mismatched")


@torch.no_grad()
def free_run(lm: FaceLMModel, mimi: MimiModel, steps: int, seed: int, device: torch.device,
             sampling: Sampling | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two conversations feeding each other: returns audio tokens [2, Q, F] and face tokens
    [2, N, F] of both sides, frame by frame (F = steps - 1 - the face lag: the first step
    produces nothing, and a face delayed past the audio's comes ``face_lag`` steps later)."""
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
    lag = gen.face_lag
    audio_frames, face_frames = np.stack(audio, axis=-1), np.stack(face, axis=-1)
    return audio_frames[..., :audio_frames.shape[-1] - lag], face_frames[..., lag:]


def step_energy(dialogue: Dialogue, seat: int, downsample: int) -> np.ndarray:
    """[T] the speaker's original speech energy per step (the mean over its face frames)."""
    assert dialogue.energy is not None
    energy = np.zeros(dialogue.steps * downsample)
    stored = dialogue.energy[seat][:len(energy)]
    energy[:len(stored)] = stored
    energy[len(stored):] = stored.min() if len(stored) else 0.0
    return energy.reshape(dialogue.steps, downsample).mean(axis=1)


def _probe_data(dialogues: list[Dialogue], downsample: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    pairs = [(d.audio[s].astype(np.int64), step_energy(d, s, downsample)) for d in dialogues for s in (0, 1)
             if d.energy is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def train_probe(config: EvalConfig, subject: Subject) -> tuple[EnergyProbe, dict[str, Any]]:
    """The energy probe fitted on the training split (penalty chosen on validation), and how
    well it reads the held-out test dialogues' energy."""
    from ..errors import MoshifaceError

    r = subject.codec.config.downsample
    train, valid, test = (_probe_data(load_split(config.data, split), r) for split in ("train", "valid", "test"))
    if not train[0] or not valid[0]:
        raise MoshifaceError(f"{config.data} holds no speech energy (prepared before it was stored): run "
                             "`moshiface data prepare --overwrite` to score free-run sync")
    probe, valid_corr = fit_probe(train, valid, int(subject.lm.card))
    return probe, {"method": "ridge on one-hot audio tokens -> log speech energy per step (training split)",
                   "penalty": probe.penalty, "valid_corr": valid_corr,
                   "test_corr": probe.score(*test) if test[0] else None}


def _score(envelope: np.ndarray, motion: np.ndarray, lips: np.ndarray, key: str,
           scores: dict[str, list], curves: dict[str, list[np.ndarray]]) -> None:
    result, curve = envelope_sync(envelope, motion, lips)
    scores.setdefault(key, []).append(result)
    curves.setdefault(f"free-run {key}", []).append(curve)


def _reconstructed(config: EvalConfig, subject: Subject, probe: EnergyProbe, scores: dict[str, list]) -> None:
    """The upper bound, measured as the generated face is: ground-truth face tokens of the
    test split against the probe's energy of the ground-truth audio tokens."""
    r = subject.codec.config.downsample
    for dialogue in load_split(config.data, "test")[:config.max_dialogues]:
        for seat in (0, 1):
            face = dialogue.face[seat][:, :config.free_run_steps]
            valid = (face >= 0).all(axis=0)
            if valid.sum() < 4:
                continue
            envelope = np.repeat(probe.predict(dialogue.audio[seat][:, :config.free_run_steps][:, valid]), r)
            motion = decode_face(subject.codec, face[:, valid].astype(np.int64))
            scores.setdefault("reconstructed", []).append(envelope_sync(envelope, motion, subject.lips)[0])


def free_runs(config: EvalConfig, subject: Subject, curves: dict[str, list[np.ndarray]],
              example: dict[str, np.ndarray]) -> dict[str, Any]:
    from tqdm import tqdm

    probe, probe_info = train_probe(config, subject)
    r = subject.codec.config.downsample
    rng = np.random.default_rng(config.seed)
    sides = []
    for i in tqdm(range(config.free_runs), disable=not config.progress, desc="free-run"):
        audio, face = free_run(subject.lm, subject.mimi, config.free_run_steps, config.seed + 1000 + i, subject.device,
                               subject.sampling)
        sides += [(np.repeat(probe.predict(audio[s]), r), face[s]) for s in range(2)]
    scores: dict[str, list] = {}
    for j, (envelope, tokens) in enumerate(sides):
        other = sides[(j + 2) % len(sides)][1] if len(sides) > 2 else np.roll(tokens, tokens.shape[1] // 2, axis=1)
        for key, value in (("generated", tokens), ("random", rng.integers(0, subject.lm.face_config.card, tokens.shape)),
                           ("mismatched", other)):
            motion = decode_face(subject.codec, value)
            _score(envelope, motion, subject.lips, key, scores, curves)
            if not example and key == "generated":
                example.update(envelope=envelope, aperture=lip_aperture(motion, subject.lips))
    _reconstructed(config, subject, probe, scores)
    return {"conversations": config.free_runs, "sides": len(sides), "steps": config.free_run_steps,
            "speech": "energy probe on the robot's audio tokens", "probe": probe_info,
            "sync": {key: sync_summary(scores.get(key, [])) for key in CONDITIONS},
            "per_side": scores["generated"]}

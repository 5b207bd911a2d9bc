"""Several conversations in one forward pass: ``BatchedEngine`` steps B slots together.

A 7B step reads its ~15 GB of weights once whatever the batch size, so on a GPU B
conversations stepped together cost little more than one: this is how one GPU serves a
fleet of robots. Each slot is one conversation with its own stream clock (moshi keeps an
offset per batch item in every streaming module), its own warm-up (moshi's out-of-sync
mode: a slot that joins late marks its first step as not yet generated instead of making
the whole batch wait) and its own reset (``reset_streaming(reset_mask)`` clears only the
slot's caches, convolution memories and face state).

A slot that has no input this step is masked (moshi's ``exec_mask``): it is computed with
the others but its state does not move, so it continues next time as if the idle step
never happened. A slot's tokens are exactly those it would get stepped alone
(``test/test_batch_engine.py`` checks it, joins and resets included), with a temperature
too: each slot samples from its own generator, seeded with its own seed and reseeded when
the slot resets (``face_lm/slot_sampling.py``), never from torch's global one.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..constants import DEFAULT_SEED, FRAME_SIZE
from ..face_codec.shared import slot_mask
from ..face_lm.model import ABSENT_FACE_TOKEN, FaceLMModel
from ..face_lm.step import StepTokens
from .engine import (LagAligner, Sampling, StepOutput, StreamingEngine, build_generator, check_user_face, face_lag,
                     step_contexts, token_piece)
from .models import SpeechModels

__all__ = ["BatchedEngine"]


def _slot_seeds(slots: int, seed: int | None, given: Sequence[int] | None) -> list[int]:
    """Each slot's seed: those given, else ``seed + slot``; an unseeded engine draws them."""
    if given is not None:
        if len(given) != slots:
            raise ValueError(f"{len(given)} slot seeds for {slots} slots")
        return [int(value) for value in given]
    if seed is None:
        return [torch.Generator().seed() for _ in range(slots)]
    return [seed + slot for slot in range(slots)]


class BatchedEngine(StreamingEngine):
    """Drives Mimi and Moshi(-Face) over ``slots`` conversations at once.

    ``step({slot: pcm}, {slot: user_face_tokens})`` advances the slots given and masks the
    others; ``reset(slot)`` starts a new conversation in one slot. ``slot_seeds``: each
    slot's sampling seed (default ``seed + slot``): a slot with seed s samples what an
    engine of one slot seeded s samples from the same input. The engine owns the
    models' streaming state until ``close()``.
    """

    def __init__(self, models: SpeechModels, slots: int, sampling: Sampling | None = None,
                 seed: int | None = DEFAULT_SEED, cuda_graphs: bool = True,
                 slot_seeds: Sequence[int] | None = None) -> None:
        if slots < 1:
            raise ValueError(f"a batched engine needs at least one slot, got {slots}")
        if models.mimi.is_streaming or models.lm.is_streaming:
            raise RuntimeError("these models are driven by another engine: close() it first")
        self.models = models
        self.slots = slots
        self.cuda_graphs = cuda_graphs
        self.device = next(models.lm.parameters()).device
        self._mimi = models.mimi
        self.slot_seeds = _slot_seeds(slots, seed, slot_seeds)
        self._gen = build_generator(models, sampling or Sampling(), out_of_sync=True, slot_seeds=self.slot_seeds)
        self._face_tokens = models.lm.face_config.n_tokens if isinstance(models.lm, FaceLMModel) else 0
        self._aligners = [LagAligner(face_lag(self._gen)) for _ in range(slots)]  # each slot's voice waits for its face
        self._streaming = contextlib.ExitStack()
        self._streaming.enter_context(self._mimi.streaming(slots))
        self._streaming.enter_context(self._gen.streaming(slots))
        self.steps = [0] * slots  # each slot's own clock
        if seed is not None:
            torch.manual_seed(seed)

    def _slot_mask(self, slots: Iterable[int]) -> torch.Tensor:
        return slot_mask(slots, self.slots, self.device)

    def reset(self, *slots: int) -> None:
        """Starts a new conversation in each slot given; the other slots are untouched."""
        mask = self._slot_mask(slots)
        with torch.no_grad():
            self._gen.reset_streaming(mask)
            self._mimi.reset_streaming(mask)
        for slot in slots:
            self.steps[slot] = 0
            self._aligners[slot].reset()

    def _inputs(self, pcm: Mapping[int, np.ndarray],
                faces: Mapping[int, np.ndarray | None]) -> tuple[torch.Tensor, torch.Tensor | None]:
        # torch's allocator (64-byte aligned), not numpy's: the BLAS kernels' rounding may follow
        # a buffer's alignment, and a slot's numbers must not depend on where its batch lives
        audio = torch.zeros((self.slots, 1, FRAME_SIZE), dtype=torch.float32)
        for slot, frame in pcm.items():
            frame = np.asarray(frame, dtype=np.float32)
            if frame.shape != (FRAME_SIZE,):
                raise ValueError(f"slot {slot}: a step takes {FRAME_SIZE} mono samples, got shape {frame.shape}")
            audio[slot, 0] = torch.from_numpy(frame)
        if not self.has_face:
            return audio.to(self.device), None
        face = np.full((self.slots, self._face_tokens, 1), ABSENT_FACE_TOKEN, np.int64)
        for slot, tokens in faces.items():
            if tokens is not None and slot in pcm:
                face[slot, :, 0] = check_user_face(self.models, tokens)
        return audio.to(self.device), torch.from_numpy(face).to(self.device)

    def step(self, pcm: Mapping[int, np.ndarray],
             user_faces: Mapping[int, np.ndarray | None] | None = None) -> dict[int, StepOutput]:
        """Advances every slot in ``pcm`` (1920 samples each) by 80 ms; the others idle.

        ``user_faces``: a slot's N user face tokens (Moshi-Face models), None or absent
        when its user's face is not seen. Returns each stepped slot's ``StepOutput``.
        """
        active = self._slot_mask(pcm.keys())
        audio, face = self._inputs(pcm, user_faces or {})
        with step_contexts(self.device, self.cuda_graphs):
            self._mimi.set_exec_mask(active)
            user_codes = self._mimi.encode(audio)
            self._gen.set_exec_mask(active)
            packed = self._gen.step(user_codes, face) if self.has_face else self._gen.step(user_codes)
            tokens = StepTokens.unpack(packed, self.models.lm.dep_q)
            produced = active & (tokens.text[:, 0, 0] != self.models.lm.ungenerated_token_id)
            robot = None
            if bool(produced.any()):
                self._mimi.set_exec_mask(produced)
                robot = self._mimi.decode(tokens.audio.clamp(min=0)).clamp_(-1.0, 1.0).float().cpu().numpy()
        return self._outputs(pcm.keys(), user_codes.cpu().numpy(), tokens, produced.cpu().numpy(), robot)

    def _outputs(self, slots: object, user_codes: np.ndarray, tokens: StepTokens,
                 produced: np.ndarray, robot: np.ndarray | None) -> dict[int, StepOutput]:
        text = tokens.text[:, 0, 0].cpu().numpy()
        audio = tokens.audio[:, :, 0].cpu().numpy().astype(np.int64)
        face = tokens.face[:, :, 0].cpu().numpy().astype(np.int64) if tokens.face is not None else None
        outputs: dict[int, StepOutput] = {}
        for slot in sorted(slots):  # type: ignore[call-overload]
            pcm, token, robot_audio, robot_face = np.zeros(FRAME_SIZE, np.float32), None, None, None
            if produced[slot]:
                pcm, token, robot_audio, robot_face = self._aligners[slot].align(
                    robot[slot].reshape(-1), int(text[slot]), audio[slot], face[slot] if face is not None else None)
            outputs[slot] = StepOutput(
                step=self.steps[slot],
                pcm=pcm,
                user_tokens=user_codes[slot, :, 0].astype(np.int64),
                text_token=token,
                text_piece=None if token is None else token_piece(self.models, token),
                audio_tokens=robot_audio,
                face_tokens=robot_face,
            )
            self.steps[slot] += 1
        return outputs

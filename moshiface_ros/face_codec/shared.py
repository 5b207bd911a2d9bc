"""One streaming face codec for several conversations: each step encodes every robot's user
face and decodes every robot's face in one pass.

The codec's cost on a CPU is reading its weights (the vertex projections are tens of MB at
5,023 vertices), so B faces in one pass cost little more than one, as the language model's
batch does. Each slot is one conversation: a slot not given this step is masked (its
encoder and decoder memories do not move), ``reset(slot)`` clears only its memories, and a
slot's tokens and frames are those its own codec would give (``test/test_shared_codec.py``).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping

import numpy as np
import torch

from .model import FaceCodec

__all__ = ["SharedFaceCodec", "slot_mask"]


def slot_mask(slots: Iterable[int], size: int, device: torch.device) -> torch.Tensor:
    """[size] booleans, true at each slot given (what moshi's exec and reset masks take);
    a slot outside 0..size-1 is a ``ValueError`` naming it."""
    mask = torch.zeros(size, dtype=torch.bool)
    for slot in slots:
        if not 0 <= slot < size:
            raise ValueError(f"slot {slot} is outside 0..{size - 1}")
        mask[slot] = True
    return mask.to(device)


class SharedFaceCodec:
    """A causal ``FaceCodec`` streaming ``slots`` conversations at once (call ``close``)."""

    def __init__(self, codec: FaceCodec, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a shared codec needs at least one slot, got {slots}")
        self.codec = codec
        self.slots = slots
        self.vertices = codec.config.vertices
        self._device = codec.scale.device
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(codec.streaming(slots))
        self._frames = torch.zeros(slots, codec.config.downsample, self.vertices, 3, device=self._device)
        self._tokens = torch.zeros(slots, 1, codec.config.n_tokens, dtype=torch.int64, device=self._device)

    def close(self) -> None:
        """Ends the codec's streaming state (idempotent)."""
        self._stack.close()

    def __enter__(self) -> "SharedFaceCodec":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mask(self, slots: Iterable[int]) -> torch.Tensor:
        return slot_mask(slots, self.slots, self._device)

    def reset(self, *slots: int) -> None:
        """Starts a new conversation in each slot given; the others are untouched."""
        with torch.no_grad():
            self.codec.reset_streaming(self._mask(slots))

    @torch.no_grad()
    def encode(self, frames: Mapping[int, np.ndarray | None]) -> dict[int, np.ndarray | None]:
        """Steps the encoder of every slot given: its step's (r, V, 3) user face frames, or
        None when the face is not seen (the neutral face keeps its memory on the step
        clock). Returns each slot's tokens, None where the face was not seen."""
        self._frames.zero_()
        for slot, step in frames.items():
            if step is not None:
                self._frames[slot] = torch.from_numpy(np.asarray(step, np.float32))
        self.codec.encoder.set_exec_mask(self._mask(frames.keys()))
        tokens = self.codec.encode_step(self._frames)[:, 0].cpu().numpy()
        return {slot: None if step is None else tokens[slot] for slot, step in frames.items()}

    @torch.no_grad()
    def decode(self, tokens: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Steps the decoder of every slot given its robot's step of tokens; returns each
        slot's (r, V, 3) frames. A slot not given (no tokens yet) does not move."""
        if not tokens:
            return {}
        self._tokens.zero_()
        for slot, step in tokens.items():
            self._tokens[slot, 0] = torch.from_numpy(np.asarray(step, np.int64))
        self.codec.decoder.set_exec_mask(self._mask(tokens.keys()))
        frames = self.codec.decode_step(self._tokens).cpu().numpy()
        return {slot: frames[slot] for slot in tokens}

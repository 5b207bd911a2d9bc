"""One generated step by name: the text token, the robot's audio tokens and its face tokens.

moshi's generators return a step as one packed tensor [B, 1 + dep_q (+ N), 1]: the text
token, the dep_q audio tokens of the robot, then (``FaceLMGen`` only) its N face tokens.
Everything that reads a step (the speech engine, evaluation) unpacks it here instead of
slicing that layout by position, so the layout is written down once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepTokens:
    """Views into one packed step; each keeps moshi's [B, K, 1] shape, so a field can be
    fed back to a model (Mimi's decoder, the other side of a conversation) as it is."""

    text: torch.Tensor  # [B, 1, 1]
    audio: torch.Tensor  # [B, dep_q, 1]
    face: torch.Tensor | None  # [B, N, 1]; None for an audio-only model

    @classmethod
    def unpack(cls, packed: torch.Tensor, dep_q: int) -> "StepTokens":
        """Splits ``packed`` [B, 1 + dep_q (+ N), 1]; no face part means an audio-only step."""
        if packed.dim() != 3 or packed.shape[1] < 1 + dep_q:
            raise ValueError(f"a packed step is [B, 1 + {dep_q} (+ N), 1], got {tuple(packed.shape)}")
        face = packed[:, 1 + dep_q:] if packed.shape[1] > 1 + dep_q else None
        return cls(packed[:, :1], packed[:, 1:1 + dep_q], face)

    def pack(self) -> torch.Tensor:
        """The packed layout again: [B, 1 + dep_q (+ N), 1]."""
        parts = [self.text, self.audio] + ([self.face] if self.face is not None else [])
        return torch.cat(parts, dim=1)

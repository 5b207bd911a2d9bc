"""The training loss of Moshi-Face: L = L_text + L_audio + lambda * L_face.

Three cross-entropies over the teacher-forced logits of ``FaceLMModel.forward`` (already
aligned with the targets, positions without a target masked out), each a plain mean unless
``LossWeights`` asks for Moshi's fine-tuning weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..face_lm.model import FaceLMModel, FaceLMOutput


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the positions where ``mask`` is set (0 when there are none)."""
    selected = logits[mask].float()
    if selected.numel() == 0:
        return logits.new_zeros((), dtype=torch.float32)
    losses = F.cross_entropy(selected, targets[mask], reduction="none")
    if weights is None:
        return losses.mean()
    w = weights[mask].to(losses)
    return (losses * w).sum() / w.sum().clamp(min=1e-8)


@dataclass
class LossWeights:
    """L = L_text + L_audio + face * L_face (the paper: face = 1). The other two default to
    a plain mean; Moshi's fine-tuning recipes down-weight text padding and up-weight the
    semantic codebook, which these allow."""

    face: float = 1.0
    text_padding: float = 1.0
    semantic: float = 1.0


def face_lm_loss(model: FaceLMModel, output: FaceLMOutput, codes: torch.Tensor, face_codes: torch.Tensor,
                 weights: LossWeights | None = None) -> dict[str, torch.Tensor]:
    """The three cross-entropies and their weighted sum (``total``)."""
    weights = weights or LossWeights()
    text_targets = codes[:, :1]
    text_w = torch.ones_like(text_targets, dtype=torch.float32)
    if weights.text_padding != 1.0:
        text_w = torch.where(text_targets == model.text_padding_token_id,
                             torch.full_like(text_w, weights.text_padding), text_w)
    text = masked_cross_entropy(output.text_logits, text_targets, output.text_mask, text_w)
    audio_targets = codes[:, 1:1 + model.dep_q]
    audio_w = torch.ones_like(audio_targets, dtype=torch.float32)
    audio_w[:, 0] = weights.semantic
    audio = masked_cross_entropy(output.logits, audio_targets, output.mask, audio_w)
    n = model.face_config.n_tokens
    face = masked_cross_entropy(output.face_logits, face_codes[:, :n], output.face_mask)
    return {"total": text + audio + weights.face * face, "text": text, "audio": audio, "face": face}

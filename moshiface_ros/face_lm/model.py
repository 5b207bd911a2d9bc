"""``FaceLMModel``: Moshi's ``LMModel`` with 2N face input streams and a Face Transformer.

Streams at one step (the paper's notation; N = 8 face tokens, M = 8 audio tokens):

- inputs of the temporal transformer: text, 2M audio (robot, user) as in Moshi, plus 2N
  face streams (the robot's own previous face tokens, then the user's), each embedded and
  summed into the step input, delayed by ``face.delay`` (1) step relative to the text as
  Moshi's acoustic audio is;
- outputs: text and M audio tokens (Moshi's heads, unchanged) and N face tokens from the
  Face Transformer, conditioned on e_all = h + e_text + sum_m e_audio_m, where h is the
  temporal transformer's output, e_text the embedding of the text token just produced
  and e_audio_m those of the M audio tokens the depth transformer just produced (the
  temporal transformer's own input embeddings, i.e. what the next step will see).

The face input embeddings enter through the slot Moshi keeps for summed conditions
(``forward_text``'s ``sum_condition``), so none of Moshi's code is duplicated or changed
and every Moshi weight keeps its name: a Moshi checkpoint loads with only the face
parameters (``face_emb.*``, ``face_transformer.*``) missing.

A face token id of -1 (Moshi's "zero token") contributes nothing to the input: that is
what the user's face streams carry when no face is seen (see ``ABSENT_FACE_TOKEN``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from moshi.models.lm import LMModel
from torch import nn

from ..moshi_compat import delay_sequence, forget_streaming_children, initial_tokens, undelay_sequence
from .config import FaceConfig
from .face_transformer import FaceTransformer

ABSENT_FACE_TOKEN = -1  # Moshi's zero token: "no input" (the user's face is not seen)
FACE_PREFIXES = ("face_emb.", "face_transformer.")


@dataclass
class FaceLMOutput:
    """Logits aligned with the input codes (no shift needed for the loss), as ``LMOutput``."""

    logits: torch.Tensor  # [B, dep_q, T, card] robot audio
    mask: torch.Tensor  # [B, dep_q, T]
    text_logits: torch.Tensor  # [B, 1, T, text_card]
    text_mask: torch.Tensor  # [B, 1, T]
    face_logits: torch.Tensor  # [B, N, T, K] robot face
    face_mask: torch.Tensor  # [B, N, T]


class FaceLMModel(LMModel):
    """``LMModel`` plus the face streams; ``face`` is a ``FaceConfig``, the rest Moshi's kwargs."""

    def __init__(self, face: FaceConfig, device=None, dtype=None, **lm_kwargs: Any) -> None:
        super().__init__(device=device, dtype=dtype, **lm_kwargs)
        self.face_config = face
        self._norm = lm_kwargs.get("norm", "layer_norm")
        self._gating = lm_kwargs.get("gating", "none")
        self.build_face_modules(device, dtype)

    # -- the new parameters ----------------------------------------------------------------

    def build_face_modules(self, device=None, dtype=None) -> None:
        """(Re)creates and initialises the face parameters on ``device``.

        Called by the constructor, and after Moshi weights were assigned into a model built
        on the meta device, to give the missing face parameters real, initialised storage.
        """
        face = self.face_config
        # 2N streams in one table (one lookup per step): stream s uses rows s*(K+1)..;
        # within a stream, id K is the initial token (before the first face token exists).
        self.face_emb = nn.Embedding(2 * face.n_tokens * (face.card + 1), self.dim, device=device, dtype=dtype)
        if face.input_init == "zero":
            nn.init.zeros_(self.face_emb.weight)
        else:
            std = self.dim ** -0.5
            with torch.no_grad():
                init = torch.empty(self.face_emb.weight.shape, device=device, dtype=torch.float32)
                nn.init.trunc_normal_(init, std=std, a=-3 * std, b=3 * std)
                self.face_emb.weight.copy_(init)
        self.face_transformer = FaceTransformer(face, self.dim, norm=self._norm, gating=self._gating,
                                                device=device, dtype=dtype, audio_card=self.card,
                                                audio_streams=self.dep_q)
        forget_streaming_children(self)  # streaming looks its children up again

    def face_parameter_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters() if name.startswith(FACE_PREFIXES)]

    @property
    def num_face_streams(self) -> int:
        return 2 * self.face_config.n_tokens

    @property
    def face_delays(self) -> list[int]:
        return [self.face_config.delay] * self.num_face_streams

    # -- building blocks shared by training and streaming -----------------------------------

    def face_input_sum(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the 2N face-stream embeddings: tokens [B, 2N, T] -> [B, T, dim].

        Ids: 0..K-1 face tokens, K the initial token, -1 nothing (contributes zero).
        """
        B, S, T = tokens.shape
        assert S == self.num_face_streams, (S, self.num_face_streams)
        offsets = torch.arange(S, device=tokens.device) * (self.face_config.card + 1)
        present = tokens != ABSENT_FACE_TOKEN
        index = tokens.clamp(min=0) + offsets[:, None]
        flat = index.transpose(1, 2).reshape(B * T, S)
        weights = present.transpose(1, 2).reshape(B * T, S).to(self.face_emb.weight.dtype)
        summed = F.embedding_bag(flat, self.face_emb.weight, per_sample_weights=weights, mode="sum")
        return summed.view(B, T, -1)

    def face_logits(self, transformer_out: torch.Tensor, text: torch.Tensor, audio: torch.Tensor,
                    prev_face: torch.Tensor | None) -> torch.Tensor:
        """Face Transformer logits [B, N, T, K].

        ``transformer_out`` [B, T, dim] is h; ``text`` [B, T] the text tokens produced at
        those positions; ``audio`` [B, dep_q, T] the robot audio tokens produced with them;
        ``prev_face`` [B, N, T] the robot's face tokens of the step before (ids 0..K).
        """
        e_all = transformer_out + self.text_emb(text)
        for m in range(self.dep_q):
            e_all = e_all + self.emb[m](audio[:, m])
        prev = None
        if self.face_config.use_prev_tokens:
            prev = prev_face.transpose(1, 2)
        return self.face_transformer(e_all, prev, audio.transpose(1, 2)).permute(0, 2, 1, 3)

    # -- training forward --------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, face_codes: torch.Tensor | None = None,
                condition_tensors: Any = None) -> FaceLMOutput:  # type: ignore[override]
        """Teacher-forced logits for every stream.

        ``codes`` [B, 1 + n_q, T] as for ``LMModel`` (text, robot audio, user audio);
        ``face_codes`` [B, 2N, T]: robot face tokens, then the user's (-1 where no face).
        The robot's previous face tokens reach the Face Transformer from ``face_codes``
        (teacher forcing). When no RQ-Transformer weight needs a gradient (training stage
        1), the RQ-Transformer runs without autograd: only the Face Transformer learns.
        """
        if face_codes is None:
            raise ValueError("FaceLMModel.forward needs face_codes [B, 2N, T]")
        B, K, T = codes.shape
        assert K == self.num_codebooks, (K, self.num_codebooks)
        assert face_codes.shape == (B, self.num_face_streams, T), (face_codes.shape, codes.shape)
        initial = initial_tokens(self).expand(B, -1, -1)
        sequence = torch.cat([initial, delay_sequence(self.delays, codes, initial)], dim=2)
        face_initial = torch.full_like(face_codes[:, :, :1], self.face_config.initial_token_id)
        face_sequence = torch.cat(
            [face_initial, delay_sequence(self.face_delays, face_codes, face_initial)], dim=2)

        with torch.set_grad_enabled(torch.is_grad_enabled() and self._backbone_trains()):
            sum_condition = self.face_input_sum(face_sequence[:, :, :-1])
            cross = None
            if condition_tensors is not None:
                assert self.fuser is not None
                fused = self.fuser.get_sum(condition_tensors)
                if fused is not None:
                    sum_condition = sum_condition + fused.to(sum_condition)
                cross = self.fuser.get_cross(condition_tensors)
            transformer_out, text_logits = self.forward_text(sequence[:, :, :-1], sum_condition, cross)
            logits = self.forward_depformer_training(sequence[:, :, 1:], transformer_out)
        n = self.face_config.n_tokens
        face_logits = self.face_logits(transformer_out, sequence[:, 0, 1:],
                                       sequence[:, 1:1 + self.dep_q, 1:], face_sequence[:, :n, :-1])

        logits, mask = undelay_sequence(self.delays[1:1 + self.dep_q], logits, fill_value=float("NaN"))
        mask &= codes[:, 1:1 + self.dep_q] != self.zero_token_id
        text_logits, text_mask = undelay_sequence(self.delays[:1], text_logits, fill_value=float("NaN"))
        text_mask &= codes[:, :1] != self.zero_token_id
        face_logits, face_mask = undelay_sequence(self.face_delays[:n], face_logits, fill_value=float("NaN"))
        face_mask &= face_codes[:, :n] != ABSENT_FACE_TOKEN
        return FaceLMOutput(logits, mask, text_logits, text_mask, face_logits, face_mask)

    def _backbone_trains(self) -> bool:
        return any(p.requires_grad for name, p in self.named_parameters()
                   if not name.startswith("face_transformer."))


# -- construction ------------------------------------------------------------------------

_NOT_CONSTRUCTOR_KEYS = ("lora", "lora_rank", "lora_scaling", "depformer_causal")


def lm_constructor_kwargs(lm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Moshi's checkpoint config -> ``LMModel`` keyword arguments (as moshi's loader does)."""
    kwargs = copy.deepcopy(dict(lm_kwargs))
    for key in _NOT_CONSTRUCTOR_KEYS:
        kwargs.pop(key, None)
    if "demux_second_stream" in kwargs:
        kwargs["demux_second_text_stream"] = kwargs.pop("demux_second_stream")
    if "conditioners" in kwargs or kwargs.get("fuser") is not None:
        raise ValueError("conditioned Moshi models are not supported by Moshi-Face")
    kwargs.pop("fuser", None)
    return kwargs


def build_face_lm(lm_kwargs: dict[str, Any], face: FaceConfig, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> FaceLMModel:
    """A randomly initialised Moshi-Face model (eval mode; call ``.train()`` to train)."""
    model = FaceLMModel(face, device=device, dtype=dtype, **lm_constructor_kwargs(lm_kwargs))
    return model.eval()

"""The Face Transformer: N face tokens per step, in parallel, from one conditioning vector.

    e_all = h + e_text + sum_m e_audio_m            (built by the caller, ``model.py``)
    q_n   = Proj(e_all) + pe_n (+ E_n(f_prev_n)) (+ sum_m A_m(a_m))    n = 1..N
    logits_n = Head_n(Transformer({q_n}))           non-causal self-attention over n

The N codebook indices of a codec frame are quantized independently, so no order is
imposed among them: every position attends to every other and all N are sampled at once.
Timewise dependency comes through ``e_all`` (the temporal transformer's state) and the
previous step's tokens, when ``use_prev_tokens`` is on. With ``audio_lookup`` the step's
robot audio tokens a_m also enter through the Face Transformer's own tables A_m (see
``FaceConfig``).
"""

from __future__ import annotations

import torch
from moshi.modules.transformer import StreamingTransformer, create_norm_fn
from torch import nn

from ..moshi_compat import init_layer
from .config import FaceConfig


class FaceTransformer(nn.Module):
    """Maps ``e_all`` [B, T, dim_in] (and the previous tokens [B, T, N]) to logits [B, T, N, K]."""

    def __init__(self, config: FaceConfig, dim_in: int, norm: str = "rms_norm_f32",
                 gating: str = "silu", device=None, dtype=None, audio_card: int = 0, audio_streams: int = 0) -> None:
        super().__init__()
        self.config = config
        n, dim = config.n_tokens, config.dim
        self.proj = nn.Linear(dim_in, dim, bias=False, device=device, dtype=dtype)
        self.pos_emb = nn.Parameter(torch.zeros(n, dim, device=device, dtype=dtype))
        if config.use_prev_tokens:
            # One table for the N positions (one lookup per step, not N); within a
            # position's rows, index ``card`` = no previous token yet.
            self.prev_emb = nn.Embedding(n * (config.card + 1), dim, device=device, dtype=dtype)
        else:
            self.prev_emb = None
        self.audio_card, self.audio_streams = audio_card, audio_streams
        self.audio_emb = None
        if config.audio_lookup:
            # one table for the streams; within a stream's rows, index ``audio_card`` = no token
            self.audio_emb = nn.Embedding(audio_streams * (audio_card + 1), dim, device=device, dtype=dtype)
        self.transformer = StreamingTransformer(
            d_model=dim, num_heads=config.num_heads, num_layers=config.num_layers,
            dim_feedforward=config.dim_feedforward, causal=False, context=None,
            positional_embedding="none", norm=norm, gating=gating, layer_scale=None,
            device=device, dtype=dtype)
        # Steps are this module's batch: it must never follow the LM into streaming mode.
        self.transformer.set_streaming_detached(True)
        self.out_norm = create_norm_fn(norm, dim)
        self.heads = nn.Parameter(torch.empty(n, config.card, dim, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Moshi's initialisation (truncated normal, std 1/sqrt(fan_in))."""
        init_layer(self.proj)
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        for table in (self.prev_emb, self.audio_emb):
            if table is not None:
                init_layer(table)
        for layer in self.transformer.layers:
            layer.apply(init_layer)
        std = self.config.dim ** -0.5
        nn.init.trunc_normal_(self.heads, std=std, a=-3 * std, b=3 * std)

    def forward(self, e_all: torch.Tensor, prev_tokens: torch.Tensor | None = None,
                audio: torch.Tensor | None = None) -> torch.Tensor:
        """``e_all`` [B, T, dim_in]; ``prev_tokens`` [B, T, N] ids in [0, K] (K or -1: none);
        ``audio`` [B, T, M] the step's robot audio tokens (read with ``audio_lookup``)."""
        B, T, _ = e_all.shape
        n = self.config.n_tokens
        queries = self.proj(e_all)[:, :, None, :] + self.pos_emb  # [B, T, N, D]
        if self.prev_emb is not None:
            if prev_tokens is None:
                raise ValueError("this Face Transformer takes the previous step's face tokens")
            # -1 (the robot's face was missing in the data) reads as "no previous token"
            prev = torch.where(prev_tokens < 0, self.config.card, prev_tokens)
            offsets = torch.arange(n, device=prev.device) * (self.config.card + 1)
            queries = queries + self.prev_emb(prev + offsets).to(queries)
        if self.audio_emb is not None:
            if audio is None or audio.shape[-1] != self.audio_streams:
                raise ValueError(f"this Face Transformer reads the step's {self.audio_streams} audio tokens")
            ids = torch.where((audio < 0) | (audio > self.audio_card), self.audio_card, audio)
            offsets = torch.arange(self.audio_streams, device=ids.device) * (self.audio_card + 1)
            queries = queries + self.audio_emb(ids + offsets).sum(dim=2, keepdim=True).to(queries)
        out = self.transformer(queries.reshape(B * T, n, -1))
        out = self.out_norm(out).view(B, T, n, -1)
        return torch.einsum("btnd,nkd->btnk", out, self.heads.to(out))

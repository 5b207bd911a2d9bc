"""Vector quantization of the codec's latents: one shared codebook of K entries.

Each of the N latents of a step is quantized on its own to its nearest codebook entry
(the paper treats the N components of a frame as independent, which is what later lets
the Face Transformer predict them in parallel). Gradients pass straight through.

The codebook learns by exponential moving averages of the latents assigned to each entry
(``ema_decay`` > 0, the default: stable and needs no codebook loss) or by gradient with a
codebook loss (``ema_decay`` = 0). Either way the loss ``L_q`` includes the commitment
term beta * ||z - sg(e)||^2 that keeps the encoder near its codes, and entries that fall
out of use (EMA usage below ``dead_code_fraction`` of the average entry's) are restarted
from latents of the current batch, so the codebook does not collapse onto a few entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Quantized:
    values: torch.Tensor  # (..., C) quantized latents, straight-through
    indices: torch.Tensor  # (...,) int64 codebook indices
    loss: torch.Tensor  # scalar L_q


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, commitment: float = 0.25, ema_decay: float = 0.99,
                 dead_code_fraction: float = 0.03, eps: float = 1e-5) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.dim = dim
        self.commitment = commitment
        self.ema_decay = ema_decay
        self.dead_code_fraction = dead_code_fraction
        self.eps = eps
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        if ema_decay > 0:
            self.register_buffer("usage", torch.ones(codebook_size))
            self.register_buffer("embedding_sum", torch.randn(codebook_size, dim))
            self.learned = None
        else:
            self.register_buffer("usage", torch.ones(codebook_size))
            self.learned = nn.Parameter(torch.randn(codebook_size, dim))
        self._frozen: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    @property
    def codebook(self) -> torch.Tensor:
        if self.learned is not None:
            return self.learned
        return self.embedding_sum / self.usage.clamp(min=self.eps)[:, None]

    def _frozen_codebook(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The codebook and its entries' squared norms, without autograd, computed again only
        when a buffer or the parameter it comes from changed (a streaming step then skips
        rebuilding a K x C table twice per step)."""
        sources = (self.usage, self.embedding_sum if self.learned is None else self.learned)
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if self._frozen is None or self._frozen[0] != key:
            with torch.no_grad(), torch.inference_mode(False):  # normal tensors, even for a streaming step
                book = self.codebook.detach()
                self._frozen = (key, book, book.pow(2).sum(-1))
        return self._frozen[1], self._frozen[2]

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry for each row of ``flat`` (M, C)."""
        codebook, norms = self._frozen_codebook()
        # |x - e|^2 = |x|^2 - 2 x.e + |e|^2, and a row's |x|^2 does not change which entry
        # is nearest: one fused product instead of a table of full distances
        return torch.addmm(norms, flat, codebook.t(), alpha=-2).argmin(-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        if self.learned is not None and torch.is_grad_enabled() and self.learned.requires_grad:
            return F.embedding(indices, self.codebook)  # the codebook loss needs the gradient
        return F.embedding(indices, self._frozen_codebook()[0])

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = z.reshape(-1, self.dim)
        if self.training and not bool(self.initialized):
            self._initialize(flat.detach())
        indices = self.nearest(flat.detach())
        if self.training:
            self._update(flat.detach(), indices)
            indices = self.nearest(flat.detach())  # restarted codes may be nearer now
        quantized = self.lookup(indices)
        loss = self.commitment * F.mse_loss(flat, quantized.detach())
        if self.learned is not None:
            loss = loss + F.mse_loss(quantized, flat.detach())
        values = flat + (quantized - flat).detach()
        return Quantized(values.view_as(z), indices.view(z.shape[:-1]), loss)

    def _random_rows(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        picks = torch.randint(0, flat.shape[0], (count,), device=flat.device)
        return flat[picks]

    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        """The codebook starts on latents of the first batch (no entry starts unreachable)."""
        rows = self._random_rows(flat, self.codebook_size)
        self.usage.fill_(flat.shape[0] / self.codebook_size)  # what uniform use would give
        if self.learned is not None:
            self.learned.data.copy_(rows)
        else:
            self.embedding_sum.copy_(rows * self.usage[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook_size).to(flat.dtype)
        if self.learned is None:
            sums = torch.zeros_like(self.embedding_sum).index_add_(0, indices, flat)
            self.usage.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
            self.embedding_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        else:
            self.usage.mul_(0.99).add_(counts, alpha=0.01)
        if self.dead_code_fraction > 0:
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: torch.Tensor) -> None:
        average = self.usage.mean()
        dead = self.usage < self.dead_code_fraction * average
        count = int(dead.sum())
        if count == 0:
            return
        rows = self._random_rows(flat, count)
        self.usage[dead] = average  # a fair start; unused again, it decays back in ~350 steps
        if self.learned is not None:
            self.learned.data[dead] = rows
        else:
            self.embedding_sum[dead] = rows * self.usage[dead][:, None]

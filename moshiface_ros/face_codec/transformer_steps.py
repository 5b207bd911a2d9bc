"""The causal codec's transformer one 80 ms step at a time (``TransformerSteps``).

moshi's streaming transformer spends most of a one-token step on bookkeeping that serves
long contexts and many layers; at the codec's one narrow layer that is nearly all of its
cost, so while streaming the codec steps its transformers through this module instead (the
same weights, the same function; the codec tests check it against the whole sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from moshi.modules.transformer import StreamingTransformer

from ..errors import MoshifaceError
from ..moshi_compat import OwnStateModule, State, transformer_layer_weights

__all__ = ["TransformerSteps"]


@dataclass
class _StepState(State):
    keys: torch.Tensor  # [layers, B, heads, context, head_dim]: a ring, position p at p % context
    values: torch.Tensor
    position: torch.Tensor  # [B] steps taken
    layers: list  # the transformer's weights, layer by layer (the same tensors: training updates them in place)
    freqs: torch.Tensor  # [head_dim / 2] rotary frequencies
    ones: torch.Tensor  # ones like ``freqs``: the rotations' magnitudes

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.position.copy_(torch.where(reset_mask, torch.zeros_like(self.position), self.position))


class TransformerSteps(OwnStateModule):
    """The causal transformer one step at a time, with the transformer's own weights.

    moshi's streaming transformer spends most of a one-token step on bookkeeping that
    serves long contexts and many layers (ring-cache positions, masks, rotary tables built
    per call); at the codec's one layer of width 256 that is nearly all of its cost. This
    computes the same function (layer norm, rotary attention over the last ``context``
    steps, GELU feed-forward) directly, keeping its own key/value ring; the test checks it
    against the whole-sequence model. It holds no parameters: checkpoints are unchanged.
    """

    def __init__(self, transformer: StreamingTransformer, heads: int, context: int) -> None:
        super().__init__()
        if transformer.positional_embedding != "rope":
            raise MoshifaceError("the fast step needs rotary positions")
        self._transformer = (transformer,)  # a tuple: not a child module, so no duplicate weights
        self.heads, self.context = heads, context
        self.max_period = float(transformer.max_period)

    def new_state(self, batch_size: int) -> _StepState:
        layers = transformer_layer_weights(self._transformer[0])
        weight = layers[0][1]
        head_dim = weight.shape[1] // self.heads
        shape = (len(layers), batch_size, self.heads, self.context, head_dim)
        keys = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        freqs = torch.exp(torch.arange(head_dim // 2, device=weight.device, dtype=torch.float32)
                          * (-math.log(self.max_period) * 2 / head_dim))
        return _StepState(batch_size, weight.device, keys, torch.zeros_like(keys),
                          torch.zeros(batch_size, device=weight.device, dtype=torch.long), layers, freqs,
                          torch.ones_like(freqs))

    @staticmethod
    def _rotate(x: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """Rotary embedding, interleaved pairs (as moshi's): x [..., D] float32, phase [..., D/2]
        complex (cos + i sin). One complex product is the pairs' rotation in four ops instead of a dozen."""
        return torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * phase).flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, width) -> (B, T, width), one step after the other."""
        if x.shape[1] == 1:
            return self._one_step(x)
        return torch.cat([self._one_step(x[:, t:t + 1]) for t in range(x.shape[1])], 1)

    def _one_step(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return self._one_step_alone(x)
        state: _StepState = self.state
        batch, width = x.shape[0], x.shape[2]
        head_dim = width // self.heads
        position = state.position
        angle = (position.float()[:, None] * state.freqs)[:, None, None]  # [B, 1, 1, D/2]
        phase = torch.polar(torch.ones_like(angle), angle)
        ring = position % self.context
        rows = torch.arange(batch, device=x.device)
        valid = (torch.arange(self.context, device=x.device)[None] <= position[:, None])[:, None, None]  # [B,1,1,C]
        for index, (norm1, w_in, w_out, norm2, w1, w2) in enumerate(state.layers):
            qkv = F.linear(norm1(x), w_in).view(batch, 3, self.heads, head_dim)
            if qkv.dtype == torch.float32:
                qk = self._rotate(qkv[:, :2], phase)  # [B, 2, H, D]
            else:
                qk = self._rotate(qkv[:, :2].float(), phase).to(qkv.dtype)
            keys, values = state.keys[index], state.values[index]
            keys[rows, :, ring] = qk[:, 1]
            values[rows, :, ring] = qkv[:, 2]
            attended = F.scaled_dot_product_attention(qk[:, 0, :, None], keys, values, valid)
            x = x + F.linear(attended.reshape(batch, 1, width), w_out)
            x = x + F.linear(F.gelu(F.linear(norm2(x), w1)), w2)
        state.position.copy_(torch.where(state.exec_mask, position + 1, position))
        return x

    def _one_step_alone(self, x: torch.Tensor) -> torch.Tensor:
        """The same step for one conversation (a face path's case) in under half the ops:
        the position as a number, plain slicing for the ring, attention over the filled
        part of the ring written out (two products and a softmax, where the library's
        attention adds masking and checks), and each residual added inside its product."""
        state: _StepState = self.state
        width = x.shape[2]
        position = int(state.position[0])
        slot, seen = position % self.context, min(position + 1, self.context)
        scale = (width // self.heads) ** -0.5
        phase = torch.polar(state.ones, state.freqs * float(position))  # [D/2]
        h = x.view(1, width)
        for index, (norm1, w_in, w_out, norm2, w1, w2) in enumerate(state.layers):
            qkv = F.linear(F.layer_norm(h, (width,), norm1.weight, norm1.bias, norm1.eps), w_in).view(3, self.heads, -1)
            if qkv.dtype == torch.float32:
                qk = self._rotate(qkv[:2], phase)  # [2, H, D]
            else:
                qk = self._rotate(qkv[:2].float(), phase).to(qkv.dtype)
            keys, values = state.keys[index, 0], state.values[index, 0]  # [H, context, D]
            keys[:, slot] = qk[1]
            values[:, slot] = qkv[2]
            scores = torch.bmm(keys[:, :seen], qk[0, :, :, None] * scale)  # [H, seen, 1]
            attended = torch.bmm(values[:, :seen].transpose(1, 2), torch.softmax(scores, 1))  # [H, D, 1]
            h = torch.addmm(h, attended.view(1, width), w_out.t())
            hidden = F.gelu(F.linear(F.layer_norm(h, (width,), norm2.weight, norm2.bias, norm2.eps), w1))
            h = torch.addmm(h, hidden, w2.t())
        if bool(state.exec_mask[0]):
            state.position.add_(1)
        return h.view(1, 1, width)

"""The causal codec's two strided convolutions, one 80 ms step at a time, as one product each.

While streaming, moshi's ``StreamingConv1d`` / ``StreamingConvTranspose1d`` run a general
convolution (on a CPU, PyTorch's unblocked ``slow_conv2d`` path) on channel-major tensors
that the codec transposes before and after, and keep their memories with a ``torch.where``
per call: at the codec's sizes that bookkeeping costs more than the arithmetic. For one
step the convolution is a single matrix product: the down-sampling one reads the step's r
frames after the K - r it kept, the transposed one writes K frames of which the last K - r
wait for the next step. These modules compute exactly that, frames-major (no transposes),
with the convolutions' own weights (read through a cached re-layout, rebuilt when training
changes them) and their own memories, which ``reset_streaming(mask)`` clears per batch item
and a masked item (``exec_mask``) leaves untouched, as moshi's do. They hold no
parameters: checkpoints are unchanged. The codec tests check them against the whole
sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..moshi_compat import OwnStateModule, State

__all__ = ["Derived", "DownStep", "UpStep"]


@dataclass
class _Memory(State):
    frames: torch.Tensor  # [B, K - r, channels]: what the next step needs of this one

    def reset(self, reset_mask: torch.Tensor) -> None:
        super().reset(reset_mask)
        self.frames.masked_fill_(reset_mask.view(-1, 1, 1), 0.0)


class Derived:
    """A tensor (or tuple of them) made from others, made again only when one changes (a
    weight's re-layout for a step product: training, loading or ``fill_`` bump its version)."""

    def __init__(self) -> None:
        self._key: tuple[tuple[int, int], ...] | None = None
        self._value: Any = None

    def get(self, sources: torch.Tensor | tuple[torch.Tensor, ...], make: Callable[..., Any]) -> Any:
        sources = sources if isinstance(sources, tuple) else (sources,)
        key = tuple((t.data_ptr(), t._version) for t in sources)
        if self._key != key:
            with torch.no_grad(), torch.inference_mode(False):  # normal tensors, whatever mode the step runs in
                value = make(*(t.detach() for t in sources))
                value = tuple(v.contiguous() for v in value) if isinstance(value, tuple) else value.contiguous()
            self._key, self._value = key, value
        return self._value


class _StridedStep(OwnStateModule):
    """What both step products share: the wrapped convolution, its kernel and stride, the
    weight's re-layout and a memory of K - r frames of ``weight.shape[1]`` channels (the
    input's for a convolution, the output's for a transposed one)."""

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
        super().__init__()
        self._conv = (conv,)  # a tuple: not a child module, so no duplicate weights
        self.kernel, self.stride = conv.kernel_size[0], conv.stride[0]
        self._weight = Derived()

    def new_state(self, batch_size: int) -> _Memory:
        weight = self._conv[0].weight
        frames = torch.zeros(batch_size, self.kernel - self.stride, weight.shape[1], dtype=weight.dtype,
                             device=weight.device)
        return _Memory(batch_size, weight.device, frames)

    def _keep(self, frames: torch.Tensor) -> None:
        """Remembers ``frames`` for the next step, for the batch items that execute (one
        conversation: a plain copy, when it does, instead of a select over the batch)."""
        state = self.state
        if state.batch_size == 1:
            if bool(state.exec_mask[0]):
                state.frames.copy_(frames)
        else:
            state.frames.copy_(torch.where(state.exec_mask.view(-1, 1, 1), frames, state.frames))


class DownStep(_StridedStep):
    """A causal strided ``nn.Conv1d`` (kernel K, stride r, no dilation) over (B, T, C) frames."""

    def __init__(self, conv: nn.Conv1d) -> None:
        if conv.dilation[0] != 1 or conv.groups != 1 or conv.padding[0] != 0 or conv.kernel_size[0] <= conv.stride[0]:
            raise ValueError("the step product needs a plain strided convolution with a memory (K > r)")
        super().__init__(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C_in) frames, T a multiple of r -> (B, T / r, C_out)."""
        conv, state = self._conv[0], self.state
        weight = self._weight.get(conv.weight, lambda w: w.permute(2, 1, 0).reshape(-1, w.shape[0]))  # [K*Cin, Cout]
        outputs = []
        for start in range(0, x.shape[1], self.stride):
            window = torch.cat([state.frames, x[:, start:start + self.stride]], 1)  # [B, K, C_in]
            flat = window.view(x.shape[0], -1)
            outputs.append(torch.addmm(conv.bias, flat, weight) if conv.bias is not None else flat @ weight)
            self._keep(window[:, self.stride:])
        return outputs[0].unsqueeze(1) if len(outputs) == 1 else torch.stack(outputs, 1)


class UpStep(_StridedStep):
    """A causal strided ``nn.ConvTranspose1d`` (kernel K, stride r) over (B, S, C) steps.

    A step's product gives K frames: its first r are output now (with the bias and what
    earlier steps left for them), the last K - r are remembered for the next steps; the
    bias is laid out over the first r frames only, so what is remembered never holds it."""

    def __init__(self, conv: nn.ConvTranspose1d) -> None:
        plain = conv.dilation[0] == 1 and conv.groups == 1 and conv.padding[0] == 0 and conv.output_padding[0] == 0
        if not plain or conv.kernel_size[0] <= conv.stride[0]:
            raise ValueError("the step product needs a plain strided transposed convolution with K > r")
        super().__init__(conv)
        self._bias = Derived()

    def _first_frames_bias(self, bias: torch.Tensor) -> torch.Tensor:
        """[K * C_out]: the bias on each of the first r frames, zero on the rest."""
        held = bias.new_zeros((self.kernel - self.stride) * bias.shape[0])
        return torch.cat([bias.repeat(self.stride), held])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, C_in) steps -> (B, S * r, C_out) frames."""
        conv, state = self._conv[0], self.state
        weight = self._weight.get(conv.weight, lambda w: w.permute(0, 2, 1).reshape(w.shape[0], -1))  # [Cin, K*Cout]
        bias = self._bias.get(conv.bias, self._first_frames_bias) if conv.bias is not None else None
        held, outputs = self.kernel - self.stride, []
        for step in range(x.shape[1]):
            product = torch.addmm(bias, x[:, step], weight) if bias is not None else x[:, step] @ weight
            y = product.view(x.shape[0], self.kernel, -1)  # [B, K, C_out]
            y[:, :held] += state.frames
            self._keep(y[:, self.stride:])
            outputs.append(y[:, :self.stride])
        return torch.cat(outputs, 1) if len(outputs) > 1 else outputs[0]

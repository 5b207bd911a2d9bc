"""The face codec (VQ-VAE): 25 fps face motion <-> N tokens per 80 ms step.

Encoder: a per-frame linear projection of the V x 3 displacements (a learned motion basis,
which training starts from the data's principal components), a downsampling 1-D convolution
(stride r = 2: 25 fps -> 12.5 Hz), a transformer layer, and a projection to N latents of
dimension C per step; each latent is quantized on its own (``quantizer.py``). The decoder
mirrors it: latents -> transformer -> transposed convolution (x r) -> V x 3 per frame.

Two configurations share this code. The paper's is non-causal: the convolutions are
centred and attention sees the whole sequence, so it needs the whole sequence. The causal
one (``CodecConfig.causal``) uses moshi's streaming convolutions and a causal transformer
with a bounded attention span (``context`` steps), so that inside ``codec.streaming(1)``
``encode_step`` takes the r = 2 frames of one step and returns its N tokens, and
``decode_step`` takes N tokens and returns 2 frames, with state of bounded size; run
step by step it gives the same output as the same model run over the whole sequence.
While streaming, the transformers advance through ``TransformerSteps`` (the same weights,
one token at a time without moshi's long-context bookkeeping) and the two strided
convolutions through ``conv_steps`` (one matrix product each, frames-major, no transposes),
under ``torch.inference_mode`` (no version counters or view tracking): a step is then
bound by reading its weights, not by per-op bookkeeping.

Inputs are displacements from the speaker's neutral face, in metres. The model divides
them by ``scale`` (the training data's standard deviation, a buffer saved with the
weights) so that losses and activations have unit size whatever the units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from moshi.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from moshi.modules.streaming import StreamingContainer
from moshi.modules.transformer import StreamingTransformer
from torch import nn

from ..errors import MoshifaceError
from .config import CodecConfig
from .conv_steps import Derived, DownStep, UpStep
from .transformer_steps import TransformerSteps
from .quantizer import VectorQuantizer


def _transformer(config: CodecConfig) -> StreamingTransformer:
    return StreamingTransformer(
        d_model=config.width, num_heads=config.heads, num_layers=config.layers,
        dim_feedforward=config.ff_dim, causal=config.causal,
        context=config.context if config.causal else None,
        positional_embedding="rope", norm="layer_norm", gating="none")


class _CentredConv(nn.Module):
    """Non-causal strided convolution: kernel 2r, padded so that T frames give T / r steps."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.kernel = 2 * stride
        self.conv = nn.Conv1d(channels_in, channels_out, self.kernel, stride)
        self.left = (self.kernel - stride) // 2
        self.right = self.kernel - stride - self.left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.left, self.right)))


class _CentredConvTranspose(nn.Module):
    """Non-causal transposed convolution: S steps give S * r frames."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        kernel = 2 * stride
        self.conv = nn.ConvTranspose1d(channels_in, channels_out, kernel, stride)
        self.left = (kernel - stride) // 2
        self.right = kernel - stride - self.left

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y[..., self.left:y.shape[-1] - self.right]


class FaceEncoder(StreamingContainer):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        r = config.downsample
        self.project = nn.Linear(config.vertices * 3, config.vertex_dim)
        self.down = (StreamingConv1d(config.vertex_dim, config.width, 2 * r, r, causal=True)
                     if config.causal else _CentredConv(config.vertex_dim, config.width, r))
        self.transformer = _transformer(config)
        self.steps = TransformerSteps(self.transformer, config.heads, config.context) if config.causal else None
        self.down_step = DownStep(self.down.conv.conv) if config.causal else None
        self.to_latents = nn.Linear(config.width, config.n_tokens * config.latent_dim)
        self.latent_shape = (config.n_tokens, config.latent_dim)
        self._scaled = Derived()

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, V*3) motion -> (B, T / r, N, C) latents; the motion is normalised already,
        or is divided by ``scale`` here (in inference, inside the projection's weight)."""
        h = self._project(x, scale)
        if self.steps is not None and self.steps.is_streaming:  # one step: products, frames-major
            h = self.steps(self.down_step(h))
        else:
            h = self.transformer(self.down(h.transpose(1, 2)).transpose(1, 2))
        z = self.to_latents(h)
        return z.view(*z.shape[:2], *self.latent_shape)

    def _project(self, x: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        if scale is None:
            return self.project(x)
        if torch.is_grad_enabled():
            return self.project(x / scale)
        # Inference: the division goes into a cached copy of the weight, so a step does not
        # write and read a scaled copy of its frames (~120 KB) first.
        weight = self._scaled.get((self.project.weight, scale), lambda w, s: w / s)
        return F.linear(x, weight, self.project.bias)


class FaceDecoder(StreamingContainer):
    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        r = config.downsample
        self.from_latents = nn.Linear(config.n_tokens * config.latent_dim, config.width)
        self.transformer = _transformer(config)
        self.steps = TransformerSteps(self.transformer, config.heads, config.context) if config.causal else None
        self.up = (StreamingConvTranspose1d(config.width, config.vertex_dim, 2 * r, r, causal=True)
                   if config.causal else _CentredConvTranspose(config.width, config.vertex_dim, r))
        self.up_step = UpStep(self.up.convtr.convtr) if config.causal else None
        self.unproject = nn.Linear(config.vertex_dim, config.vertices * 3)
        self._transposed = Derived()  # the last product's weight, transposed and scaled, and its bias

    def forward(self, q: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, N, C) quantized latents -> (B, S * r, V*3) normalised motion, or motion
        times ``scale`` when it is given (in inference, inside the last product's weight)."""
        h = self.from_latents(q.flatten(2))
        if self.steps is not None and self.steps.is_streaming:  # one step: products, frames-major
            h = self.up_step(self.steps(h))
        else:
            h = self.up(self.transformer(h).transpose(1, 2)).transpose(1, 2)
        if torch.is_grad_enabled() and self.unproject.weight.requires_grad:
            y = self.unproject(h)
            return y if scale is None else y * scale
        # Inference: the (3V x width) weight read column-wise from a transposed copy is ~40 %
        # faster for the few frames of a step (the product is memory-bound), and the scale
        # goes into that copy and the bias: the output comes out in metres, in one product.
        sources = (self.unproject.weight, self.unproject.bias) + ((scale,) if scale is not None else ())
        weight, bias = self._transposed.get(sources, lambda w, b, s=1.0: (w.t() * s, b * s))
        flat = torch.addmm(bias, h.reshape(-1, h.shape[-1]), weight)
        return flat.view(*h.shape[:-1], -1)


@dataclass
class CodecOutput:
    reconstruction: torch.Tensor  # (B, T, V, 3) in metres
    tokens: torch.Tensor  # (B, T / r, N) int64
    quantization_loss: torch.Tensor


@dataclass
class CodecLosses:
    total: torch.Tensor
    reconstruction: torch.Tensor
    quantization: torch.Tensor
    velocity: torch.Tensor


class FaceCodec(StreamingContainer):
    """The VQ-VAE. ``encode``/``decode`` for inference, ``forward`` + ``losses`` to train."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = FaceEncoder(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.latent_dim, config.commitment,
                                         config.ema_decay, config.dead_code_fraction)
        self.decoder = FaceDecoder(config)
        self.register_buffer("scale", torch.ones(()))

    # -- validation: every public entry checks its input and names the problem in one line

    def check_motion(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[-1] != 3:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise MoshifaceError(f"face motion must be (batch, frames, vertices, 3), got {shape}")
        if x.shape[2] != config.vertices:
            raise MoshifaceError(f"face motion has {x.shape[2]} vertices, the codec expects {config.vertices}")
        frames, r = x.shape[1], config.downsample
        if frames < r:
            raise MoshifaceError(f"face motion has {frames} frame(s), shorter than one step ({r} frames)")
        if frames % r:
            raise MoshifaceError(f"face motion has {frames} frames, not a whole number of {r}-frame steps")
        if not x.is_floating_point():
            raise MoshifaceError(f"face motion must be floating point, got {x.dtype}")
        # a NaN or infinity anywhere makes the sum one too: one cheap reduction for the usual
        # case; only a non-finite sum (which huge finite values can also give) looks closer
        if not math.isfinite(float(x.sum())) and not bool(torch.isfinite(x).all()):
            raise MoshifaceError("face motion contains NaN or infinite values")
        return x.to(self.scale.dtype)

    def check_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        config = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.shape[-1] != config.n_tokens:
            shape = tuple(tokens.shape) if hasattr(tokens, "shape") else type(tokens).__name__
            raise MoshifaceError(f"face tokens must be (batch, steps, {config.n_tokens}), got {shape}")
        if tokens.shape[1] < 1:
            raise MoshifaceError("face tokens hold no step")
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise MoshifaceError(f"face tokens must be integers, got {tokens.dtype}")
        low, high = torch.aminmax(tokens) if tokens.numel() else (0, 0)
        if int(low) < 0 or int(high) >= config.codebook_size:
            raise MoshifaceError(f"face tokens must lie in 0..{config.codebook_size - 1}")
        return tokens.long()

    # -- the model

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return (x / self.scale).flatten(2)

    def _unflat(self, y: torch.Tensor) -> torch.Tensor:
        return (y * self.scale).view(*y.shape[:2], self.config.vertices, 3)

    def forward(self, x: torch.Tensor) -> CodecOutput:
        x = self.check_motion(x)
        quantized = self.quantizer(self.encoder(self._flat(x)))
        reconstruction = self._unflat(self.decoder(quantized.values))
        return CodecOutput(reconstruction, quantized.indices, quantized.loss)

    def losses(self, x: torch.Tensor, output: CodecOutput) -> CodecLosses:
        """L_vq = L1 reconstruction + lambda_q L_q + lambda_vel L1 on frame differences,
        measured on the normalised motion so the weights mean the same for any data."""
        target, pred = x / self.scale, output.reconstruction / self.scale
        reconstruction = F.l1_loss(pred, target)
        velocity = F.l1_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
        total = (reconstruction + self.config.lambda_q * output.quantization_loss
                 + self.config.lambda_vel * velocity)
        return CodecLosses(total, reconstruction, output.quantization_loss, velocity)

    @torch.no_grad()
    def init_basis(self, frames: torch.Tensor) -> None:
        """Starts the vertex projection and its mirror from the principal components of
        ``frames`` (F, V, 3) displacements: training then begins where PCA ends instead of
        spending its first epochs discovering the face's motion subspace."""
        flat = (frames.to(self.scale.device, self.scale.dtype) / self.scale).flatten(1)
        mean = flat.mean(0)
        k = min(self.config.vertex_dim, flat.shape[0], flat.shape[1])
        _, _, basis = torch.linalg.svd(flat - mean, full_matrices=False)
        basis = basis[:k]
        project, unproject = self.encoder.project, self.decoder.unproject
        project.weight.zero_()[:k] = basis
        project.bias.copy_(-(project.weight @ mean))
        unproject.weight.zero_()[:, :k] = basis.t()
        unproject.bias.copy_(mean)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, V, 3) displacements in metres -> (B, T / r, N) int64 tokens."""
        x = self.check_motion(x)
        latents = self.encoder(x.flatten(2), self.scale)
        return self.quantizer.nearest(latents.reshape(-1, self.config.latent_dim)).view(latents.shape[:3])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, N) tokens -> (B, S * r, V, 3) displacements in metres."""
        tokens = self.check_tokens(tokens).to(self.scale.device)
        motion = self.decoder(self.quantizer.lookup(tokens), self.scale)
        return motion.view(*motion.shape[:2], self.config.vertices, 3)

    def _check_streaming(self, what: str) -> None:
        if not self.config.causal:
            raise MoshifaceError(f"{what} needs a causal codec (CodecConfig.causal); this one is non-causal")
        if not self.is_streaming:
            raise MoshifaceError(f"{what} must run inside `with codec.streaming(batch_size):`")

    def encode_step(self, frames: torch.Tensor) -> torch.Tensor:
        """One step while streaming: (B, r, V, 3) -> (B, 1, N) tokens."""
        self._check_streaming("encode_step")
        if frames.dim() == 4 and frames.shape[1] != self.config.downsample:
            raise MoshifaceError(f"a step is {self.config.downsample} frames, got {frames.shape[1]}")
        with torch.inference_mode():  # no version counters or view tracking: ~10 % of a step
            return self.encode(frames)

    def decode_step(self, tokens: torch.Tensor) -> torch.Tensor:
        """One step while streaming: (B, 1, N) tokens -> (B, r, V, 3)."""
        self._check_streaming("decode_step")
        if tokens.dim() == 3 and tokens.shape[1] != 1:
            raise MoshifaceError(f"decode_step takes one step of tokens, got {tokens.shape[1]}")
        with torch.inference_mode():
            return self.decode(tokens)

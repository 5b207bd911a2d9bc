"""Codec evaluation on whole sequences: MVE, LVE, perplexity and the zero-motion baseline."""

from __future__ import annotations

import numpy as np
import torch

from .data import Sequence, whole_steps
from .metrics import MetricSums
from .model import FaceCodec


@torch.no_grad()
def evaluate_codec(codec: FaceCodec, sequences: list[Sequence], lips: np.ndarray | None,
                   max_frames: int = 2000) -> dict:
    """Reconstructs every sequence (in chunks of ``max_frames`` to bound memory) and
    returns ``MetricSums.report()`` plus the number of sequences."""
    was_training = codec.training
    codec.eval()
    sums = MetricSums(codec.config.codebook_size, lips)
    device = codec.scale.device
    try:
        for sequence in sequences:
            for chunk in whole_steps(sequence, codec.config.downsample, max_frames):
                x = torch.from_numpy(chunk).to(device)[None]
                output = codec(x)
                sums.add(output.reconstruction, x, output.tokens)
    finally:
        codec.train(was_training)
    return {**sums.report(), "sequences": len(sequences)}

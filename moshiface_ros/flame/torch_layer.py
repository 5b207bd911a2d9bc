"""FLAME as a torch module: batched, differentiable, on any device (training, rendering).

Built from a ``model.FlameModel`` (``FlameLayer(model).to(device)``); the numpy model knows
nothing of torch, so importing it never pulls torch in.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .lbs import lbs_torch, rodrigues_torch
from .model import FlameModel


class FlameLayer(nn.Module):
    """``forward(shape, expression, global_pose, neck_pose, jaw_pose, eye_pose, translation)``
    with batch-first tensors (any may be None = zeros) -> vertices (B, V, 3)."""

    def __init__(self, model: FlameModel) -> None:
        super().__init__()
        f32 = torch.float32
        self.register_buffer("v_template", torch.as_tensor(model.v_template, dtype=f32))
        self.register_buffer("shapedirs", torch.as_tensor(model.shapedirs, dtype=f32))
        self.register_buffer("exprdirs", torch.as_tensor(model.exprdirs, dtype=f32))
        self.register_buffer("posedirs", torch.as_tensor(model.posedirs, dtype=f32))
        self.register_buffer("J_regressor", torch.as_tensor(model.J_regressor, dtype=f32))
        self.register_buffer("weights", torch.as_tensor(model.weights, dtype=f32))
        self.register_buffer("faces", torch.as_tensor(np.asarray(model.faces, np.int64)))
        self.parents = [int(p) for p in model.parents]

    @staticmethod
    def _blend(dirs: torch.Tensor, coefficients: torch.Tensor | None, batch: int) -> torch.Tensor:
        if coefficients is None or coefficients.shape[-1] == 0:
            return dirs.new_zeros(batch, dirs.shape[0], 3)
        return torch.einsum("vck,bk->bvc", dirs[:, :, :coefficients.shape[-1]], coefficients)

    def forward(self, shape=None, expression=None, global_pose=None, neck_pose=None, jaw_pose=None,
                eye_pose=None, translation=None) -> torch.Tensor:
        given = [t for t in (shape, expression, global_pose, neck_pose, jaw_pose, eye_pose, translation)
                 if t is not None]
        batch = given[0].shape[0] if given else 1
        zeros3 = self.v_template.new_zeros(batch, 3)
        rest = self.v_template[None] + self._blend(self.shapedirs, shape, batch) + \
            self._blend(self.exprdirs, expression, batch)
        joints = torch.einsum("jv,bvc->bjc", self.J_regressor, rest)
        eyes = eye_pose if eye_pose is not None else self.v_template.new_zeros(batch, 6)
        poses = torch.stack([global_pose if global_pose is not None else zeros3,
                             neck_pose if neck_pose is not None else zeros3,
                             jaw_pose if jaw_pose is not None else zeros3, eyes[:, :3], eyes[:, 3:6]], 1)
        return lbs_torch(rest, joints, rodrigues_torch(poses), self.posedirs, self.weights, self.parents,
                         translation)

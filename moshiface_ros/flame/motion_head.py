"""The synthetic head as the motion generator, the codec data, retargeting and previews use it.

One object per vertex count (FLAME's 5,023, or 5,143 with VHAP's teeth) holds the head's
FLAME model, neutral mesh, triangles, named regions and skin colours, built once per
process: every stage that needs a face without a user's FLAME then works on the same
face, so a lip region measured by the codec's LVE is the lip the motion generator opened.

``LipGauge`` measures the mouth's opening (the gap between the inner edges of the upper
and lower lip at the middle of the mouth), which the preview draws under the audio
envelope and the tests compare with the voice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..constants import FLAME_VERTICES, VHAP_VERTICES
from ..errors import MoshifaceError
from ..regions import Regions
from .model import FlameModel, FlameParams


@dataclass
class MotionHead:
    """The synthetic head on one vertex count: model, neutral, triangles, regions, colours."""

    model: FlameModel
    faces: np.ndarray  # F x 3 int64
    regions: Regions
    albedo: np.ndarray  # V x 3 float32 RGB 0..1

    @property
    def neutral(self) -> np.ndarray:
        return self.model.v_template

    @property
    def vertices(self) -> int:
        return self.model.num_vertices

    def pose(self, params: FlameParams) -> np.ndarray:
        """Posed vertices (V x 3) of one frame's FLAME parameters (LBS over the joints)."""
        return self.model.forward(params)


@lru_cache(maxsize=2)
def motion_head(vertices: int = FLAME_VERTICES) -> MotionHead:
    """The synthetic head with ``vertices`` = 5,023 or 5,143 (built once, then shared:
    callers must not modify its arrays)."""
    if vertices not in (FLAME_VERTICES, VHAP_VERTICES):
        raise MoshifaceError(f"the synthetic head has {FLAME_VERTICES} or {VHAP_VERTICES} vertices, not {vertices}")
    from .synthetic import synthetic_albedo, synthetic_model, synthetic_regions

    model = synthetic_model(vertices)
    model = replace(model, v_template=model.v_template.copy(), faces=model.faces.copy())  # ours to freeze
    for array in (model.v_template, model.faces):
        array.setflags(write=False)
    return MotionHead(model, model.faces, synthetic_regions(vertices), synthetic_albedo(vertices))


class LipGauge:
    """The mouth's opening in metres: inner upper-lip edge to inner lower-lip edge at the
    middle of the mouth (about 0 when the lips meet)."""

    def __init__(self, neutral: np.ndarray, regions: Regions) -> None:
        v = np.asarray(neutral, np.float64)
        lips = regions.get("lips", "the head's regions")
        if "upper_lip" in regions.sets and "lower_lip" in regions.sets:
            upper, lower = regions.get("upper_lip"), regions.get("lower_lip")
        else:  # FLAME_masks-style regions: split the lips at their mean height
            split = float(v[lips, 1].mean())
            upper, lower = lips[v[lips, 1] >= split], lips[v[lips, 1] < split]
        centre_x, half = float(v[lips, 0].mean()), max(float(np.ptp(v[lips, 0])) / 2, 1e-4)

        def edge(rows: np.ndarray, lowest: bool) -> np.ndarray:
            """The lip's inner edge at the middle: its extreme row (within half a millimetre)."""
            middle = rows[np.abs(v[rows, 0] - centre_x) < 0.2 * half]
            middle = middle if middle.size else rows
            y = v[middle, 1]
            return middle[y <= y.min() + 5e-4] if lowest else middle[y >= y.max() - 5e-4]

        self.upper = edge(upper, True)   # the upper lip's lowest middle vertices
        self.lower = edge(lower, False)  # the lower lip's highest middle vertices

    def __call__(self, vertices: np.ndarray) -> np.ndarray:
        """Aperture per frame: (T, V, 3) -> (T,), or (V, 3) -> a 0-d array."""
        v = np.asarray(vertices, np.float64)
        gap = v[..., self.upper, :].mean(-2) - v[..., self.lower, :].mean(-2)
        return np.linalg.norm(gap, axis=-1)

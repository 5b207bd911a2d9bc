"""The FLAME model: arrays from a user's pickle (or the package's synthetic head), evaluated with
shape, expression, jaw, neck, eye and global pose.

FLAME 2020 and 2023 pickles share one format: ``v_template`` (V x 3), ``f`` (F x 3),
``shapedirs`` (V x 3 x 400: 300 identity then 100 expression components), ``posedirs``
(V x 3 x 36), ``J_regressor`` (5 x V, usually scipy sparse), ``weights`` (V x 5) and
``kintree_table`` (2 x 5; parents -1, 0, 1, 1, 1: root, neck, jaw, left eye, right eye).

This module is numpy only; ``torch_layer.FlameLayer(model)`` evaluates the same model
batched and differentiably in torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MoshifaceError
from . import lbs as _lbs
from .pickle_loader import load_pickle

IDENTITY_COMPONENTS = 300  # FLAME's identity shape space; expression components follow it
JOINT_NAMES = ("root", "neck", "jaw", "left_eye", "right_eye")
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


@dataclass
class FlameParams:
    """One frame's FLAME parameters; shorter shape/expression vectors mean trailing zeros."""

    shape: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expression: np.ndarray = field(default_factory=lambda: np.zeros(0))
    global_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    neck_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    jaw_pose: np.ndarray = field(default_factory=lambda: np.zeros(3))
    eye_pose: np.ndarray = field(default_factory=lambda: np.zeros(6))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def __post_init__(self) -> None:
        for name in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "translation"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64).reshape(-1))

    def rotations(self) -> np.ndarray:
        """(5, 3, 3) joint rotations in FLAME's joint order."""
        return _lbs.rodrigues(np.stack([self.global_pose, self.neck_pose, self.jaw_pose,
                                        self.eye_pose[:3], self.eye_pose[3:6]]))


@dataclass
class FlameModel:
    """FLAME's arrays (float32 bases, float64 template) plus how to evaluate them."""

    v_template: np.ndarray        # V x 3
    faces: np.ndarray             # F x 3 int64
    shapedirs: np.ndarray         # V x 3 x S (identity)
    exprdirs: np.ndarray          # V x 3 x E (expression)
    posedirs: np.ndarray          # V x 3 x 9(J-1)
    J_regressor: np.ndarray       # J x V, dense
    weights: np.ndarray           # V x J
    parents: np.ndarray           # J, parent index or -1
    source: str = ""
    teeth_vertices: int = 0       # trailing vertices added by the teeth extension

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shapedirs.shape[2])

    @property
    def num_expression(self) -> int:
        return int(self.exprdirs.shape[2])

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> FlameModel:
        """Reads a FLAME 2020/2023 pickle (chumpy or numpy arrays) through the restricted unpickler.

        Teeth (5,143 vertices) are added afterwards with ``teeth.add_teeth``, which needs to
        know where the mouth is (see ``tracking.embedding.teeth_anchors``)."""
        path = Path(path)
        data = load_pickle(path)
        if not isinstance(data, Mapping):
            raise MoshifaceError(f"{path} is not a FLAME model: the pickle holds a {type(data).__name__}, not a dict")
        return cls.from_arrays(data, source=str(path.name))

    @classmethod
    def from_arrays(cls, data: Mapping[str, Any], source: str = "") -> FlameModel:
        """Builds a model from FLAME's named arrays, checking every dimension (one-line errors)."""
        what = source or "the FLAME model"
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise MoshifaceError(f"{what} is not a FLAME model: missing {', '.join(missing)}")

        def array(key: str, dtype: Any) -> np.ndarray:
            value = data[key]
            if hasattr(value, "toarray"):
                value = value.toarray()
            try:
                out = np.asarray(value, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise MoshifaceError(f"{what}: {key} is not a numeric array ({exc})") from None
            if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
                raise MoshifaceError(f"{what}: {key} contains NaN or infinite values")
            return out

        v_template = array("v_template", np.float64)
        if v_template.ndim != 2 or v_template.shape[1] != 3:
            raise MoshifaceError(f"{what}: v_template must be V x 3, got {v_template.shape}")
        V = v_template.shape[0]
        faces = array("f", np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= V:
            raise MoshifaceError(f"{what}: f must be F x 3 vertex indices below {V}")
        kintree = array("kintree_table", np.int64)
        if kintree.ndim != 2 or kintree.shape[0] != 2:
            raise MoshifaceError(f"{what}: kintree_table must be 2 x J, got {kintree.shape}")
        J = kintree.shape[1]
        parents = kintree[0].copy()
        parents[0] = -1
        if J != len(JOINT_NAMES) or any(not 0 <= parents[j] < j for j in range(1, J)):
            raise MoshifaceError(f"{what}: kintree_table must describe FLAME's 5 joints (root, neck, jaw, eyes)")
        shapedirs = array("shapedirs", np.float32)
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3) or shapedirs.shape[2] <= IDENTITY_COMPONENTS:
            raise MoshifaceError(f"{what}: shapedirs must be {V} x 3 x (300 identity + expression), "
                                 f"got {shapedirs.shape}")
        posedirs = array("posedirs", np.float32)
        if posedirs.ndim == 2 and posedirs.shape == (9 * (J - 1), V * 3):  # smplx-style (P, V*3)
            posedirs = posedirs.T.reshape(V, 3, -1)
        if posedirs.shape != (V, 3, 9 * (J - 1)):
            raise MoshifaceError(f"{what}: posedirs must be {V} x 3 x {9 * (J - 1)}, got {posedirs.shape}")
        regressor = array("J_regressor", np.float64)
        if regressor.shape != (J, V):
            raise MoshifaceError(f"{what}: J_regressor must be {J} x {V}, got {regressor.shape}")
        weights = array("weights", np.float64)
        if weights.shape != (V, J):
            raise MoshifaceError(f"{what}: weights must be {V} x {J}, got {weights.shape}")
        return cls(v_template=v_template, faces=faces,
                   shapedirs=np.ascontiguousarray(shapedirs[:, :, :IDENTITY_COMPONENTS]),
                   exprdirs=np.ascontiguousarray(shapedirs[:, :, IDENTITY_COMPONENTS:]),
                   posedirs=np.ascontiguousarray(posedirs), J_regressor=regressor, weights=weights,
                   parents=parents, source=source)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """FLAME's named arrays (what a FLAME pickle holds), J_regressor dense."""
        parents = self.parents.copy()
        kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(len(parents))]).astype(np.int64)
        return {"v_template": self.v_template, "f": self.faces,
                "shapedirs": np.concatenate([self.shapedirs, self.exprdirs], axis=2),
                "posedirs": self.posedirs, "J_regressor": self.J_regressor, "weights": self.weights,
                "kintree_table": kintree}

    def with_components(self, shape: int | None = None, expression: int | None = None) -> FlameModel:
        """A model keeping only the first ``shape`` identity / ``expression`` components."""
        return replace(self, shapedirs=self.shapedirs[:, :, :shape] if shape is not None else self.shapedirs,
                       exprdirs=self.exprdirs[:, :, :expression] if expression is not None else self.exprdirs)

    # -- evaluation ---------------------------------------------------------------------

    def _blend(self, dirs: np.ndarray, coefficients: np.ndarray, what: str) -> np.ndarray:
        c = np.asarray(coefficients, dtype=np.float64).reshape(-1)
        if c.size > dirs.shape[2]:
            raise MoshifaceError(f"{c.size} {what} coefficients given, the model has {dirs.shape[2]}")
        if not c.size:
            return np.zeros((self.num_vertices, 3))
        return (dirs[:, :, :c.size] @ c.astype(np.float32)).astype(np.float64)

    def rest_vertices(self, shape: np.ndarray = (), expression: np.ndarray = ()) -> np.ndarray:
        """Template + identity + expression offsets, before any pose (V x 3)."""
        return self.v_template + self._blend(self.shapedirs, shape, "shape") + \
            self._blend(self.exprdirs, expression, "expression")

    def neutral(self, shape: np.ndarray = ()) -> np.ndarray:
        """The user's neutral face: identity only, no expression, no pose (V x 3)."""
        return self.rest_vertices(shape)

    def joints(self, rest: np.ndarray) -> np.ndarray:
        return self.J_regressor @ rest

    def forward(self, params: FlameParams) -> np.ndarray:
        """Posed vertices (V x 3) for one frame."""
        rest = self.rest_vertices(params.shape, params.expression)
        return _lbs.lbs(rest, self.joints(rest), params.rotations(), self.posedirs, self.weights,
                        self.parents, params.translation)

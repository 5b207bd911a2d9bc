"""The robot's head as the page draws it: neutral vertices, triangles, colours, mouth.

The page fetches this once per session and then only receives per-frame vertex
displacements, so a 25 fps face costs one array per frame rather than a whole mesh. The
head is the synthetic one (``flame.synthetic.synthetic_mesh`` and its per-vertex albedo
where that module provides them, the retargeting stand-in face otherwise); the mouth's
vertex indices (the head's ``lips`` region, or a geometric rule) let the page and its test
find where the lips are on screen.

A head driven by blendshape weights instead (``/moshiface/robot/blendshapes``, a virtual
head) is drawn from its head file's rig: the same mesh plus each shape's displacement at
weight 1, sent once as three.js morph targets, so a frame is only the weights. Which
weight is which is settled here, once, by name: the page receives the weights in the
rig's order, and a message naming shapes the rig lacks is corrected here, not on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MoshifaceError


def _synthetic(vertices: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(neutral, faces, per-vertex RGB or None, lip vertices or None, source) for ``vertices``."""
    from ..flame import synthetic

    mesh = getattr(synthetic, "synthetic_mesh", None)
    if mesh is not None:
        neutral, faces = mesh(vertices)
        albedo = getattr(synthetic, "synthetic_albedo", None)
        colours = np.asarray(albedo(vertices), np.float32) if albedo is not None else None
        return (np.asarray(neutral, np.float32), np.asarray(faces, np.int64), colours,
                _lips(synthetic, vertices), "synthetic head")
    from ..retarget.synthetic import synthetic_topology

    try:
        neutral, faces = synthetic_topology(vertices)
    except ValueError as exc:
        raise MoshifaceError(f"no head mesh for a {vertices}-vertex face: {exc}") from None
    return neutral, faces, None, None, "stand-in face"


def _lips(synthetic: object, vertices: int) -> np.ndarray | None:
    """The synthetic head's own ``lips`` region, when it names one."""
    regions = getattr(synthetic, "synthetic_regions", None)
    try:
        lips = regions(vertices).sets.get("lips") if regions is not None else None
    except (TypeError, ValueError, AttributeError):
        return None
    return np.asarray(lips, np.int64) if lips is not None and len(lips) else None


def mouth_indices(neutral: np.ndarray) -> np.ndarray:
    """Vertices around the mouth: the front of the face, centred, a third of the way up
    its height (a geometric rule, so it holds for any head facing +z with y up)."""
    x, y, z = neutral[:, 0], neutral[:, 1], neutral[:, 2]
    bottom, top = np.percentile(y, 2), np.percentile(y, 98)
    height = top - bottom
    centre = bottom + 0.28 * height
    front = z > np.percentile(z, 60)
    near = (np.abs(x) < 0.2 * height) & (np.abs(y - centre) < 0.09 * height) & front
    return np.flatnonzero(near)


def head_mesh(vertices: int) -> dict[str, Any]:
    """The page's head for a face of ``vertices`` vertices, JSON-ready."""
    neutral, faces, colours, lips, source = _synthetic(vertices)
    if len(neutral) != vertices:
        raise MoshifaceError(f"the head mesh has {len(neutral)} vertices, the face frames {vertices}")
    return _mesh_json(neutral, faces, colours, lips, source)


def _mesh_json(neutral: np.ndarray, faces: np.ndarray, colours: np.ndarray | None, lips: np.ndarray | None,
               source: str) -> dict[str, Any]:
    vertices = len(neutral)
    mesh: dict[str, Any] = {
        "source": source,
        "vertices": int(vertices),
        "neutral": np.round(neutral.astype(np.float64), 6).reshape(-1).tolist(),
        "faces": faces.astype(np.int64).reshape(-1).tolist(),
        "mouth": (lips if lips is not None else mouth_indices(neutral)).tolist(),
    }
    if colours is not None and colours.shape == (vertices, 3):
        mesh["colors"] = np.round(np.clip(colours, 0.0, 1.0).astype(np.float64), 4).reshape(-1).tolist()
    return mesh


@dataclass
class MorphHead:
    """A head drawn by blendshape weights: its mesh for the page and its rig's shapes."""

    name: str
    names: list[str]  # the rig's shapes, in the order the page receives their weights
    deltas: np.ndarray  # K x V x 3 float32: each shape's displacement at weight 1
    mesh: dict[str, Any]  # head_mesh's fields plus "morph_names"

    @property
    def vertices(self) -> int:
        return int(self.deltas.shape[1])

    def morph_bytes(self) -> bytes:
        """The deltas as the page reads them: little-endian float32, shape by shape."""
        return np.ascontiguousarray(self.deltas, "<f4").tobytes()

    def order(self, names: list[str], weights: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """(the rig's K weights, problem): a message's weights put in the rig's order by
        name. Shapes the message leaves out are at 0 (a message is a whole pose). Unknown
        names are ignored and out-of-range weights clipped, both reported; wrong counts and
        non-finite weights drop the frame (None), since no weight in it can be trusted."""
        values = np.asarray(weights, np.float64).reshape(-1)
        if len(names) != values.size:
            return None, f"{len(names)} names but {values.size} weights"
        if not np.all(np.isfinite(values)):
            return None, "NaN or infinite weights"
        index = {name: k for k, name in enumerate(self.names)}
        out = np.zeros(len(self.names), np.float32)
        unknown = [str(name) for name in names if name not in index]
        for name, value in zip(names, values):
            if name in index:
                out[index[name]] = value
        problems = []
        if unknown:
            problems.append(f"unknown blendshape names {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} "
                            f"(head {self.name!r} has {len(self.names)} others)")
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            problems.append(f"weights outside [0, 1] ({values.min():g}..{values.max():g}), clipped")
        return np.clip(out, 0.0, 1.0), "; ".join(problems) or None


def rig_head(head_file: Path | str, vertices: int) -> MorphHead:
    """The head file's rig as the page's morph targets; ``vertices`` picks the synthetic
    topology's size (5,023 or 5,143) when the file uses it. A head without a rig (source:
    features) cannot be drawn from its weights: one ``MoshifaceError`` says so."""
    from ..retarget.head import SYNTHETIC, load_head
    from ..retarget.rig import load_mesh, load_rig

    config = load_head(head_file)
    if config.source != "rig":
        raise MoshifaceError(f"{config.path}: blendshapes.source is {config.source!r}: the page draws a head "
                             "from its rig (source: rig), e.g. config/heads/arkit_virtual_head.yaml")
    if config.topology.synthetic:
        neutral, faces, colours, lips, _ = _synthetic(vertices)
        rig = _synthetic_rig(vertices) if config.rig == SYNTHETIC else load_rig(config.rig)
        source = f"{config.name} on the synthetic head"
    else:
        if config.rig == SYNTHETIC:
            raise MoshifaceError(f"{config.path}: blendshapes.rig: 'synthetic' needs topology: synthetic")
        rig = load_rig(config.rig)
        neutral, faces = (load_mesh(config.topology.neutral) if config.topology.neutral is not None
                          else (rig.neutral, rig.faces))
        faces = faces if faces is not None else rig.faces
        if neutral is None or faces is None:
            raise MoshifaceError(f"{config.path}: the page needs the head's neutral mesh and triangles: "
                                 "give topology.neutral as an .npz with 'neutral' and 'faces'")
        colours, lips, source = None, None, config.name
    if rig.vertices != len(neutral):
        raise MoshifaceError(f"{config.path}: the rig has {rig.vertices} vertices, the head's mesh {len(neutral)}")
    mesh = _mesh_json(np.asarray(neutral, np.float32), np.asarray(faces, np.int64), colours, lips, source)
    mesh["morph_names"] = list(rig.names)
    return MorphHead(config.name, list(rig.names), np.asarray(rig.deltas, np.float32), mesh)


def _synthetic_rig(vertices: int) -> Any:
    from ..retarget.synthetic import synthetic_face

    try:
        return synthetic_face(vertices).rig
    except ValueError as exc:
        raise MoshifaceError(f"no synthetic rig for {vertices} vertices: {exc}") from None

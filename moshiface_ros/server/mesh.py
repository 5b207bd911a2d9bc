"""The robot's head as the page draws it: neutral vertices, triangles, colours, mouth.

The page fetches this once per session and then only receives per-frame vertex
displacements, so a 25 fps face costs one array per frame rather than a whole mesh. The
head is the synthetic one (``flame.synthetic.synthetic_mesh`` and its per-vertex albedo
where that module provides them, the retargeting stand-in face otherwise); the mouth's
vertex indices (the head's ``lips`` region, or a geometric rule) let the page and its test
find where the lips are on screen.
"""

from __future__ import annotations

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

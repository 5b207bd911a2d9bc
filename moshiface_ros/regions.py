"""Named vertex index sets of a face topology (lips, eye regions, forehead, ...).

The face codec's LVE metric needs the lip vertices; retargeting weights the mouth and
eyes and measures features on named regions. For FLAME these sets come with the FLAME
download (``FLAME_masks.pkl``, under the same licence as FLAME, so they cannot ship here):
``moshiface flame regions --masks FLAME_masks.pkl`` converts it once into the YAML file
this module reads, by default ``config/flame_regions.yaml``. Any other topology can
supply its own file in the same format::

    vertices: 5023            # the topology's vertex count (checked against the data)
    source: "..."             # where the sets came from
    regions:
      lips: [3503, 3504, ...]
      left_eye_region: [...]

FLAME_masks.pkl's region names are kept as they are (``lips``, ``left_eye_region``,
``right_eye_region``, ``forehead``, ``nose``, ``eye_region``, ``face``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import yaml

from .errors import MoshifaceError
from .yamlio import load_file
from .fileio import atomic_write_text

# The file the package ships (empty until generated from the user's FLAME_masks.pkl).
DEFAULT_REGIONS_FILE = Path(__file__).resolve().parent.parent / "config" / "flame_regions.yaml"


@dataclass
class Regions:
    """Vertex index sets on a topology of ``vertices`` vertices."""

    vertices: int
    sets: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        self.sets = {name: _index_set(name, idx, self.vertices) for name, idx in self.sets.items()}

    def get(self, name: str, path: Path | str = "the regions file") -> np.ndarray:
        """The set called ``name``, or a one-line error saying how to provide it."""
        indices = self.sets.get(name)
        if indices is None or indices.size == 0:
            raise MoshifaceError(
                f"{path} has no vertices for region {name!r}: generate it from FLAME's masks with "
                f"`moshiface flame regions --masks FLAME_masks.pkl --out {path}`, or give a file that has it")
        return indices

    def check_vertices(self, vertices: int, path: Path | str = "the regions file") -> None:
        if vertices != self.vertices:
            raise MoshifaceError(f"{path} is for {self.vertices} vertices, the meshes have {vertices}")


def _index_set(name: str, indices: object, vertices: int) -> np.ndarray:
    array = np.asarray(indices if indices is not None else [], dtype=np.int64).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= vertices):
        raise MoshifaceError(f"region {name!r} has indices outside 0..{vertices - 1}")
    return np.unique(array)


def load_regions(path: Path | str = DEFAULT_REGIONS_FILE) -> Regions:
    """Reads a regions YAML file; every problem is one ``MoshifaceError`` naming the file."""
    path = Path(path)
    data = load_file(path, "regions file")
    if not isinstance(data, Mapping) or not isinstance(data.get("vertices"), int):
        raise MoshifaceError(f"{path} must be a mapping with an integer 'vertices' field")
    regions = data.get("regions") or {}
    if not isinstance(regions, Mapping):
        raise MoshifaceError(f"{path}: 'regions' must map names to lists of vertex indices")
    try:
        return Regions(data["vertices"], {str(k): v for k, v in regions.items()}, str(data.get("source", "")))
    except (TypeError, ValueError) as exc:
        raise MoshifaceError(f"{path}: a region is not a list of integers ({exc})") from exc
    except MoshifaceError as exc:
        raise MoshifaceError(f"{path}: {exc}") from exc


def save_regions(regions: Regions, path: Path | str) -> Path:
    """Writes ``regions`` as YAML (flow-style index lists, one region per line)."""
    path = Path(path)
    lines = [f"vertices: {regions.vertices}", f"source: {yaml.safe_dump(regions.source).strip().removesuffix('...').strip()}",
             "regions:"]
    for name, indices in sorted(regions.sets.items()):
        lines.append(f"  {name}: [{', '.join(str(int(i)) for i in indices)}]")
    return atomic_write_text(path, "\n".join(lines) + "\n")

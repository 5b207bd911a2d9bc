"""The reference face: MediaPipe's face mesh landmarks on a real head, in metres and FLAME's axes.

The synthetic FLAME stand-in (``synthetic.py``) is shaped after it, and face tracking aligns
its landmark embedding to it. The numbers were measured once on a photo and are stored in
``reference_data.py``; ``tracking/reference.py`` measures them again and rewrites that file.
This module only reads them, so ``flame`` needs nothing from ``tracking`` (which sits above it).
"""

from __future__ import annotations

import numpy as np

from . import reference_data


def load_reference() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The stored reference: (478 x 3 points, landmark groups by name)."""
    points = np.array(reference_data.POINTS, dtype=np.float64).reshape(-1, 3) * 1e-4
    groups = {name: np.array(idx, dtype=np.int64) for name, idx in reference_data.GROUPS.items()}
    return points, groups

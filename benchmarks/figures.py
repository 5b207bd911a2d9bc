"""The one line every benchmark prints per timed figure:
``NAME: p50 X p95 Y max Z UNIT (n=N)``; the tests parse this format."""

from __future__ import annotations

import numpy as np


def print_percentiles(name: str, seconds: list[float], unit: str = "ms/step", scale: float = 1e3) -> float:
    """Prints p50 / p95 / max of ``seconds`` (times ``scale``: milliseconds by default) and
    returns the p50."""
    values = np.asarray(seconds, dtype=np.float64) * scale
    p50 = float(np.percentile(values, 50))
    print(f"{name}: p50 {p50:.3f} p95 {np.percentile(values, 95):.3f} max {values.max():.3f} {unit} (n={len(values)})")
    return p50

"""The evaluation's report: the paper's table with its controls, as text and as JSON, and
the plot of the lag-correlation curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FACE_FPS
from ..fileio import atomic_path
from .sync import MAX_LAG_FRAMES, recovered, zscore

ROWS = (("generated", "Moshi-Face (this model)"), ("reconstructed", "reconstructed face: ground-truth tokens decoded"),
        ("random", "random face: uniform random tokens"), ("mismatched", "mismatched pair: another conversation's face"))
SCORE = "corr_zero"  # the headline sync score (see sync.py)
EFFECT_LABEL = ("smile back: the robot's smile following the user's within 1 s (best correlation), "
                "user's face seen / blanked / ground truth")


def mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def sync_summary(items: list[dict[str, float]]) -> dict[str, float | None]:
    return {key: mean([i[key] for i in items]) for key in ("lag_ms", "corr_peak", "corr_zero")}


def add_recovered(protocol: dict[str, Any]) -> None:
    """``recovered``: the share of the random-to-reconstructed gap the generated face closes."""
    sync = protocol["sync"]
    protocol["recovered"] = recovered(*(sync.get(k, {}).get(SCORE) for k in ("generated", "random", "reconstructed")))


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per protocol and condition (the JSON form of the printed table)."""
    rows = []
    for mode, key in (("teacher-forced", "teacher_forced"), ("free-run", "free_run")):
        protocol = results.get(key)
        if not protocol:
            continue
        for condition, label in ROWS:
            s = protocol["sync"].get(condition) or {}
            row = {"mode": mode, "condition": condition, "label": label, "sync_corr": s.get(SCORE),
                   "sync_corr_peak": s.get("corr_peak"), "lag_ms": s.get("lag_ms")}
            if condition == "generated":
                row["recovered"] = protocol.get("recovered")
                for metric in ("mve_x1e-3", "lve_x1e-3", "lve_max_l2_mm"):
                    row[metric] = protocol.get(metric)
            rows.append(row)
    effect = (results.get("teacher_forced") or {}).get("user_face_effect")
    if effect:
        rows.append({"mode": "teacher-forced", "condition": "user-face effect", "label": EFFECT_LABEL, **effect})
    return rows


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """The table as printed: sync (correlation of lip aperture with speech energy at lag 0,
    its peak over +-400 ms and that lag) per condition, the share recovered, MVE and LVE."""
    lines = [f"{'mode':<15}{'condition':<15}{'sync':>8}{'peak':>8}{'lag ms':>8}"]
    for row in table_rows(results):
        if row["condition"] == "user-face effect":
            lines.append(f"{row['mode']:<15}{'smile back':<15}{_number(row['seen']):>8}{_number(row['blanked']):>8}"
                         f"{_number(row['ground_truth']):>8}   user's face seen / blanked / ground truth")
            continue
        lines.append(f"{row['mode']:<15}{row['condition']:<15}{_number(row['sync_corr']):>8}"
                     f"{_number(row['sync_corr_peak']):>8}{_number(row['lag_ms'], 0):>8}")
        if row["condition"] == "mismatched":
            recovered_share = next(r.get("recovered") for r in table_rows(results)
                                   if r["mode"] == row["mode"] and r["condition"] == "generated")
            lines.append(f"{row['mode']:<15}{'recovered':<15}{_number(recovered_share):>8}"
                         "   (generated - random) / (reconstructed - random)")
    tf = results.get("teacher_forced")
    if tf:
        lines.append(f"teacher-forced MVE {_number(tf['mve_x1e-3'])} mm, LVE {_number(tf['lve_max_l2_mm'])} mm "
                     f"(max L2, Table 1's scale), LVE {_number(tf['lve_x1e-3'], 4)} x1e-3 m^2 (FaceFormer)")
    return "\n".join(lines)


def plot_eval(curves: dict[str, list[np.ndarray]], example: dict[str, np.ndarray], path: Path) -> None:
    """Mean lag-correlation curve per condition, and one free-run envelope/aperture trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    lags = np.arange(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1) * 1000 / FACE_FPS
    for label, items in curves.items():
        axes[0].plot(lags, np.mean(items, axis=0), marker="o", ms=3, label=label)
    axes[0].axvline(0, color="grey", lw=0.5)
    axes[0].set_xlabel("lag of the lips behind the voice (ms)")
    axes[0].set_ylabel("correlation (speech energy, lip aperture)")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    if example:
        t = np.arange(len(example["envelope"])) / FACE_FPS
        axes[1].plot(t, zscore(example["envelope"]), lw=1, label="speech energy (z)")
        axes[1].plot(t, zscore(example["aperture"]), lw=1, label="lip aperture (z)")
        axes[1].set_xlabel("time (s), free-run example")
        axes[1].legend(fontsize=8)
    else:
        axes[1].axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

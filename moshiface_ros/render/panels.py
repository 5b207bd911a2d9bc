"""The parts of a preview frame: where each panel goes, a shaded face, and the sync strip.

A preview must let a person judge whether the mouth moves with the voice. Faces are drawn
shaded and lit (``shading.shade_mesh``: z-buffered, per-vertex colours), framed once on
the neutral face so the picture does not follow the motion; under them a strip plots the
robot's voice (its loudness per 40 ms frame) and the robot's lip aperture (the gap
between the lips, from the face's lip regions) on one time axis, with a cursor at the
frame shown, so a mouth that opens late or on silence is visible at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..constants import FACE_FPS
from .shading import shade_mesh

BACKGROUND = (32, 30, 28)
TEXT = (230, 230, 230)
ENVELOPE = (150, 120, 70)   # BGR: the voice, a muted blue
APERTURE = (60, 170, 250)   # BGR: the lips, orange
CURSOR = (240, 240, 240)
MAX_SHADED = 384  # faces are shaded at most this size and scaled up: rendering keeps pace with the session
STRIP_WINDOW_S = 8.0  # the strip shows this much time around the cursor (the whole session if shorter)


@dataclass
class Layout:
    """Pixel boxes (x, y, width, height) of a frame's panels."""

    faces: list[tuple[int, int, int, int]]
    bars: tuple[int, int, int, int] | None
    strip: tuple[int, int, int, int]


def layout(size: tuple[int, int], faces: int, bars: bool) -> Layout:
    """Faces side by side on the left, bars to their right, the strip along the bottom."""
    width, height = size
    strip_h = max(40, height // 5)
    top = height - strip_h
    boxes: list[tuple[int, int, int, int]] = []
    side = 0
    if faces:
        share = width * 2 // 3 if bars else width
        side = max(1, min(top, share // faces))
        boxes = [(k * side, 0, side, top) for k in range(faces)]
    bar_box = (faces * side, 0, width - faces * side, top) if bars and width - faces * side > 40 else None
    return Layout(boxes, bar_box, (0, top, width, strip_h))


class FacePainter:
    """Draws one topology's meshes shaded into a panel, framed on its neutral face."""

    def __init__(self, neutral: np.ndarray, faces: np.ndarray | None, albedo: np.ndarray | None,
                 title: str = "") -> None:
        self.faces = None if faces is None or not len(faces) else np.asarray(faces, np.int64)
        self.albedo = albedo
        self.title = title
        lo, hi = neutral.min(0), neutral.max(0)
        self.centre = (lo + hi) / 2
        self.extent = max(float((hi - lo)[:2].max()), 1e-6)

    def draw(self, panel: np.ndarray, vertices: np.ndarray | None) -> None:
        height, width = panel.shape[:2]
        side = min(width, height)
        if vertices is None:
            cv2.putText(panel, "no face yet", (12, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, TEXT, 1, cv2.LINE_AA)
        elif self.faces is None:
            self._points(panel, vertices, side)
        else:
            shaded = min(side, MAX_SHADED)
            image = shade_mesh(vertices, self.faces, self.albedo, (shaded, shaded), center=self.centre,
                               scale=0.9 * shaded / self.extent, background=BACKGROUND)
            if shaded < side:
                image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
            y0 = (height - side) // 2
            panel[y0:y0 + side, (width - side) // 2:(width - side) // 2 + side] = image
        if self.title:
            scale = 0.5 if width >= 300 else 0.38
            lines = [self.title]
            if cv2.getTextSize(self.title, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 16:
                head, _, rest = self.title.partition(" (")  # the note in brackets on a line of its own
                lines = [head, f"({rest}"] if rest else lines
            for k, line in enumerate(lines):
                cv2.putText(panel, line, (8, 18 + k * int(36 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1,
                            cv2.LINE_AA)

    def _points(self, panel: np.ndarray, vertices: np.ndarray, side: int) -> None:
        """Without triangles: the vertices as dots, front view."""
        xy = (vertices[:, :2] - self.centre[:2]) * (0.9 * side / self.extent)
        cols, rows = panel.shape[1] / 2 + xy[:, 0], panel.shape[0] / 2 - xy[:, 1]
        for x, y in np.stack([cols, rows], 1).astype(np.int32)[:: max(1, len(xy) // 3000)]:
            cv2.circle(panel, (int(x), int(y)), 1, (200, 200, 200), -1)


@dataclass
class SyncStrip:
    """Per video frame: the robot's voice loudness (RMS) and lip aperture (mm, NaN: no face)."""

    envelope: np.ndarray
    aperture_mm: np.ndarray | None
    label: str = "robot voice"

    def draw(self, strip: np.ndarray, frame: int) -> None:
        height, width = strip.shape[:2]
        frames = len(self.envelope)
        span = int(round(STRIP_WINDOW_S * FACE_FPS))
        first = 0 if frames <= span else int(np.clip(frame - span // 2, 0, frames - span))
        shown = slice(first, min(frames, first + span))
        count = max(shown.stop - shown.start, 2)
        x = lambda k: (np.asarray(k) - first) * (width - 16) / (count - 1) + 8
        top, bottom = 18, height - 6
        y = lambda v: (bottom - np.clip(v, 0.0, 1.0) * (bottom - top)).astype(np.int32)
        cv2.line(strip, (0, 0), (width, 0), (70, 70, 70), 1)
        k = np.arange(shown.start, shown.stop)
        loud = self.envelope / max(float(self.envelope.max()), 1e-9)
        polygon = np.concatenate([[[x(k[0]), bottom]], np.stack([x(k), y(loud[k])], 1), [[x(k[-1]), bottom]]])
        cv2.fillPoly(strip, [polygon.astype(np.int32)], ENVELOPE)
        legend = f"{self.label} (loudness)"
        if self.aperture_mm is not None and np.isfinite(self.aperture_mm).any():
            peak = max(float(np.nanmax(self.aperture_mm)), 1.0)
            values = self.aperture_mm[k] / peak
            good = np.isfinite(values)
            points = np.stack([x(k), y(np.where(good, values, 0.0))], 1).astype(np.int32)
            for run in np.split(np.arange(len(k)), np.flatnonzero(np.diff(good.astype(int))) + 1):
                if run.size > 1 and good[run[0]]:
                    cv2.polylines(strip, [points[run]], False, APERTURE, 2, cv2.LINE_AA)
            legend += f"   lip aperture 0-{peak:.0f} mm"
        cursor = int(x(frame))
        cv2.line(strip, (cursor, 4), (cursor, height - 2), CURSOR, 1)
        cv2.putText(strip, f"{legend}   {frame / FACE_FPS:6.2f} s", (8, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT, 1,
                    cv2.LINE_AA)

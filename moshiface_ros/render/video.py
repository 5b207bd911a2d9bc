"""A preview video of a session: the robot's face mesh next to its blendshape or actuator
bars, at 25 fps, with the robot's voice muxed in when ffmpeg is available.

Frame ``i`` shows the session at ``start + i * 40 ms`` (start = the first robot message),
each panel holding the latest frame stamped at or before that time, so the picture and
the robot's audio (which starts at the same stamp) stay in step. The mesh is drawn with
OpenCV: an orthographic front view, back faces culled, triangles painted far to near in
depth slices and shaded by their normal (Lambert), which is fast enough to render a
session in about its own length.

Bars come from, in order: the head given with ``--head`` (its actuators, else its
blendshapes, computed afresh from the recorded face frames, and from the robot's audio
through the speech fallback when there are no face frames); else the recorded actuator
commands; else the recorded blendshape weights.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MoshifaceError
from ..constants import FACE_FPS, FACE_FRAME_NS, NS_PER_S
from .session import Session

BACKGROUND = (32, 30, 28)
TEXT = (230, 230, 230)
BAR = (90, 170, 240)
BAR_NEGATIVE = (240, 150, 90)
_LIGHT = np.array([0.35, 0.45, 1.0]) / np.linalg.norm([0.35, 0.45, 1.0])


@dataclass
class BarTrack:
    """What the bar panel shows over time."""

    names: list[str]
    stamps: np.ndarray  # int64, sorted
    values: np.ndarray  # frames x bars
    lower: np.ndarray  # per bar: the value at the left end
    upper: np.ndarray  # per bar: the value at the right end
    zero: np.ndarray  # per bar: where the bar starts (0 or the neutral position)
    title: str


@dataclass
class MeshTrack:
    stamps: np.ndarray
    vertices: list[np.ndarray]  # absolute, V x 3 each
    faces: np.ndarray | None


def _latest(stamps: np.ndarray, t: int) -> int:
    """Index of the last stamp <= t, or -1."""
    return int(np.searchsorted(stamps, t, side="right")) - 1


class MeshPainter:
    """Draws meshes of one topology into a fixed square, framed on the neutral face."""

    def __init__(self, neutral: np.ndarray, faces: np.ndarray | None, size: int) -> None:
        self.faces = faces
        self.size = size
        lo, hi = neutral[:, :2].min(0), neutral[:, :2].max(0)
        self.centre = (lo + hi) / 2
        self.scale = 0.85 * size / max(float((hi - lo).max()), 1e-6)

    def _project(self, vertices: np.ndarray) -> np.ndarray:
        xy = (vertices[:, :2] - self.centre) * self.scale
        return np.stack([self.size / 2 + xy[:, 0], self.size / 2 - xy[:, 1]], 1)

    def draw(self, canvas: np.ndarray, vertices: np.ndarray) -> None:
        points = self._project(vertices)
        if self.faces is None or not len(self.faces):
            for x, y in points.astype(np.int32)[:: max(1, len(points) // 3000)]:
                cv2.circle(canvas, (int(x), int(y)), 1, (200, 200, 200), -1)
            return
        tri = vertices[self.faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(normals, axis=1)
        front = (normals[:, 2] > 0) & (length > 0)
        if not front.any():
            return
        shade = 0.25 + 0.75 * np.clip((normals[front] / length[front, None]) @ _LIGHT, 0.0, 1.0)
        depth = tri[front, :, 2].mean(1)
        polygons = np.round(points[self.faces[front]] * 16).astype(np.int32)  # 4 fractional bits
        level = np.minimum((shade * 24).astype(np.int32), 23)
        order = np.argsort(depth)
        slices = np.array_split(order, 8)  # far to near
        for part in slices:
            for value in np.unique(level[part]):
                chosen = part[level[part] == value]
                grey = int(40 + 8.9 * value)
                colour = (int(grey * 0.85), int(grey * 0.9), grey)
                cv2.fillPoly(canvas, list(polygons[chosen]), colour, lineType=cv2.LINE_AA, shift=4)


TITLE_SCALES = (0.6, 0.5, 0.42)  # the bar panel's title shrinks to these before it wraps
TITLE_MARGIN = 12  # pixels left and right of the title


def title_lines(title: str, width: int) -> tuple[float, list[str]]:
    """The font scale and lines that show ``title`` whole within ``width`` pixels.

    A title such as "actuators (recorded; bars span the recorded range)" is wider than the
    bar panel of a 960x540 preview at the panel's usual size: it is drawn smaller first, then
    wrapped at spaces, so a user reads all of it (a single word wider than the panel still
    gets a line of its own).
    """
    def fits(text: str, scale: float) -> bool:
        return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width

    for scale in TITLE_SCALES:
        if fits(title, scale):
            return scale, [title]
    scale, lines = TITLE_SCALES[-1], []
    for word in title.split():
        if lines and fits(f"{lines[-1]} {word}", scale):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return scale, lines


def _draw_title(canvas: np.ndarray, title: str) -> int:
    """Draws the bar panel's title; returns the row where the bars may start."""
    scale, lines = title_lines(title, canvas.shape[1] - 2 * TITLE_MARGIN)
    line_height = int(40 * scale)
    for k, line in enumerate(lines):
        cv2.putText(canvas, line, (TITLE_MARGIN, 24 + k * line_height), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT, 1,
                    cv2.LINE_AA)
    return 36 + (len(lines) - 1) * line_height


def _draw_bars(canvas: np.ndarray, track: BarTrack, row: np.ndarray | None) -> None:
    height, width = canvas.shape[:2]
    first = _draw_title(canvas, track.title)
    count = len(track.names)
    columns = 1 if count <= 20 else 2
    rows = -(-count // columns)
    pitch = max(8, min(28, (height - first - 4) // max(rows, 1)))
    col_width = width // columns
    label_width = min(150, col_width // 2) if columns == 1 else int(col_width * 0.62)
    for i, name in enumerate(track.names):
        col, r = divmod(i, rows)
        x0, y0 = col * col_width + 8, first + r * pitch
        bar_x0, bar_x1 = x0 + label_width, (col + 1) * col_width - 12
        font = 0.32 if pitch < 16 or columns > 1 else 0.45
        cv2.putText(canvas, name[:22], (x0, y0 + pitch - 4), cv2.FONT_HERSHEY_SIMPLEX, font, TEXT, 1, cv2.LINE_AA)
        top, bottom = y0 + 2, y0 + pitch - 2
        cv2.rectangle(canvas, (bar_x0, top), (bar_x1, bottom), (70, 70, 70), 1)
        span = track.upper[i] - track.lower[i]
        if row is None or not np.isfinite(row[i]) or span == 0 or row[i] == track.zero[i]:
            if track.zero[i] != track.lower[i] and span:
                zero_x = int(bar_x0 + (bar_x1 - bar_x0) * np.clip((track.zero[i] - track.lower[i]) / span, 0, 1))
                cv2.line(canvas, (zero_x, top), (zero_x, bottom), TEXT, 1)
            continue
        to_x = lambda v: int(bar_x0 + (bar_x1 - bar_x0) * np.clip((v - track.lower[i]) / span, 0, 1))
        start, end = to_x(track.zero[i]), to_x(row[i])
        colour = BAR if row[i] >= track.zero[i] else BAR_NEGATIVE
        cv2.rectangle(canvas, (min(start, end), top + 1), (max(start, end), bottom - 1), colour, -1)
        if track.zero[i] != track.lower[i]:
            cv2.line(canvas, (start, top), (start, bottom), TEXT, 1)


def render_video(mesh: MeshTrack | None, painter: MeshPainter | None, bars: BarTrack | None,
                 start_ns: int, frames: int, out: Path, size: tuple[int, int]) -> Path:
    """Writes the silent MP4 (mp4v) of ``frames`` frames to ``out``."""
    width, height = size
    panel = height if mesh is not None else 0
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FACE_FPS, (width, height))
    if not writer.isOpened():
        raise MoshifaceError(f"OpenCV cannot write an MP4 (mp4v) to {out}")
    try:
        for i in range(frames):
            t = start_ns + i * FACE_FRAME_NS
            canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
            if mesh is not None and painter is not None:
                k = _latest(mesh.stamps, t)
                face = canvas[:, :panel]
                if k >= 0:
                    painter.draw(face, mesh.vertices[k])
                else:
                    cv2.putText(face, "no face yet", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.7, TEXT, 1, cv2.LINE_AA)
            if bars is not None and width - panel > 40:
                k = _latest(bars.stamps, t)
                _draw_bars(canvas[:, panel:], bars, bars.values[k] if k >= 0 else None)
            cv2.putText(canvas, f"{(t - start_ns) / NS_PER_S:6.2f} s", (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, TEXT, 1, cv2.LINE_AA)
            writer.write(canvas)
    finally:
        writer.release()
    return out


def ffmpeg_binary() -> str | None:
    """A system ffmpeg, else the one the imageio-ffmpeg wheel carries, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        return None


def mux_audio(video: Path, wav: Path, out: Path, ffmpeg: str) -> None:
    """Copies the video stream and adds the WAV as AAC; raises MoshifaceError on failure."""
    result = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(video), "-i", str(wav),
                             "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
                             str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        raise MoshifaceError(f"ffmpeg could not add the audio: {result.stderr.strip().splitlines()[-1:]}")


def write_preview(session: Session, out: Path, mesh: MeshTrack | None, painter: MeshPainter | None,
                  bars: BarTrack | None, size: tuple[int, int] = (960, 540), audio: bool = True) -> dict:
    """Renders and (when possible) muxes; writes ``out`` atomically. Returns a summary."""
    start, end = session.start_ns(), session.end_ns()
    if start is None or end is None:
        raise MoshifaceError(f"{session.bag} has nothing to render (no robot face, blendshapes, commands or audio)")
    frames = (end - start) // FACE_FRAME_NS + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".render-") as tmp:
        silent = render_video(mesh, painter, bars, start, int(frames), Path(tmp) / "video.mp4", size)
        wav = session.wav or _audio_wav(session, Path(tmp) / "robot.wav")
        ffmpeg = ffmpeg_binary() if audio and wav is not None else None
        final = Path(tmp) / "final.mp4"
        if ffmpeg is not None:
            mux_audio(silent, wav, final, ffmpeg)
        else:
            final = silent
        final.replace(out)
    return {"frames": int(frames), "size": size, "audio": ffmpeg is not None, "out": out}


def _audio_wav(session: Session, path: Path) -> Path | None:
    """The robot's audio from the bag's chunks, as a WAV (a bag without robot.wav)."""
    if not session.audio:
        return None
    from ..audio.wav import write_wav

    rate = session.audio[0].sample_rate
    samples = [c.samples.reshape(-1, c.channels).mean(1) for c in session.audio if c.sample_rate == rate]
    write_wav(path, np.concatenate(samples).astype(np.float32), rate)
    return path

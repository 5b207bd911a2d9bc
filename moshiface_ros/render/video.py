"""A preview video of a session: the robot's face (and the user's, when recorded) shaded
side by side, the robot's blendshape or actuator bars, and a strip of the robot's voice
under its lip aperture, at 25 fps, with the robot's voice muxed in.

Frame ``i`` shows the session at ``start + i * 40 ms`` (start = the first robot message),
each panel holding the latest frame stamped at or before that time, so the picture and
the robot's audio (which starts at the same stamp) stay in step. Faces are drawn by
``panels.FacePainter`` (z-buffered and lit), fast enough to render a session in about its
own length.

Bars come from, in order: the head given with ``--head`` (its actuators, else its
blendshapes, computed afresh from the recorded face frames, and from the robot's audio
through the speech fallback when there are no face frames); else the recorded actuator
commands; else the recorded blendshape weights.

The audio is muxed with a system ffmpeg or the one the imageio-ffmpeg wheel (a runtime
dependency) carries; when neither runs, the video is kept silent and the summary says why
and what to install.
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
from ..constants import FACE_FPS, FACE_FRAME_NS
from .panels import BACKGROUND, TEXT, FacePainter, SyncStrip, layout
from .session import Session
from .tracks import MeshTrack, latest

BAR = (90, 170, 240)
BAR_NEGATIVE = (240, 150, 90)
NO_FFMPEG = ("no ffmpeg to add the audio: install the imageio-ffmpeg wheel (pip install imageio-ffmpeg, "
             "a dependency of this package) or a system ffmpeg")


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
class FacePanel:
    """One face on screen: its meshes over time and how to draw them."""

    track: MeshTrack
    painter: FacePainter


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


def _frame(canvas: np.ndarray, boxes, faces: list[FacePanel], bars: BarTrack | None, strip: SyncStrip | None,
           i: int, t: int) -> None:
    """Draws video frame ``i`` (session time ``t``) into ``canvas``."""
    for (x, y, w, h), face in zip(boxes.faces, faces):
        k = latest(face.track.stamps, t)
        face.painter.draw(canvas[y:y + h, x:x + w], face.track.vertices[k] if k >= 0 else None)
    if bars is not None and boxes.bars is not None:
        x, y, w, h = boxes.bars
        k = latest(bars.stamps, t)
        _draw_bars(canvas[y:y + h, x:x + w], bars, bars.values[k] if k >= 0 else None)
    x, y, w, h = boxes.strip
    if strip is not None:
        strip.draw(canvas[y:y + h, x:x + w], i)


def render_video(faces: list[FacePanel], bars: BarTrack | None, strip: SyncStrip | None,
                 start_ns: int, frames: int, out: Path, size: tuple[int, int]) -> Path:
    """Writes the silent MP4 (mp4v) of ``frames`` frames to ``out``."""
    width, height = size
    boxes = layout(size, len(faces), bars is not None)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FACE_FPS, (width, height))
    if not writer.isOpened():
        raise MoshifaceError(f"OpenCV cannot write an MP4 (mp4v) to {out}")
    try:
        for i in range(frames):
            canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
            _frame(canvas, boxes, faces, bars, strip, i, start_ns + i * FACE_FRAME_NS)
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


def mux_audio(video: Path, wav: Path, out: Path, ffmpeg: str) -> str | None:
    """Copies the video stream and adds the WAV as AAC; returns None, or why it could not."""
    try:
        result = subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", str(video), "-i", str(wav),
                                 "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
                                 str(out)], capture_output=True, text=True)
    except OSError as exc:
        return f"{ffmpeg} does not run ({exc.strerror or exc}); {NO_FFMPEG}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"ffmpeg could not add the audio ({last})"
    return None


def write_preview(session: Session, out: Path, faces: list[FacePanel], bars: BarTrack | None,
                  strip: SyncStrip | None, size: tuple[int, int] = (960, 540), audio: bool = True) -> dict:
    """Renders and (when possible) muxes; writes ``out`` atomically. Returns a summary,
    with ``audio_note`` saying why a video has no sound."""
    start, end = session.start_ns(), session.end_ns()
    if start is None or end is None:
        raise MoshifaceError(f"{session.bag} has nothing to render (no robot face, blendshapes, commands or audio)")
    frames = (end - start) // FACE_FRAME_NS + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".render-") as tmp:
        silent = render_video(faces, bars, strip, start, int(frames), Path(tmp) / "video.mp4", size)
        wav = session.wav or _audio_wav(session, Path(tmp) / "robot.wav")
        note = "--no-audio" if not audio else "the session has no robot audio" if wav is None else None
        ffmpeg = ffmpeg_binary() if note is None else None
        final = silent
        if note is None and ffmpeg is None:
            note = NO_FFMPEG
        elif ffmpeg is not None:
            note = mux_audio(silent, wav, Path(tmp) / "final.mp4", ffmpeg)
            final = silent if note else Path(tmp) / "final.mp4"
        final.replace(out)
    return {"frames": int(frames), "size": size, "audio": note is None, "audio_note": note, "out": out}


def _audio_wav(session: Session, path: Path) -> Path | None:
    """The robot's audio from the bag's chunks, as a WAV (a bag without robot.wav)."""
    if not session.audio:
        return None
    from ..audio.wav import write_wav

    rate = session.audio[0].sample_rate
    samples = [c.samples.reshape(-1, c.channels).mean(1) for c in session.audio if c.sample_rate == rate]
    write_wav(path, np.concatenate(samples).astype(np.float32), rate)
    return path

"""``moshiface render``: a recorded session -> an MP4 of the robot's face and its bars.

What the mesh is drawn on: FaceFrames usually carry displacements from a neutral face,
which a preview must add back. The neutral comes from, in order: ``--neutral`` (.npy
V x 3, or .npz with ``neutral`` [+ ``faces``]); the ``--head`` file's topology; the
frames themselves when they carry absolute positions; and, for FLAME's vertex counts
(5,023 / 5,143), the package's synthetic stand-in face, which shows the motion faithfully
on a face that is not the speaker's. Triangles come from the same places (points are
drawn when none are known).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FLAME_VERTICES, VHAP_VERTICES
from ..errors import MoshifaceError
from .session import Session, load_session
from .video import BarTrack, MeshPainter, MeshTrack, write_preview


def default_output(session: Path) -> Path:
    session = Path(session)
    if (session / "metadata.yaml").is_file():
        return session.parent / f"{session.name}.mp4"
    return session / "preview.mp4"


def _topology(session: Session, head: Any, neutral_file: Path | None) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    frames = [f for f in session.faces if f.face_present and f.vertices.size]
    if not frames:
        return None
    count = len(frames[0].vertices)
    if neutral_file is not None:
        from ..retarget.rig import load_mesh

        neutral, faces = load_mesh(neutral_file)
        if len(neutral) != count:
            raise MoshifaceError(f"--neutral {neutral_file} has {len(neutral)} vertices, the face frames {count}")
        return neutral, faces, str(neutral_file)
    if head is not None:
        try:
            neutral, faces = head.mesh(count)
            return neutral, faces, f"the head file's topology ({head.config.path})"
        except (ValueError, MoshifaceError):
            pass
    synthetic = None
    if count in (FLAME_VERTICES, VHAP_VERTICES):
        from ..retarget.synthetic import synthetic_topology

        synthetic = synthetic_topology(count)
    if not frames[0].is_displacement:
        return frames[0].vertices.astype(np.float64), synthetic[1] if synthetic else None, "the frames (absolute positions)"
    if synthetic is not None:
        return synthetic[0], synthetic[1], "the synthetic stand-in face (give --neutral for the real one)"
    raise MoshifaceError(f"the face frames are displacements on a {count}-vertex mesh: give its neutral "
                         "with --neutral FILE (.npy V x 3, or .npz with 'neutral' and 'faces')")


def _mesh_track(session: Session, neutral: np.ndarray) -> MeshTrack:
    stamps, vertices = [], []
    for frame in session.faces:
        v = frame.vertices.astype(np.float64)
        if not frame.face_present or v.shape != neutral.shape or not np.isfinite(v).all():
            continue
        stamps.append(frame.stamp_ns)
        vertices.append(neutral + v if frame.is_displacement else v)
    return MeshTrack(np.asarray(stamps, np.int64), vertices, None)


def _head_bars(session: Session, head: Any) -> BarTrack | None:
    events = [(f.stamp_ns, 1, f) for f in session.faces] + [(c.stamp_ns, 0, c) for c in session.audio]
    outputs = []
    for _, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 1:
            out = head.step_face(item)
            if out.source != "none":
                outputs.append(out)
        else:
            outputs.extend(head.step_audio(item))
    if not outputs:
        return None
    outputs.sort(key=lambda o: o.stamp_ns)
    stamps = np.array([o.stamp_ns for o in outputs], np.int64)
    if head.bank.specs:
        values = np.stack([o.actuators.positions for o in outputs])
        return BarTrack(list(head.bank.names), stamps, values, head.bank.lower, head.bank.upper, head.bank.neutral,
                        f"{head.config.name}: actuators")
    values = np.stack([o.blendshapes.weights for o in outputs]).astype(np.float64)
    n = len(head.names)
    return BarTrack(list(head.names), stamps, values, np.zeros(n), np.ones(n), np.zeros(n),
                    f"{head.config.name}: blendshapes")


def _recorded_bars(session: Session) -> BarTrack | None:
    if session.commands is not None and session.commands.stamps:
        values = np.stack(session.commands.positions)
        lower, upper = values.min(0), values.max(0)
        same = upper - lower < 1e-9
        lower, upper = np.where(same, lower - 1, lower), np.where(same, upper + 1, upper)
        order = np.argsort(session.commands.stamps, kind="stable")
        return BarTrack(session.commands.names, np.asarray(session.commands.stamps, np.int64)[order], values[order],
                        lower, upper, lower, "actuators (recorded; bars span the recorded range)")
    if session.blendshapes:
        names = session.blendshapes[0].names
        rows = [b for b in session.blendshapes if b.names == names]
        n = len(names)
        return BarTrack(list(names), np.array([b.stamp_ns for b in rows], np.int64),
                        np.stack([b.weights for b in rows]).astype(np.float64), np.zeros(n), np.ones(n), np.zeros(n),
                        "blendshapes (recorded)")
    return None


def render_session(session_path: Path, out: Path | None = None, head_file: Path | None = None,
                   neutral_file: Path | None = None, size: tuple[int, int] = (960, 540), audio: bool = True) -> dict:
    """Renders a session's preview; returns what was done (frames, size, audio, out, ...)."""
    if size[0] < 160 or size[1] < 120 or size[0] % 2 or size[1] % 2:
        raise MoshifaceError(f"--size must be even and at least 160x120, got {size[0]}x{size[1]}")
    out = Path(out) if out is not None else default_output(session_path)
    if out.suffix.lower() != ".mp4":
        raise MoshifaceError(f"--out must be an .mp4 file, got {out}")
    session = load_session(session_path)
    head = None
    if head_file is not None:
        from ..retarget.retargeter import HeadRetargeter

        head = HeadRetargeter.from_file(head_file)
    topology = _topology(session, head, neutral_file)
    mesh = painter = None
    if topology is not None:
        neutral, faces, _ = topology
        mesh = _mesh_track(session, np.asarray(neutral, np.float64))
        painter = MeshPainter(np.asarray(neutral, np.float64), faces, size[1])
    bars = _head_bars(session, head) if head is not None else _recorded_bars(session)
    if mesh is None and bars is None:
        raise MoshifaceError(f"{session.bag} has no robot face frames, blendshapes or actuator commands to show; "
                             "pass --head FILE to drive a head from the robot's recorded audio")
    summary = write_preview(session, out, mesh, painter, bars, size, audio)
    summary.update(mesh_source=topology[2] if topology else None, bars=bars.title if bars else None,
                   skipped=session.skipped)
    return summary

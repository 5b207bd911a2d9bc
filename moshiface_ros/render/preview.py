"""``moshiface render``: a recorded session -> an MP4 of the robot's face (and the user's),
its bars, and a strip of its voice under its lip aperture.

What the mesh is drawn on: FaceFrames usually carry displacements from a neutral face,
which a preview must add back. The neutral comes from, in order: ``--neutral`` (.npy
V x 3, or .npz with ``neutral`` [+ ``faces``]); the ``--head`` file's topology; the
frames themselves when they carry absolute positions; and, for FLAME's vertex counts
(5,023 / 5,143), the package's synthetic head (``flame.motion_head``) in its own skin
colours, which shows the motion faithfully on a face that is not the speaker's.
Triangles come from the same places (points are drawn when none are known). The lip
aperture under the voice needs the topology's lip regions: the synthetic head's, or the
head file's regions file.

``face_from_voice`` draws the robot's face from its recorded voice instead of its face
frames (``tracks.voice_track``), labelled as such: a way to judge the presentation path's
sync when the face model itself does not lip-sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FACE_FRAME_NS, FLAME_VERTICES, VHAP_VERTICES
from ..errors import MoshifaceError
from ..messages.types import FaceFrame
from ..regions import Regions
from .panels import FacePainter, SyncStrip
from .session import Session, load_session
from .tracks import aperture_per_frame, load_user_faces, loudness, mesh_track, voice_track
from .video import BarTrack, FacePanel, write_preview


@dataclass
class Topology:
    """The mesh a face track is drawn on, and what is known about it."""

    neutral: np.ndarray
    faces: np.ndarray | None
    albedo: np.ndarray | None
    regions: Regions | None
    source: str


def default_output(session: Path) -> Path:
    session = Path(session)
    if (session / "metadata.yaml").is_file():
        return session.parent / f"{session.name}.mp4"
    return session / "preview.mp4"


def _synthetic(count: int) -> Topology | None:
    if count not in (FLAME_VERTICES, VHAP_VERTICES):
        return None
    from ..flame.motion_head import motion_head

    head = motion_head(count)
    return Topology(head.neutral, head.faces, head.albedo, head.regions,
                    "the synthetic head (give --neutral for the real one)")


def _head_regions(head: Any, count: int) -> Regions | None:
    """The lip regions of a head file's topology, when it has usable ones."""
    from ..regions import DEFAULT_REGIONS_FILE, load_regions

    try:
        regions = load_regions(head.config.topology.regions or DEFAULT_REGIONS_FILE)
        regions.check_vertices(count)
        regions.get("lips")
    except MoshifaceError:
        return None
    return regions


def _topology(frames: list[FaceFrame], head: Any, neutral_file: Path | None) -> Topology | None:
    frames = [f for f in frames if f.face_present and f.vertices.size]
    if not frames:
        return None
    count = len(frames[0].vertices)
    if neutral_file is not None:
        from ..retarget.rig import load_mesh

        neutral, faces = load_mesh(neutral_file)
        if len(neutral) != count:
            raise MoshifaceError(f"--neutral {neutral_file} has {len(neutral)} vertices, the face frames {count}")
        return Topology(np.asarray(neutral, np.float64), faces, None, None, str(neutral_file))
    if head is not None:
        try:
            neutral, faces = head.mesh(count)
        except (ValueError, MoshifaceError):
            pass
        else:
            synthetic = _synthetic(count) if head.config.topology.synthetic else None
            return Topology(np.asarray(neutral, np.float64), faces, synthetic.albedo if synthetic else None,
                            synthetic.regions if synthetic else _head_regions(head, count),
                            f"the head file's topology ({head.config.path})")
    synthetic = _synthetic(count)
    if not frames[0].is_displacement:
        return Topology(frames[0].vertices.astype(np.float64), synthetic.faces if synthetic else None, None, None,
                        "the frames (absolute positions)")
    if synthetic is not None:
        return synthetic
    raise MoshifaceError(f"the face frames are displacements on a {count}-vertex mesh: give its neutral "
                         "with --neutral FILE (.npy V x 3, or .npz with 'neutral' and 'faces')")


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


def _robot_panel(session: Session, head: Any, neutral_file: Path | None, face_from_voice: bool
                 ) -> tuple[FacePanel, Topology] | None:
    """The robot's face: its recorded frames, or (``face_from_voice``) its voice on the synthetic head."""
    if face_from_voice:
        count = len(session.faces[0].vertices) if session.faces and session.faces[0].vertices.size else FLAME_VERTICES
        track = voice_track(session.audio, count)
        topology = _synthetic(len(track.vertices[0]))
        title = "robot: face driven from its voice (--face-from-voice, not the face model)"
    else:
        topology = _topology(session.faces, head, neutral_file)
        if topology is None:
            return None
        track = mesh_track(session.faces, np.asarray(topology.neutral, np.float64))
        title = "robot"
    painter = FacePainter(np.asarray(topology.neutral, np.float64), topology.faces, topology.albedo, title)
    return FacePanel(track, painter), topology


def _user_panel(session: Session) -> FacePanel | None:
    """The user's face, where the bag has ``/moshiface/user/face`` frames the preview can place."""
    frames = load_user_faces(session.bag)
    try:
        topology = _topology(frames, None, None)
    except MoshifaceError:
        return None
    if topology is None:
        return None
    painter = FacePainter(np.asarray(topology.neutral, np.float64), topology.faces, topology.albedo, "user")
    return FacePanel(mesh_track(frames, np.asarray(topology.neutral, np.float64)), painter)


def _strip(session: Session, robot: tuple[FacePanel, Topology] | None) -> SyncStrip | None:
    start, end = session.start_ns(), session.end_ns()
    if start is None or end is None:
        return None
    frames = int((end - start) // FACE_FRAME_NS + 1)
    envelope = loudness(session.audio, start, frames)
    aperture = None
    if robot is not None and robot[1].regions is not None and "lips" in robot[1].regions.sets:
        from ..flame.motion_head import LipGauge

        gauge = LipGauge(np.asarray(robot[1].neutral, np.float64), robot[1].regions)
        aperture = aperture_per_frame(robot[0].track, gauge, start, frames)
    return SyncStrip(envelope, aperture)


def render_session(session_path: Path, out: Path | None = None, head_file: Path | None = None,
                   neutral_file: Path | None = None, size: tuple[int, int] = (960, 540), audio: bool = True,
                   face_from_voice: bool = False) -> dict:
    """Renders a session's preview; returns what was done (frames, size, audio, out, sync data, ...)."""
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
    robot = _robot_panel(session, head, neutral_file, face_from_voice)
    bars = _head_bars(session, head) if head is not None else _recorded_bars(session)
    if robot is None and bars is None:
        raise MoshifaceError(f"{session.bag} has no robot face frames, blendshapes or actuator commands to show; "
                             "pass --head FILE to drive a head from the robot's recorded audio, or --face-from-voice")
    user = _user_panel(session)
    faces = [p for p in (robot[0] if robot else None, user) if p is not None]
    strip = _strip(session, robot)
    summary = write_preview(session, out, faces, bars, strip, size, audio)
    summary.update(mesh_source=robot[1].source if robot else None, bars=bars.title if bars else None,
                   skipped=session.skipped, user_face=user is not None, face_from_voice=face_from_voice,
                   envelope=strip.envelope if strip else None, aperture_mm=strip.aperture_mm if strip else None)
    return summary

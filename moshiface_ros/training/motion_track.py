"""``moshiface data track``: a face video -> the 25 fps FLAME motion that ``data prepare`` reads.

The package's tracker (``tracking/``: MediaPipe landmarks, FLAME fit, One-Euro filter) runs on
every video frame once; output frame k shows the newest video frame not after k x 40 ms
(``tracking.video.track_video`` resamples on timestamps, so 30 and 29.97 fps sources come out
at exactly 25 fps without drift). The paper's meshes carry the head's motion, so the head
pose is applied to the vertices: the rotation about FLAME's root joint, and the translation
relative to the clip's median position (the distance to the camera is not motion). Frames
where no face is found are the neutral face (zero displacement) and are counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import FACE_FPS
from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text


@dataclass
class TrackedMotion:
    motion: np.ndarray  # (frames, V, 3) float32 displacements from the tracked identity's neutral face
    present: np.ndarray  # (frames,) bool: a face was fitted on that frame
    source_fps: float

    def info(self) -> dict[str, Any]:
        return {"fps": FACE_FPS, "frames": int(len(self.motion)), "vertices": int(self.motion.shape[1]),
                "frames_with_face": int(self.present.sum()), "source_fps": round(self.source_fps, 3),
                "head_pose": "applied (rotation; translation relative to the median)"}


def track_motion(video: Path, flame: str | Path = "synthetic", embedding: Path | None = None,
                 teeth: bool = False) -> TrackedMotion:
    """Tracks ``video`` at 25 fps; raises one ``MoshifaceError`` when no frame shows a face."""
    from ..tracking.models import load_tracking_model
    from ..tracking.tracker import TrackerConfig
    from ..tracking.video import open_video, track_video

    capture, source_fps = open_video(video)
    capture.release()
    model, emb = load_tracking_model(flame, embedding, teeth=teeth)
    config = replace(TrackerConfig(), head_pose_in_vertices=True)
    vertices, present, translation = [], [], []
    for frame in track_video(video, model, emb, start_ns=0, config=config):
        vertices.append(np.asarray(frame.vertices, dtype=np.float32))
        present.append(bool(frame.face_present))
        translation.append(np.asarray(frame.translation, dtype=np.float32).reshape(3))
    seen = np.array(present, dtype=bool)
    if not seen.any():
        raise MoshifaceError(f"{video}: no frame shows a face the tracker can fit")
    motion = np.stack(vertices)
    moves = np.stack(translation)
    moves = moves - np.median(moves[seen], axis=0)
    motion[seen] += moves[seen][:, None, :]
    motion[~seen] = 0.0
    return TrackedMotion(motion, seen, source_fps)


def write_motion(tracked: TrackedMotion, out: Path, name: str) -> Path:
    """``OUT/<name>.npy`` (the motion) and ``OUT/<name>.track.json`` (what it is), each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.npy"
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, tracked.motion)
    atomic_write_text(out / f"{name}.track.json", json.dumps(tracked.info(), indent=1))
    return target

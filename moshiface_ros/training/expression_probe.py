"""Reading the synthetic head's smile back out of face motion, and the user-face effect.

In the synthetic corpus (``corpus_faces``) the only behaviour that the other speaker's
face alone explains is the smile answered about half a second later. A crude smile proxy
(a lip-corner distance) is swamped by the jaw, the lips and the head's pose, all moving far
more than a smile; so the face is demixed instead: every frame's displacements (V x 3) are
fitted, by least squares, with the head's own displacement fields of each named expression,
the jaw and the head and neck rotations (``fields``), and the smile coefficient is read off
(the smile with its cheek raise, as the corpus makes it).
On the head these fields are exact for expressions and linear to first order for rotations.

The user-face effect is then how strongly the robot's smile follows the user's smile within
a second (the best correlation over lags 0-1 s), measured on the generated face with the
user's face seen and with it blanked, and on the ground truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..constants import FACE_FPS
from ..errors import MoshifaceError
from ..face_codec.synthetic import SyntheticFace
from ..flame.synthetic_expressions import EXPRESSION, EXPRESSION_NAMES
from ..flame.voice_motion import MotionParams, motion_vertices
from .corpus_faces import CHEEK_PER_SMILE

ROTATION = 0.02  # rad: small enough for the rotation fields to be linear
ROTATIONS = ("jaw_pose", "neck_pose", "global_pose")
REPLY_WINDOW_S = 1.0  # the corpus's listener smiles back about 0.5 s later


def _params(frames: int) -> MotionParams:
    zeros = lambda k: np.zeros((frames, k))  # noqa: E731 - a one-line helper
    return MotionParams(jaw_pose=zeros(3), expression=zeros(len(EXPRESSION_NAMES)), global_pose=zeros(3),
                        neck_pose=zeros(3), translation=zeros(3))


def fields(face: SyntheticFace) -> tuple[np.ndarray, list[str]]:
    """(V * 3, C) displacement field per unit of each column, and the columns' names: the
    named expressions, the three axes of the jaw, neck and global rotations, translation."""
    count = len(EXPRESSION_NAMES) + 3 * len(ROTATIONS)
    params = _params(count + 1)  # frame 0 is the neutral face
    for k in range(len(EXPRESSION_NAMES)):
        params.expression[1 + k, k] = 1.0
    for r, name in enumerate(ROTATIONS):
        for axis in range(3):
            getattr(params, name)[1 + len(EXPRESSION_NAMES) + 3 * r + axis, axis] = ROTATION
    posed = motion_vertices(face.head, params)[:, face.rows].astype(np.float64)
    columns = (posed[1:] - posed[:1]).reshape(count, -1).T
    columns[:, len(EXPRESSION_NAMES):] /= ROTATION
    # the corpus's smile raises the cheeks with it: one column, or the two would share it
    smile, cheek = EXPRESSION["smile"], EXPRESSION["cheek_raise"]
    columns[:, smile] += CHEEK_PER_SMILE * columns[:, cheek]
    keep = [k for k in range(count) if k != cheek]
    translation = np.kron(np.ones((len(face.rows), 1)), np.eye(3))  # (V * 3, 3)
    names = list(EXPRESSION_NAMES) + [f"{n}_{a}" for n in ROTATIONS for a in "xyz"]
    return np.concatenate([columns[:, keep], translation], axis=1), [names[k] for k in keep] + ["tx", "ty", "tz"]


class ExpressionProbe:
    """``smile(motion)``: the smile coefficient per frame of (F, V, 3) displacements."""

    def __init__(self, vertices: int, seed: int = 0) -> None:
        basis, self.names = fields(SyntheticFace(vertices=vertices, seed=seed))
        self.vertices = vertices
        self.solve = np.linalg.pinv(basis)  # (C, V * 3)

    @classmethod
    def for_corpus(cls, corpus: Path) -> "ExpressionProbe":
        """The probe for the head a ``data synth`` corpus was written on (its ``corpus.json``)."""
        try:
            settings = json.loads((Path(corpus) / "corpus.json").read_text())["settings"]
            return cls(int(settings["vertices"]), int(settings["seed"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MoshifaceError(f"{corpus}: not a corpus written by `moshiface data synth` ({exc})") from None

    def coefficients(self, motion: np.ndarray) -> np.ndarray:
        """(F, C) least-squares coefficients of each frame's displacements."""
        if motion.ndim != 3 or motion.shape[1:] != (self.vertices, 3):
            raise MoshifaceError(f"expression probe: motion must be (frames, {self.vertices}, 3), got {motion.shape}")
        return motion.reshape(len(motion), -1).astype(np.float64) @ self.solve.T

    def smile(self, motion: np.ndarray) -> np.ndarray:
        return self.coefficients(motion)[:, self.names.index("smile")]


def reply_strength(user: np.ndarray, robot: np.ndarray, window_s: float = REPLY_WINDOW_S) -> float:
    """The best correlation of the robot's series with the user's, the robot 0..``window_s``
    later (0 when either does not move)."""
    best = 0.0
    for lag in range(int(round(window_s * FACE_FPS)) + 1):
        a, b = user[:len(user) - lag], robot[lag:]
        if len(a) < 4 or a.std() < 1e-9 or b.std() < 1e-9:
            continue
        best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best

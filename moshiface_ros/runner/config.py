"""What one ``moshiface run`` is asked to do, and the rules that make a request coherent.

The conversation itself (model, device, sampling, seed, codec, frame ids) is a
``SessionOptions``, shared with the ROS node; ``RunConfig`` adds where the user comes from
(a WAV file, optionally with a face; or live devices), where the outputs go, and the head
to retarget to. Every rule about which of those go together is checked here, once, when
the config is made: a config that exists is one the runner can run.

This module stays free of torch so the command line can take its defaults from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..constants import PRESENTATION_DELAY_MS
from ..errors import MoshifaceError
from ..speech.session import SessionOptions


@dataclass(frozen=True)
class RunConfig:
    """Everything ``moshiface run`` needs; the command line fills it in."""

    user_audio: Path | None  # the user's WAV; None with ``live``
    out: Path
    session: SessionOptions = field(default_factory=SessionOptions)
    overwrite: bool = False
    progress: bool = True
    user_face: Path | None = None  # .npy (frames, V, 3) displacements at the face rate
    user_video: Path | None = None  # a video of the user's face, tracked to FLAME at the face rate
    flame: str = "synthetic"  # FLAME pickle for --user-video, or "synthetic" (a stand-in)
    embedding: Path | None = None  # landmark embedding of that FLAME (`moshiface flame embedding`)
    head: Path | None = None  # a head file: retarget the robot's face to its blendshapes / actuators
    live: bool = False  # microphone in, speaker out (user_audio is then not read)
    input_device: str | None = None  # name, part of a name or number; None: the default device
    output_device: str | None = None
    echo_cancel: bool = False
    presentation_delay_ms: float = PRESENTATION_DELAY_MS  # the robot's voice and head present at stamp + this
    duration_s: float | None = None  # live: stop after this long (else at SIGINT/SIGTERM)

    def __post_init__(self) -> None:
        if self.live and (self.user_face or self.user_video):
            raise MoshifaceError("--live listens to the microphone; a recorded --user-face or --user-video "
                                 "would run on another clock: drop it (live faces come from the face_tracker node)")
        if not self.live and self.user_audio is None:
            raise MoshifaceError("give the user's speech as --user-audio FILE, or listen with --live")
        if self.user_face is not None and self.user_video is not None:
            raise MoshifaceError("give the user's face as --user-face or as --user-video, not both")

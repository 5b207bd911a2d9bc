"""The face side of each 80 ms step, shared by the embedded runner and the ROS node.

User face frames (25 fps ``FaceFrame``s, displacements from the user's neutral face)
arrive on their own clock; at each step the two frames nearest the step's two 40 ms slots
are encoded by the streaming codec into the user's 8 face tokens for the model. When
either slot has no face (no frame, or ``face_present`` false) the model is told the face
is absent (``None``) and the encoder is fed the neutral face, so its state stays on the
step clock. The robot's 8 face tokens from the model are decoded into two frames stamped
``stamp`` and ``stamp + 40 ms``: the same stamps as the step's robot audio, so that
playback and retargeting present voice and face together. While the model warms up (no
tokens yet) the robot shows its neutral face.

The buffer of user frames is bounded in time and size: at each step every frame older
than the step is dropped, wherever it sits in the buffer (one frame stamped in the future
must not hold back the cleanup of the ones behind it), and at most ``MAX_USER_FRAMES`` are
kept (past that, the frame stamped furthest ahead goes: the next steps need the earliest), so a camera faster than 25 fps or a burst of frames costs
bounded memory and bounded work per step.

Streaming needs the causal codec (``--config paper-causal`` when training). The codec's
streaming state belongs to this object; gradients are switched off around each step's
work only, so the thread that owns a ``FacePath`` can still train or evaluate with autograd.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque

import numpy as np
import torch

from ..errors import MoshifaceError
from ..constants import FACE_FRAME_NS, STEP_NS, VHAP_VERTICES
from ..messages.checks import MAX_VERTEX_M
from ..messages.types import FaceFrame, FaceTokens
from .config import config_from_name
from .model import FaceCodec


def tiny_codec(vertices: int = VHAP_VERTICES) -> FaceCodec:
    """A random causal codec of the small preset (demos and tests; fixed weights)."""
    generator_state = torch.get_rng_state()
    torch.manual_seed(4321)
    try:
        codec = FaceCodec(config_from_name("small-causal", vertices=vertices)).eval()
        codec.scale.fill_(0.005)  # about the size of real face motion, in metres
    finally:
        torch.set_rng_state(generator_state)
    return codec


def load_face_codec(spec: str, device: str | torch.device = "cpu") -> FaceCodec:
    """``tiny`` (random) or a checkpoint directory; the live path needs a causal codec."""
    from .checkpoint import load_codec

    codec = tiny_codec() if spec == "tiny" else load_codec(spec, device)
    if not codec.config.causal:
        raise MoshifaceError(f"codec {spec} is non-causal (the paper's): the live pipeline streams, so it needs "
                             "a causal codec (train one with --config paper-causal)")
    return codec.to(device)


MAX_USER_FRAMES = 64  # 2.56 s of 25 fps frames


class FacePath:
    """Streaming face codec state of one conversation (call ``close`` or use ``with``)."""

    def __init__(self, codec: FaceCodec, frame_id: str = "robot_head", user_frame_id: str = "user_camera",
                 shared: bool = False) -> None:
        """``shared``: the codec streams several conversations and their batch steps it
        (``shared.SharedFaceCodec``, one codec for every robot of a node); this path then
        picks the user's frames and makes the messages, and ``user_tokens`` and
        ``robot_frames`` are not for it."""
        self.codec = codec
        self.shared = shared
        self.frame_id = frame_id
        self.user_frame_id = user_frame_id
        self.vertices = codec.config.vertices
        self._downsample = codec.config.downsample
        self._device = codec.scale.device
        self._frames: deque[FaceFrame] = deque()
        self._stack = contextlib.ExitStack()  # only the codec's own streaming state
        if not shared:
            self._stack.enter_context(codec.streaming(1))
        self._neutral_step = torch.zeros(1, codec.config.downsample, self.vertices, 3, device=self._device)
        self.user_steps_with_face = 0

    def close(self) -> None:
        """Ends the codec's streaming state (idempotent), so the codec can serve again."""
        self._stack.close()

    def __enter__(self) -> "FacePath":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forgets the user's frames and (unless shared: its batch resets the slot) the codec's memory."""
        if not self.shared:
            self.codec.reset_streaming()
        self._frames.clear()

    def push_user(self, frame: FaceFrame) -> None:
        """Buffers one user frame; a face of the wrong size is an error naming it."""
        if frame.face_present:
            if frame.vertices.shape != (self.vertices, 3):
                raise ValueError(f"a user face frame has {frame.vertices.shape[0]} vertices, "
                                 f"the codec expects {self.vertices}")
            if not frame.is_displacement:
                raise ValueError("user face frames must be displacements from the user's neutral face")
            high, low = float(frame.vertices.max()), float(frame.vertices.min())  # NaN propagates through both
            if not (math.isfinite(high) and math.isfinite(low)):
                raise ValueError("a user face frame contains NaN or infinite values")
            if max(high, -low) > MAX_VERTEX_M:
                raise ValueError(f"a user face frame moves a vertex by more than {MAX_VERTEX_M:g} m")
        if frame.stamp_ns < 0:
            raise ValueError(f"a user face frame has a negative stamp ({frame.stamp_ns} ns)")
        self._frames.append(frame)
        if len(self._frames) > MAX_USER_FRAMES:  # the frame furthest ahead is the one least needed
            self._frames.remove(max(self._frames, key=lambda f: f.stamp_ns))

    def _nearest(self, slot_ns: int) -> FaceFrame | None:
        best = min(self._frames, key=lambda f: abs(f.stamp_ns - slot_ns), default=None)
        if best is None or abs(best.stamp_ns - slot_ns) >= FACE_FRAME_NS or not best.face_present:
            return None
        return best

    def step_frames(self, stamp_ns: int) -> np.ndarray | None:
        """The user's (r, V, 3) frames for the step starting at ``stamp_ns`` (the frame nearest
        each 40 ms slot), or None when either slot has no face; drops the frames it is done with."""
        slots = [self._nearest(stamp_ns + k * FACE_FRAME_NS) for k in range(self._downsample)]
        oldest_kept = stamp_ns + STEP_NS - FACE_FRAME_NS
        if any(f.stamp_ns < oldest_kept for f in self._frames):
            self._frames = deque(f for f in self._frames if f.stamp_ns >= oldest_kept)
        if any(frame is None for frame in slots):
            return None
        return np.stack([f.vertices for f in slots])

    def user_message(self, step: int, stamp_ns: int, tokens: np.ndarray | None) -> FaceTokens | None:
        """The user's step of face tokens as a message (None: the face was not seen)."""
        if tokens is None:
            return None
        self.user_steps_with_face += 1
        return FaceTokens(stamp_ns, step, tokens, self.user_frame_id)

    def robot_messages(self, step: int, stamp_ns: int, tokens: np.ndarray | None,
                       frames: np.ndarray | None) -> tuple[FaceTokens | None, list[FaceFrame]]:
        """The robot's tokens as a message and its step's frames, stamped ``stamp_ns`` and
        40 ms later; the neutral face while the model warms up (``tokens`` None)."""
        times = [stamp_ns + k * FACE_FRAME_NS for k in range(self._downsample)]
        if tokens is None or frames is None:
            neutral = np.zeros((self.vertices, 3), np.float32)
            return None, [FaceFrame(t, neutral, frame_id=self.frame_id) for t in times]
        message = FaceTokens(stamp_ns, step, tokens, self.frame_id)
        return message, [FaceFrame(t, f, frame_id=self.frame_id) for t, f in zip(times, frames)]

    def _own_codec(self, what: str) -> None:
        if self.shared:
            raise RuntimeError(f"{what}: this face path's codec is shared, its batch steps it")

    @torch.no_grad()
    def user_tokens(self, step: int, stamp_ns: int) -> FaceTokens | None:
        """The user's tokens for the step starting at ``stamp_ns``, or None (no face)."""
        self._own_codec("user_tokens")
        frames = self.step_frames(stamp_ns)
        if frames is None:
            self.codec.encode_step(self._neutral_step)
            return None
        tokens = self.codec.encode_step(torch.from_numpy(frames)[None].to(self._device))[0, 0].cpu().numpy()
        return self.user_message(step, stamp_ns, tokens)

    @torch.no_grad()
    def robot_frames(self, step: int, stamp_ns: int,
                     tokens: np.ndarray | None) -> tuple[FaceTokens | None, list[FaceFrame]]:
        """The robot's tokens as a message and its two decoded frames for this step."""
        self._own_codec("robot_frames")
        if tokens is None:
            return self.robot_messages(step, stamp_ns, None, None)
        step_tokens = torch.as_tensor(np.asarray(tokens, np.int64)).view(1, 1, -1).to(self._device)
        return self.robot_messages(step, stamp_ns, tokens, self.codec.decode_step(step_tokens)[0].cpu().numpy())

"""The shared clock rules of a conversation (see DESIGN.md, "The data path").

The robot's audio and face for one model step carry the same stamp: the time of the
step's first user sample. Whatever presents them (the speaker, a blendshape head, a
servo) does so at ``stamp + presentation delay``, each output subtracting its own lag
(an actuator's latency, the sound card's buffer), so lips and voice land together.
"""

from __future__ import annotations

from .messages.types import NS_PER_S

# One 80 ms step of the model, and the face frame period at 25 fps (2 frames per step).
STEP_NS = 80_000_000
FACE_FRAME_NS = 40_000_000
FACE_FPS = 25

# Default delay from a step's stamp to the moment its audio and face are presented: the
# model's step (80 ms) plus margin for transport and jitter. A parameter of every node that
# presents something (`presentation_delay_ms`); all of them must agree.
PRESENTATION_DELAY_MS = 200.0


def presentation_ns(stamp_ns: int, delay_ms: float = PRESENTATION_DELAY_MS, lag_ms: float = 0.0) -> int:
    """When an output with its own ``lag_ms`` must be driven so the content of ``stamp_ns``
    is perceived at ``stamp_ns + delay_ms``."""
    return stamp_ns + int(round((delay_ms - lag_ms) * NS_PER_S / 1000.0))

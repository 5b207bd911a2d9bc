"""The shared clock rules of a conversation (see DESIGN.md, "The data path").

The robot's audio and face for one model step carry the same stamp: the time of the
step's first user sample. Whatever presents them (the speaker, a blendshape head, a
servo) does so at ``stamp + presentation delay``, each output subtracting its own lag
(an actuator's latency, the sound card's buffer), so lips and voice land together.

The numbers themselves live in ``constants``; they are re-exported here for the modules
that think in terms of the clock rather than of the model.
"""

from __future__ import annotations

from .constants import FACE_FPS, FACE_FRAME_NS, NS_PER_S, PRESENTATION_DELAY_MS, STEP_NS

__all__ = ["FACE_FPS", "FACE_FRAME_NS", "NS_PER_S", "PRESENTATION_DELAY_MS", "STEP_NS", "presentation_ns"]


def presentation_ns(stamp_ns: int, delay_ms: float = PRESENTATION_DELAY_MS, lag_ms: float = 0.0) -> int:
    """When an output with its own ``lag_ms`` must be driven so the content of ``stamp_ns``
    is perceived at ``stamp_ns + delay_ms``."""
    return stamp_ns + int(round((delay_ms - lag_ms) * NS_PER_S / 1000.0))

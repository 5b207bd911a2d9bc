"""What the synthetic head's first expression components mean.

FLAME's expression components are PCA directions with no names. The package's synthetic
head (``flame.synthetic``) instead gives its first components a meaning, so motion can be
written for it by hand (the voice-driven motion generator) and tests can ask for a blink or
a smile. A coefficient of 1.0 is the full action (``blink_left = 1`` closes that eyelid);
0 is neutral, as in FLAME. The remaining components, up to FLAME's 100, are small smooth
fields like a PCA tail.

The jaw is not an expression: as in FLAME it is joint 2 of the pose, an axis-angle whose
positive x rotation opens the mouth.
"""

from __future__ import annotations

EXPRESSION_NAMES: tuple[str, ...] = (
    "lip_round",    # lips pushed forward and together into an "oo"
    "lip_spread",   # lips stretched sideways, as in "ee"
    "smile",        # lip corners up and back, cheeks lifted a little
    "frown",        # lip corners down
    "lip_press",    # lips pressed together and thinned ("m", "b", "p")
    "blink_left",   # the subject's left upper eyelid down over the eye
    "blink_right",  # the subject's right upper eyelid down over the eye
    "brow_raise",   # both brows up, forehead lifted
    "brow_lower",   # both brows down and together
    "cheek_raise",  # cheeks up, lower lids pushed up a little
)
EXPRESSION: dict[str, int] = {name: index for index, name in enumerate(EXPRESSION_NAMES)}
JAW_JOINT = 2  # FLAME's joints: 0 root (global), 1 neck, 2 jaw, 3 left eye, 4 right eye

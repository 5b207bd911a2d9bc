"""ARKit's 52 blendshape names, in the order Unreal's Live Link Face packets carry them.

Names are ARKit's own (``ARFaceAnchor.BlendShapeLocation`` raw values, lower camel case).
The same order is used everywhere a full ARKit vector is needed, so a Live Link packet
is just this vector followed by the head and eye rotations.
"""

from __future__ import annotations

ARKIT_52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

# Pairs that cannot both be active on a real face: the solver keeps the stronger of each
# and re-solves with the weaker fixed at zero (as Audio2Face-3D's solver does).
DEFAULT_EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (
    ("mouthSmileLeft", "mouthFrownLeft"), ("mouthSmileRight", "mouthFrownRight"),
    ("browDownLeft", "browOuterUpLeft"), ("browDownRight", "browOuterUpRight"),
    ("eyeBlinkLeft", "eyeWideLeft"), ("eyeBlinkRight", "eyeWideRight"),
    ("mouthLeft", "mouthRight"), ("jawLeft", "jawRight"),
    ("eyeLookUpLeft", "eyeLookDownLeft"), ("eyeLookUpRight", "eyeLookDownRight"),
    ("eyeLookInLeft", "eyeLookOutLeft"), ("eyeLookInRight", "eyeLookOutRight"),
    ("mouthPucker", "mouthStretchLeft"), ("mouthPucker", "mouthStretchRight"),
)

# Live Link Face's nine rotations after the 52 weights (radians in this package).
LIVELINK_ROTATIONS: tuple[str, ...] = (
    "headYaw", "headPitch", "headRoll",
    "leftEyeYaw", "leftEyePitch", "leftEyeRoll",
    "rightEyeYaw", "rightEyePitch", "rightEyeRoll",
)


def symmetric_pairs(names: list[str] | tuple[str, ...]) -> list[tuple[int, int]]:
    """Index pairs (left, right) of names that differ only by a Left/Right (or _L/_R) suffix;
    the solver's symmetry term pulls each pair towards equal weights."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for name, i in index.items():
        for left, right in (("Left", "Right"), ("_L", "_R"), ("_l", "_r"), ("left", "right")):
            if name.endswith(left):
                j = index.get(name[: -len(left)] + right)
                if j is not None:
                    pairs.append((i, j))
                break
    return pairs

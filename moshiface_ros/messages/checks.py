"""What a message may carry: the checks every converter applies, in and out.

A node's callback must survive any message a publisher sends (a fuzzer, a driver bug, a
stale bag), and nothing the package publishes may carry a value its consumers cannot use.
Each check raises ``ValueError`` with one line naming the message type, the field and the
value; the nodes log that line (once per kind) and drop the message. The limits are wide
enough for every real source and narrow enough that one message cannot make one callback
do unbounded work (a chunk claiming hours of audio, a billion vertices).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..constants import FACE_CARD, FACE_TOKENS, NS_PER_S

MIN_SAMPLE_RATE = 8_000  # Hz; supported audio rates are 8 kHz to 192 kHz
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 32
MAX_CHUNK_S = 10.0  # one audio message holds at most this much sound
MAX_SAMPLE_ABS = 64.0  # float PCM is nominally within +-1; far beyond it is a broken source
MAX_VERTICES = 100_000  # FLAME has 5,023 (VHAP 5,143)
MAX_VERTEX_M = 10.0  # metres; a head is ~0.2 m
MAX_PARAMETER_ABS = 1_000.0
MAX_NAME_CHARS = 256
MAX_BLENDSHAPES = 4_096
#: FLAME parameter vectors: allowed lengths (0: not sent).
PARAMETER_LENGTHS: dict[str, tuple[int, ...]] = {
    "expression": tuple(range(0, 401)),
    "jaw_pose": (0, 3),
    "global_pose": (0, 3),
    "neck_pose": (0, 3),
    "eye_pose": (0, 6),
    "translation": (0, 3),
}


def check_stamp(sec: Any, nanosec: Any, type_name: str) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``; negative or non-normalised stamps refused."""
    sec, nanosec = int(sec), int(nanosec)
    if sec < 0:
        raise ValueError(f"{type_name}.header.stamp.sec must not be negative, got {sec}")
    if not 0 <= nanosec < NS_PER_S:
        raise ValueError(f"{type_name}.header.stamp.nanosec must be in [0, 1e9), got {nanosec}")
    return sec * NS_PER_S + nanosec


def check_audio_format(sample_rate: Any, channels: Any, frames: int, type_name: str = "AudioChunk") -> None:
    """Rate within the supported range, channels 1..MAX_CHANNELS, at most MAX_CHUNK_S of sound."""
    rate, channels = int(sample_rate), int(channels)
    if rate <= 0:
        raise ValueError(f"{type_name}.sample_rate must be positive, got {rate}")
    if channels < 1:
        raise ValueError(f"{type_name}.channels must be at least 1, got {channels}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"{type_name}.sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"{type_name}.channels must be 1..{MAX_CHANNELS}, got {channels}")
    if frames > MAX_CHUNK_S * rate:
        raise ValueError(f"{type_name} holds {frames / rate:.1f} s of audio, more than one message may "
                         f"({MAX_CHUNK_S:g} s)")


def bounded_floats(values: Any, field: str, type_name: str, bound: float, max_size: int | None = None,
                   copy: bool = True) -> np.ndarray:
    """A 1-D float32 array, every value finite and within +-bound (two reductions, no
    temporaries: every frame the package writes is checked).

    ``copy=False`` (a writer about to serialise the values) takes a float32 numpy array as
    a flat view of itself; otherwise the result is a new array the caller owns.
    """
    if not copy and isinstance(values, np.ndarray) and values.dtype == np.float32:
        array = values.reshape(-1)
    else:
        raw = np.asarray(values)
        if max_size is not None and raw.size > max_size:  # before converting a huge input
            raise ValueError(f"{type_name}.{field} has {raw.size} values, more than {max_size}")
        with np.errstate(over="ignore", invalid="ignore"):
            array = raw.astype(np.float32).reshape(-1)
    if max_size is not None and array.size > max_size:
        raise ValueError(f"{type_name}.{field} has {array.size} values, more than {max_size}")
    if not array.size:
        return array
    high, low = float(array.max()), float(array.min())  # NaN propagates through both
    if not (math.isfinite(high) and math.isfinite(low)):
        raise ValueError(f"{type_name}.{field} contains NaN or infinite values")
    if max(high, -low) > bound:
        raise ValueError(f"{type_name}.{field} has a value of {max(high, -low):.3g}, beyond +-{bound:g}")
    return array


def check_parameters(values: dict[str, np.ndarray], type_name: str = "FaceFrame") -> None:
    """Each FLAME parameter vector has an allowed length and bounded finite values."""
    for name, array in values.items():
        if array.size not in PARAMETER_LENGTHS[name]:
            allowed = PARAMETER_LENGTHS[name]
            expected = f"0 or {allowed[-1]}" if len(allowed) == 2 else f"0..{allowed[-1]}"
            raise ValueError(f"{type_name}.{name} has {array.size} values, expected {expected}")
        bounded_floats(array, name, type_name, MAX_PARAMETER_ABS, copy=False)


def check_tokens(values: Any, type_name: str = "FaceTokens") -> np.ndarray:
    """Exactly FACE_TOKENS integers in [0, FACE_CARD), as uint16."""
    raw = np.asarray(values).reshape(-1)
    if raw.size != FACE_TOKENS:
        raise ValueError(f"{type_name}.tokens must hold {FACE_TOKENS} tokens, got {raw.size}")
    if raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and np.all(np.isfinite(raw))
                                           and np.all(raw == np.round(raw))):
        raise ValueError(f"{type_name}.tokens must be integers, got {raw.dtype}")
    if raw.size and (raw.min() < 0 or raw.max() >= FACE_CARD):
        raise ValueError(f"{type_name}.tokens must be in [0, {FACE_CARD}), got {raw.min()}..{raw.max()}")
    return raw.astype(np.uint16)


def check_blendshapes(names: list[str], weights: np.ndarray, type_name: str = "BlendshapeWeights") -> None:
    """Names non-empty and unique, one finite weight in [0, 1] per name."""
    if len(names) > MAX_BLENDSHAPES:
        raise ValueError(f"{type_name} has {len(names)} names, more than {MAX_BLENDSHAPES}")
    if len(names) != weights.size:
        raise ValueError(f"{type_name} has {len(names)} names but {weights.size} weights")
    for name in names:
        if not name or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"{type_name}.names has an empty or over-long name: {name[:40]!r}")
    if len(set(names)) != len(names):
        seen: set[str] = set()
        duplicate = next(n for n in names if n in seen or seen.add(n))
        raise ValueError(f"{type_name}.names has {duplicate!r} twice")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{type_name}.weights contains NaN or infinite values")
    if weights.size and (weights.min() < 0.0 or weights.max() > 1.0):
        raise ValueError(f"{type_name}.weights must be in [0, 1], got {weights.min():g}..{weights.max():g}")

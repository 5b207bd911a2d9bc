"""G.711 μ-law and A-law: each 8-bit code and the linear value it stands for.

Telephony and some recorders write WAVs in these encodings (format tags 7 and 6);
``wav.read_wav`` decodes them through these tables (ITU-T G.711's expansion, as floats
in [-1, 1]).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ALAW", "MULAW", "TABLES"]

ALAW, MULAW = 6, 7  # their WAV format tags


def _tables() -> dict[int, np.ndarray]:
    codes = np.arange(256, dtype=np.int32)
    mu = ~codes & 0xFF
    magnitude = (((mu & 0x0F) << 3) + 0x84) << ((mu >> 4) & 7)
    mulaw = np.where(mu & 0x80, 0x84 - magnitude, magnitude - 0x84)
    a = codes ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    alaw = np.where(a & 0x80, magnitude, -magnitude)
    return {MULAW: (mulaw / 32768.0).astype(np.float32), ALAW: (alaw / 32768.0).astype(np.float32)}


TABLES = _tables()  # format tag -> (256,) float32: code byte -> linear value

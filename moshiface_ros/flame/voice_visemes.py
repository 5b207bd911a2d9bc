"""Phoneme timing -> lip shapes per face frame: a small viseme table.

When a voice comes with its phonemes (a forced aligner's output, a TTS engine's timing),
the lips need not be guessed from the spectrum: "m", "b", "p" press them shut, "u", "o",
"w" round them, "i", "e", "s" spread them, open vowels open the jaw. The table is
deliberately coarse (four lip shapes and a jaw opening): enough for lips that close on
the right consonants, which is what a viewer notices first.

Labels are ARPAbet (``AA``, ``IY``, ``M``; stress digits ignored) or IPA-like single
letters; unknown labels leave the frame to the audio-driven shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import FACE_FPS

# label -> (jaw 0..1, lip_round, lip_spread, lip_press)
_CLOSED = (0.0, 0.0, 0.0, 1.0)
_ROUND = (0.35, 1.0, 0.0, 0.0)
_SPREAD = (0.3, 0.0, 1.0, 0.0)
_OPEN = (1.0, 0.0, 0.2, 0.0)
_MID = (0.55, 0.2, 0.3, 0.0)
_TEETH = (0.15, 0.0, 0.4, 0.0)
VISEMES: dict[str, tuple[float, float, float, float]] = {
    **{p: _CLOSED for p in ("M", "B", "P", "m", "b", "p")},
    **{p: _ROUND for p in ("UW", "UH", "OW", "W", "AO", "OY", "u", "o", "w", "ʊ", "ɔ")},
    **{p: _SPREAD for p in ("IY", "IH", "EY", "i", "e", "ɪ")},
    **{p: _OPEN for p in ("AA", "AE", "AH", "AW", "AY", "a", "æ", "ɑ", "ʌ")},
    **{p: _MID for p in ("EH", "ER", "ɛ", "ə", "r", "R", "l", "L", "n", "N", "d", "D", "t", "T")},
    **{p: _TEETH for p in ("S", "Z", "SH", "ZH", "CH", "JH", "F", "V", "TH", "DH",
                           "s", "z", "f", "v", "ʃ", "ʒ")},
}
SILENCE = {"", "sil", "sp", "spn", "SIL", "<sil>", "pau"}


@dataclass(frozen=True)
class Phoneme:
    """One phoneme: its label and where it lies in the audio (seconds)."""

    label: str
    start_s: float
    end_s: float


@dataclass
class VisemeTrack:
    """Per-frame lip targets from phonemes: ``values[name]`` (T,), ``known`` (T,) bool."""

    values: dict[str, np.ndarray]
    known: np.ndarray


def _lookup(label: str) -> tuple[float, float, float, float] | None:
    if label in SILENCE:
        return _CLOSED
    stripped = label.rstrip("012")
    return VISEMES.get(stripped) or VISEMES.get(stripped.upper())


def viseme_track(phonemes: list[Phoneme], frames: int) -> VisemeTrack:
    """The lip targets of each 40 ms frame (by the phoneme covering its middle), smoothed a
    little so shapes blend as the lips do (about 40 ms of co-articulation each side)."""
    names = ("jaw", "lip_round", "lip_spread", "lip_press")
    raw = np.zeros((frames, 4))
    known = np.zeros(frames, bool)
    middles = (np.arange(frames) + 0.5) / FACE_FPS
    for phoneme in phonemes:
        shape = _lookup(phoneme.label)
        if shape is None or not phoneme.end_s > phoneme.start_s:
            continue
        inside = (middles >= phoneme.start_s) & (middles < phoneme.end_s)
        raw[inside] = shape
        known |= inside
    kernel = np.array([0.25, 0.5, 0.25])
    smooth = np.stack([np.convolve(np.pad(raw[:, k], 1, mode="edge"), kernel, mode="valid") for k in range(4)], 1) \
        if frames else raw
    return VisemeTrack({name: smooth[:, k] for k, name in enumerate(names)}, known)

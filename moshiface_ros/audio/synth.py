"""Deterministic test signals: speech-like audio and pure tones, with no external data.

Tests and demos need audio that exercises the pipeline the way a voice does (voiced
harmonics with formants, syllable rhythm, real pauses for turn-taking and VAD) but the
test machines have no data sets and no internet. :func:`synthetic_speech` builds such a
signal from a source-filter model: a glottal pulse train with a wandering pitch, shaped by
three formant resonators whose frequencies change per syllable among vowel-like sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from moshiface_ros.constants import SAMPLE_RATE

__all__ = ["synthetic_speech", "tone"]

# (F1, F2, F3) in Hz of a few vowels (Peterson & Barney style averages).
_VOWELS = np.array([
    (730.0, 1090.0, 2440.0),  # a
    (530.0, 1840.0, 2480.0),  # e
    (270.0, 2290.0, 3010.0),  # i
    (570.0, 840.0, 2410.0),   # o
    (300.0, 870.0, 2240.0),   # u
    (660.0, 1720.0, 2410.0),  # ae
])
_BANDWIDTHS = (80.0, 110.0, 160.0)
_PITCH_RANGE = (100.0, 220.0)
_PEAK = 0.5
_BLOCK_SECONDS = 0.005  # formant update period: smooth enough, cheap enough
_BREATH_LEVEL = 0.03    # relative to the voiced peak before normalisation


@dataclass(frozen=True)
class _Syllable:
    """One voiced syllable: where it lies (in samples) and which vowel it carries."""

    start: int
    length: int
    vowel: int


@dataclass(frozen=True)
class _Breath:
    """A short inhalation noise inside a pause."""

    start: int
    length: int


def synthetic_speech(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Return a speech-like float32 mono signal, peak-normalised to 0.5.

    Phrases of a few words (one to three syllables each, ~4.5 syllables per second) are
    separated by 0.2-0.6 s of digital silence, sometimes with a short breath in it, so
    voice-activity and turn-taking code has real gaps to find. The same seed always
    gives the same samples.
    """
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    sample_rate = int(sample_rate)
    n = int(round(seconds * sample_rate))
    if n == 0:
        return np.zeros(0, np.float32)
    rng = np.random.default_rng(seed)
    syllables, breaths = _plan(n, sample_rate, rng)
    pitch = _pitch_contour(n, sample_rate, rng)
    voiced = _voiced(pitch, syllables, n, sample_rate, rng)
    envelope = _envelope(syllables, n)
    signal = voiced * envelope
    peak = np.max(np.abs(signal))
    if peak > 0:
        signal *= _PEAK / peak
    signal += _breath_noise(breaths, n, sample_rate, rng) * _PEAK
    peak = np.max(np.abs(signal))
    if peak > 0:
        signal *= _PEAK / peak
    return signal.astype(np.float32)


def _plan(n: int, sample_rate: int, rng: np.random.Generator
          ) -> tuple[list[_Syllable], list[_Breath]]:
    """Lay out phrases, words and syllables over n samples.

    The layout is drawn first and sound generated after, so the rhythm is independent
    of the sound model and the pauses are exact zeros.
    """
    syllables: list[_Syllable] = []
    breaths: list[_Breath] = []
    position = int(0.05 * sample_rate)
    while position < n:
        for _ in range(int(rng.integers(2, 5))):  # words in a phrase
            for _ in range(int(rng.integers(1, 4))):  # syllables in a word
                length = int(rng.uniform(0.18, 0.26) * sample_rate)
                syllables.append(_Syllable(position, length, int(rng.integers(len(_VOWELS)))))
                position += length
            position += int(rng.uniform(0.03, 0.09) * sample_rate)  # gap between words
        pause = int(rng.uniform(0.2, 0.6) * sample_rate)
        if rng.random() < 0.5:  # an inhalation in the second half of some pauses
            length = int(0.12 * sample_rate)
            breaths.append(_Breath(position + pause - length - int(0.04 * sample_rate), length))
        position += pause
    return [s for s in syllables if s.start < n], [b for b in breaths if b.start < n]


def _pitch_contour(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A slowly wandering f0 in Hz: two slow sinusoids plus smoothed jitter, in range."""
    t = np.arange(n) / sample_rate
    low, high = _PITCH_RANGE
    centre, swing = (low + high) / 2, (high - low) / 2
    slow = (0.6 * np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 2 * np.pi))
            + 0.25 * np.sin(2 * np.pi * rng.uniform(0.8, 1.6) * t + rng.uniform(0, 2 * np.pi)))
    jitter = lfilter([0.002], [1.0, -0.998], rng.standard_normal(n))
    return np.clip(centre + swing * (slow + jitter), low, high)


def _voiced(pitch: np.ndarray, syllables: list[_Syllable], n: int, sample_rate: int,
            rng: np.random.Generator) -> np.ndarray:
    """Glottal source through time-varying formants, with lip radiation."""
    phase = np.cumsum(pitch / sample_rate)
    pulses = np.zeros(n)
    pulses[1:][np.diff(np.floor(phase)) > 0] = 1.0
    # Glottal pulse shape: a double pole gives the source its -12 dB/octave tilt.
    source = lfilter([1.0], [1.0, -1.9, 0.9025], pulses)
    source += 0.02 * np.std(source) * rng.standard_normal(n)  # aspiration
    filtered = _formant_filter(source, _formant_track(syllables, n, sample_rate), sample_rate)
    return lfilter([1.0, -0.97], [1.0], filtered)  # lip radiation: +6 dB/octave


def _formant_track(syllables: list[_Syllable], n: int, sample_rate: int) -> np.ndarray:
    """Per-sample (F1, F2, F3), held per syllable and glided over ~40 ms between them."""
    track = np.tile(_VOWELS[0], (n, 1))
    for syllable in syllables:
        track[syllable.start:] = _VOWELS[syllable.vowel]
    glide = max(1, int(0.04 * sample_rate))
    kernel = np.ones(glide) / glide
    for k in range(3):
        padded = np.concatenate([np.full(glide - 1, track[0, k]), track[:, k]])
        track[:, k] = np.convolve(padded, kernel, mode="valid")
    return track


def _formant_filter(source: np.ndarray, track: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cascade three resonators, updating coefficients every few ms and carrying state.

    Carrying each filter's state across blocks keeps the output continuous while the
    formants move, as a vocal tract does.
    """
    out = source.copy()
    block = max(1, int(_BLOCK_SECONDS * sample_rate))
    for k in range(3):
        state = np.zeros(2)
        radius = np.exp(-np.pi * _BANDWIDTHS[k] / sample_rate)
        for start in range(0, out.shape[0], block):
            stop = min(start + block, out.shape[0])
            theta = 2 * np.pi * track[start, k] / sample_rate
            a = np.array([1.0, -2 * radius * np.cos(theta), radius * radius])
            b = np.array([a.sum()])  # unity gain at DC, as in a Klatt cascade
            out[start:stop], state = lfilter(b, a, out[start:stop], zi=state)
    return out


def _envelope(syllables: list[_Syllable], n: int) -> np.ndarray:
    """Syllable-rate amplitude: a rounded rise and fall per syllable, zero elsewhere."""
    envelope = np.zeros(n)
    for syllable in syllables:
        stop = min(syllable.start + syllable.length, n)
        x = (np.arange(syllable.start, stop) - syllable.start) / syllable.length
        envelope[syllable.start:stop] = np.sin(np.pi * x) ** 0.6
    return envelope


def _breath_noise(breaths: list[_Breath], n: int, sample_rate: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise bursts with a smooth envelope, standing in for inhalations."""
    noise = np.zeros(n)
    radius = np.exp(-np.pi * 1500.0 / sample_rate)
    theta = 2 * np.pi * 1500.0 / sample_rate
    a = [1.0, -2 * radius * np.cos(theta), radius * radius]
    for breath in breaths:
        stop = min(breath.start + breath.length, n)
        burst = lfilter([1.0, -1.0], a, rng.standard_normal(stop - breath.start))
        window = np.hanning(breath.length)[:stop - breath.start]
        burst *= window / max(np.max(np.abs(burst)), 1e-12)
        noise[breath.start:stop] = _BREATH_LEVEL * burst
    return noise


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine of the given frequency, starting at phase zero."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    n = int(round(seconds * int(sample_rate)))
    t = np.arange(n, dtype=np.float64) / int(sample_rate)
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)

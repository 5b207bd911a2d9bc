"""Synthetic speech and tones: deterministic, speech-like, with real pauses."""

from __future__ import annotations

import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech, tone

RATE = 24000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthetic_speech(6.0, RATE, seed=0)


def _window_db(x: np.ndarray, window: int) -> np.ndarray:
    frames = x[: len(x) // window * window].reshape(-1, window).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-30)


def test_shape_type_and_peak(speech):
    assert speech.dtype == np.float32 and speech.shape == (6 * RATE,)
    assert np.isfinite(speech).all()
    assert 0.45 <= np.max(np.abs(speech)) <= 0.5 + 1e-6


@pytest.mark.parametrize("seconds,rate", [(0.0, 24000), (0.01, 24000), (1.25, 16000),
                                          (2.0, 48000)])
def test_length(seconds, rate):
    x = synthetic_speech(seconds, rate, seed=3)
    assert x.shape == (int(round(seconds * rate)),) and x.dtype == np.float32
    assert np.max(np.abs(x), initial=0.0) <= 0.5 + 1e-6


def test_deterministic_per_seed(speech):
    np.testing.assert_array_equal(synthetic_speech(6.0, RATE, seed=0), speech)
    other = synthetic_speech(6.0, RATE, seed=1)
    assert not np.allclose(other, speech)


def test_has_silent_gaps_and_speech(speech):
    db = _window_db(speech, int(0.02 * RATE))
    silent = db < -50
    assert silent.any()
    assert (db > -30).mean() > 0.4  # mostly talking
    # At least one pause lasts 0.2 s or more (10 consecutive 20 ms windows).
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], silent, [0]]))))[::2]
    assert runs.max() >= 10


def test_voiced_energy_below_4khz(speech):
    db = _window_db(speech, int(0.02 * RATE))
    loud = np.repeat(db > -25, int(0.02 * RATE))
    voiced = speech[: loud.shape[0]][loud].astype(np.float64)
    power = np.abs(np.fft.rfft(voiced)) ** 2
    freqs = np.fft.rfftfreq(voiced.shape[0], 1 / RATE)
    assert power[freqs < 4000].sum() / power.sum() > 0.95
    assert power[freqs < 80].sum() / power.sum() < 0.05  # no DC or rumble


def _pitch(segment: np.ndarray, rate: int) -> float:
    """Autocorrelation pitch estimate, searching 70-300 Hz."""
    x = segment.astype(np.float64) - segment.mean()
    corr = np.correlate(x, x, mode="full")[x.shape[0] - 1:]
    lo, hi = int(rate / 300), int(rate / 70)
    return rate / (lo + int(np.argmax(corr[lo:hi])))


def test_pitch_in_speaking_range(speech):
    window = int(0.04 * RATE)
    db = _window_db(speech, window)
    pitches = [_pitch(speech[i * window:(i + 1) * window], RATE)
               for i in np.flatnonzero(db > -22)[:40]]
    assert len(pitches) >= 10
    assert 95 <= np.median(pitches) <= 230
    assert np.mean([(90 <= p <= 235) for p in pitches]) > 0.8
    assert np.ptp(pitches) > 10  # it varies, like intonation


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        synthetic_speech(-1.0)
    with pytest.raises(ValueError):
        synthetic_speech(1.0, sample_rate=0)
    with pytest.raises(ValueError):
        tone(440.0, -0.1, 24000)


def test_tone():
    x = tone(440.0, 1.0, 24000)
    assert x.dtype == np.float32 and x.shape == (24000,)
    assert x[0] == 0.0 and abs(np.max(np.abs(x)) - 0.5) < 1e-3
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) == 440
    y = tone(1000.0, 0.5, 16000, amplitude=0.1)
    assert y.shape == (8000,) and abs(np.max(np.abs(y)) - 0.1) < 1e-6

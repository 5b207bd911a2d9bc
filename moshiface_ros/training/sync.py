"""Audio-visual synchrony without an external model: speech energy against lip aperture.

SyncNet's LSE-D / LSE-C (the paper's measure) need a pretrained network and rendered
video. This measure needs neither: the speech energy envelope (log RMS per 40 ms face
frame) and the lip aperture (the spread of the lip vertices' vertical displacement) are
normalised and cross-correlated over lags of +-400 ms. ``lag_ms`` is where the correlation
peaks (positive: the lips follow the voice), ``corr_peak`` its value and ``corr_zero`` the
correlation at lag 0. Synchronised speech and lips give a high peak near lag 0; a face
unrelated to the voice gives a flat curve near zero.

The evaluation's headline score is ``corr_zero``: unlike the peak, which takes the best of
21 lags, it is not biased upwards for an unrelated face, so the random and mismatched
controls sit at zero on average and ``recovered`` compares like with like.
"""

from __future__ import annotations

import numpy as np

from ..constants import FACE_FPS, SAMPLE_RATE

MAX_LAG_FRAMES = 10  # 400 ms


def energy_envelope(pcm: np.ndarray, frames: int, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Log RMS of the audio in each 40 ms face frame."""
    hop = rate // FACE_FPS
    padded = np.zeros(frames * hop, dtype=np.float64)
    padded[:min(len(pcm), len(padded))] = pcm[:len(padded)]
    rms = np.sqrt((padded.reshape(frames, hop) ** 2).mean(axis=1))
    return np.log(rms + 1e-4)


def lip_aperture(face: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """How open the mouth is per frame: spread of the lips' vertical displacement (metres)."""
    return face[:, lips, 1].std(axis=1)


def zscore(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)


def lag_correlation(envelope: np.ndarray, aperture: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> np.ndarray:
    """Pearson correlation of envelope[t] with aperture[t + lag], lag = -max_lag..max_lag."""
    e, a = zscore(envelope), zscore(aperture)
    n = len(e)
    out = np.zeros(2 * max_lag + 1)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            x, y = e[:n - lag], a[lag:]
        else:
            x, y = e[-lag:], a[:n + lag]
        if len(x) > 2 and x.std() > 1e-12 and y.std() > 1e-12:
            out[i] = float(np.corrcoef(x, y)[0, 1])
    return out


def sync_scores(curve: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> dict[str, float]:
    peak = int(np.argmax(curve))
    return {"lag_ms": float((peak - max_lag) * 1000 / FACE_FPS), "corr_peak": float(curve[peak]),
            "corr_zero": float(curve[max_lag])}


def av_sync(pcm: np.ndarray, face: np.ndarray, lips: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    return envelope_sync(energy_envelope(pcm, len(face)), face, lips)


def envelope_sync(envelope: np.ndarray, face: np.ndarray, lips: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """``av_sync`` from a speech energy envelope already at the face's frame rate (the
    original waveform's, or an energy probe's estimate)."""
    curve = lag_correlation(envelope[:len(face)], lip_aperture(face, lips)[:len(envelope)])
    return sync_scores(curve), curve


def recovered(generated: float | None, random: float | None, reconstructed: float | None) -> float | None:
    """The share of the gap between the random face and the reconstructed face that the
    generated face closes: ``(generated - random) / (reconstructed - random)``; 1 is as
    synchronised as the ground truth through the codec, 0 no better than chance. None when
    a score is missing or the bounds coincide (the measure cannot tell them apart)."""
    if generated is None or random is None or reconstructed is None or abs(reconstructed - random) < 1e-9:
        return None
    return float((generated - random) / (reconstructed - random))


def masked_pcm(pcm: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The audio of the face frames where ``frames`` is set, joined (the rest cut out)."""
    hop = SAMPLE_RATE // FACE_FPS
    padded = np.zeros(len(frames) * hop, dtype=np.float32)
    padded[:min(len(pcm), len(padded))] = pcm[:len(padded)]
    return padded.reshape(len(frames), hop)[frames].reshape(-1)

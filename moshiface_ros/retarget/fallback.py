"""Speech-driven mouth motion for when no face model output is available.

With audio-only Moshi weights (or while the face model is late or absent), the robot
must still move its mouth with its voice. This follows the voice's loudness with an
envelope (fast attack, slower release, so the jaw snaps open on a syllable and settles
between words) and shapes the mouth with the spectrum: a bright sound (high spectral
centroid: "ee", "s") stretches the lips and opens the jaw less, a dark one ("oo", "o")
rounds them. It runs on the robot's own audio frames, at the face frame rate (25 fps),
stamped like face frames: the stamp of each 40 ms window's first sample, so its output
is presented exactly like the face model's would be.

A chunk at a rate outside the supported 8-192 kHz (below 25 Hz a 40 ms window would hold
no sample at all) or longer than 10 s is counted as bad and skipped, so no chunk can make
one call loop without end or do unbounded work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..messages.checks import check_audio_format
from ..messages.types import NS_PER_S, AudioChunk
from ..timing import FACE_FRAME_NS

FALLBACK_NAMES: tuple[str, ...] = (
    "jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthFunnel", "mouthPucker",
)


@dataclass
class FallbackConfig:
    jaw_gain: float = 0.7  # jawOpen at full loudness
    floor_db: float = -50.0  # dBFS (RMS) at and below which the mouth is closed
    ceiling_db: float = -15.0  # dBFS (RMS) at and above which it is fully open
    attack_ms: float = 20.0
    release_ms: float = 80.0
    timeout_ms: float = 500.0  # no face frame for this long: the fallback takes over


class SpeechFallback:
    """``push(chunk)`` -> [(stamp_ns, {blendshape: weight})], one per 40 ms of audio."""

    def __init__(self, config: FallbackConfig | None = None) -> None:
        self.config = config or FallbackConfig()
        self.bad_chunks = 0
        self.reset()

    def reset(self) -> None:
        self._buffer = np.zeros(0, np.float32)
        self._rate = 0
        self._stamp = 0  # stamp of the buffer's first sample
        self._envelope = 0.0
        self._brightness = 0.0
        self._roundness = 0.0

    def push(self, chunk: AudioChunk) -> list[tuple[int, dict[str, float]]]:
        samples = np.asarray(chunk.samples, np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if not np.isfinite(samples).all():  # a broken chunk is heard as silence
            self.bad_chunks += 1
            samples = np.where(np.isfinite(samples), samples, 0.0).astype(np.float32)
        rate = int(chunk.sample_rate)
        try:
            check_audio_format(rate, 1, samples.shape[0])
        except ValueError:
            self.bad_chunks += 1
            return []
        expected = self._stamp + self._buffer.size * NS_PER_S // max(self._rate, 1)
        if rate != self._rate or abs(chunk.stamp_ns - expected) > FACE_FRAME_NS:
            self._buffer = np.zeros(0, np.float32)  # a new stream, or a gap: start over
        if not self._buffer.size:
            self._stamp, self._rate = int(chunk.stamp_ns), rate
        self._buffer = np.concatenate([self._buffer, samples])
        window = rate * FACE_FRAME_NS // NS_PER_S
        out = []
        while self._buffer.size >= window:
            frame, self._buffer = self._buffer[:window], self._buffer[window:]
            out.append((self._stamp, self._frame(frame, rate)))
            self._stamp += FACE_FRAME_NS
        return out

    def _frame(self, frame: np.ndarray, rate: int) -> dict[str, float]:
        c = self.config
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
        level_db = 20.0 * np.log10(max(rms, 1e-10))
        level = float(np.clip((level_db - c.floor_db) / (c.ceiling_db - c.floor_db), 0.0, 1.0))
        dt_ms = FACE_FRAME_NS / 1e6
        tau = c.attack_ms if level > self._envelope else c.release_ms
        self._envelope += (level - self._envelope) * (1.0 - np.exp(-dt_ms / max(tau, 1e-3)))
        if level == 0.0 and self._envelope < 0.01:
            self._envelope = 0.0
        if level > 0.0:
            spectrum = np.abs(np.fft.rfft(frame * np.hanning(frame.size))) ** 2
            freqs = np.fft.rfftfreq(frame.size, 1.0 / rate)
            centroid = float((spectrum * freqs).sum() / max(spectrum.sum(), 1e-20))
            bright = float(np.clip((centroid - 1500.0) / 2500.0, 0.0, 1.0))
            round_ = float(np.clip((900.0 - centroid) / 500.0, 0.0, 1.0))
            self._brightness += 0.5 * (bright - self._brightness)
            self._roundness += 0.5 * (round_ - self._roundness)
        env, bright, round_ = self._envelope, self._brightness, self._roundness
        values = {
            "jawOpen": c.jaw_gain * env * (1.0 - 0.4 * bright),
            "mouthLowerDownLeft": 0.3 * env, "mouthLowerDownRight": 0.3 * env,
            "mouthUpperUpLeft": 0.15 * env * bright, "mouthUpperUpRight": 0.15 * env * bright,
            "mouthStretchLeft": 0.35 * env * bright, "mouthStretchRight": 0.35 * env * bright,
            "mouthFunnel": 0.4 * env * round_, "mouthPucker": 0.3 * env * round_,
        }
        return {name: float(np.clip(v, 0.0, 1.0)) for name, v in values.items()}

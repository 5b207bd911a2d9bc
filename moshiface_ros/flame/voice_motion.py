"""Head motion from a voice: FLAME parameters at 25 fps for the synthetic head.

Given a speech waveform (and, when known, its phoneme timing), ``VoiceMotion`` writes the
speaker's face as FLAME parameters per frame: the jaw opens with the voice's loudness and
the lips take a simple viseme (rounded, spread, pressed) from the spectrum or from the
phonemes; on top come the speaker's own blinks, nods on stressed syllables, brow lifts
and a slow head sway, all drawn from a seed, so the same voice and seed always give the
same motion. ``listener`` (the other party's voice) adds listening nods while this
speaker is silent, for conversation data built on this generator.

Loudness and mouth shape come from the speech fallback (``retarget.fallback``): the same
envelope (fast attack, slow release) and spectral centroid that move a robot's mouth when
no face frames arrive, read here as ARKit-named mouth weights and mapped onto the head's
named expression components (``flame.synthetic_expressions``) and its jaw joint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import FACE_FPS, FACE_FRAME_NS, NS_PER_S
from ..errors import MoshifaceError
from ..messages.types import AudioChunk
from .model import FlameParams
from .synthetic_expressions import EXPRESSION, EXPRESSION_NAMES
from .voice_visemes import Phoneme, viseme_track

CHUNK_S = 1.0  # audio is fed to the envelope follower in chunks of this length


@dataclass
class VoiceMotionConfig:
    """How much each part moves; angles in radians, lengths in metres."""

    jaw_open: float = 0.22          # jaw rotation at full loudness (FLAME: +x opens)
    spread: float = 0.8             # lip_spread at a fully bright sound
    round: float = 0.9              # lip_round at a fully dark sound
    blink_per_s: float = 0.3        # a speaker blinks ~15-20 times a minute
    blink_frames: int = 6           # 240 ms from closing to open again
    nod: float = 0.05               # neck pitch of a nod on a stressed syllable
    sway: tuple[float, float, float] = (0.04, 0.07, 0.03)  # head pitch, yaw, roll amplitudes
    drift: float = 0.003            # head translation amplitude
    brow: float = 0.35              # brow_raise on emphasis
    smile: float = 0.15             # slow smile amplitude
    listener_nod: float = 0.06      # neck pitch of a listening nod
    gaze: float = 0.08              # eye rotation of a glance away (both eyes together)


@dataclass
class MotionParams:
    """FLAME parameters for ``frames`` frames at 25 fps (frame k starts at k * 40 ms)."""

    jaw_pose: np.ndarray            # T x 3
    expression: np.ndarray          # T x E, E = len(EXPRESSION_NAMES)
    global_pose: np.ndarray         # T x 3
    neck_pose: np.ndarray           # T x 3
    translation: np.ndarray         # T x 3
    eye_pose: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))

    def __post_init__(self) -> None:
        if not self.eye_pose.size:
            self.eye_pose = np.zeros((len(self.jaw_pose), 6))

    @property
    def frames(self) -> int:
        return len(self.jaw_pose)

    def frame(self, k: int, shape: np.ndarray = ()) -> FlameParams:
        """Frame ``k`` as ``FlameParams`` (identity ``shape`` optional)."""
        return FlameParams(shape=shape, expression=self.expression[k], global_pose=self.global_pose[k],
                           neck_pose=self.neck_pose[k], jaw_pose=self.jaw_pose[k], eye_pose=self.eye_pose[k],
                           translation=self.translation[k])

    def coefficient(self, name: str) -> np.ndarray:
        """One named expression coefficient over time."""
        return self.expression[:, EXPRESSION[name]]


def speech_weights(samples: np.ndarray, sample_rate: int, frames: int | None = None) -> dict[str, np.ndarray]:
    """The speech fallback's mouth weights per 40 ms frame (jawOpen, mouthStretch, mouthFunnel,
    ...), for a whole waveform; frames past the audio's end are silent."""
    from ..retarget.fallback import FallbackConfig, SpeechFallback

    rate = int(sample_rate)
    audio = np.asarray(samples, np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1 or not 8000 <= rate <= 192000:
        raise MoshifaceError(f"speech for face motion must be mono (or frames x channels) at 8-192 kHz, got shape "
                             f"{np.shape(samples)} at {rate} Hz")
    count = frames if frames is not None else -(-audio.size * NS_PER_S // (rate * FACE_FRAME_NS))
    window = rate * FACE_FRAME_NS // NS_PER_S
    audio = np.concatenate([audio, np.zeros(max(0, count * window - audio.size), np.float32)])
    follower = SpeechFallback(FallbackConfig(jaw_gain=1.0))
    rows: list[dict[str, float]] = []
    step = int(CHUNK_S * rate) // window * window
    for start in range(0, count * window, step):
        chunk = AudioChunk(start * NS_PER_S // rate, rate, audio[start: min(start + step, count * window)])
        rows.extend(values for _, values in follower.push(chunk))
    names = rows[0].keys() if rows else ()
    return {name: np.array([row[name] for row in rows[:count]]) for name in names}


def _smooth_noise(rng: np.random.Generator, frames: int, channels: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Sums of slow sinusoids at seeded frequencies: smooth, zero-mean, peak about 1."""
    t = np.arange(frames)[:, None] / FACE_FPS
    out = np.zeros((frames, channels))
    for _ in range(3):
        freq = rng.uniform(low_hz, high_hz, channels)
        out += np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, channels)) / 3
    return out


def blink_track(rng: np.random.Generator, frames: int, per_s: float, length: int) -> np.ndarray:
    """Eyelid closure 0..1 per frame: blinks at random times (at least 1 s apart), each a
    fast close and a slower open."""
    shape = np.concatenate([np.linspace(0.5, 1.0, max(1, length // 3)), np.linspace(1.0, 0.0, length - length // 3 + 1)[1:]])
    track = np.zeros(frames)
    t = rng.exponential(FACE_FPS / max(per_s, 1e-6)) * 0.5
    while t < frames:
        k = int(t)
        track[k: k + len(shape)] = np.maximum(track[k: k + len(shape)], shape[: frames - k])
        t += FACE_FPS + rng.exponential(FACE_FPS / max(per_s, 1e-6))
    return track


def gaze_track(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """Both eyes' axis-angles (T x 6): short glances away and back, every few seconds."""
    pose = np.zeros((frames, 6))
    t = rng.exponential(2.0 * FACE_FPS)
    while t < frames:
        k, hold = int(t), int(rng.uniform(0.3, 1.2) * FACE_FPS)
        pitch, yaw = rng.uniform(-0.5, 0.5) * amplitude, rng.uniform(-1.0, 1.0) * amplitude
        pose[k: k + hold, [0, 3]], pose[k: k + hold, [1, 4]] = pitch, yaw
        t += hold + rng.exponential(2.0 * FACE_FPS)
    return pose


def _onsets(level: np.ndarray) -> np.ndarray:
    """Frames where the voice rises sharply after a quieter stretch (stressed onsets)."""
    rise = np.diff(level, prepend=0.0)
    before = np.concatenate([np.zeros(5), level])[:-5]
    return (rise > 0.15) & (before < 0.3)


def _pulses(events: np.ndarray, length: int) -> np.ndarray:
    """A smooth bump (rise and fall over ``length`` frames) at each event frame."""
    kernel = np.sin(np.linspace(0, np.pi, length)) ** 2
    return np.clip(np.convolve(events.astype(float), kernel)[: len(events)], 0.0, 1.0)


class VoiceMotion:
    """``generate(samples, rate, phonemes=None, listener=None)`` -> ``MotionParams``."""

    def __init__(self, config: VoiceMotionConfig | None = None, seed: int = 0) -> None:
        self.config = config or VoiceMotionConfig()
        self.seed = int(seed)

    def generate(self, samples: np.ndarray, sample_rate: int, *, phonemes: list[Phoneme] | None = None,
                 listener: np.ndarray | None = None, frames: int | None = None) -> MotionParams:
        """The speaker's motion for a waveform; ``frames`` fixes the length (default: the audio's)."""
        c = self.config
        weights = speech_weights(samples, sample_rate, frames)
        count = len(weights.get("jawOpen", ()))
        rng = np.random.default_rng((self.seed, 14))
        level = weights["mouthLowerDownLeft"] / 0.3 if count else np.zeros(0)  # the fallback's envelope, 0..1
        jaw = weights["jawOpen"] if count else np.zeros(0)
        spread = np.where(level > 1e-3, weights["mouthStretchLeft"] / 0.35, 0.0) if count else np.zeros(0)
        rounded = np.where(level > 1e-3, weights["mouthFunnel"] / 0.4, 0.0) if count else np.zeros(0)
        expression = np.zeros((count, len(EXPRESSION_NAMES)))
        expression[:, EXPRESSION["lip_spread"]] = c.spread * spread
        expression[:, EXPRESSION["lip_round"]] = c.round * rounded
        if phonemes:
            jaw = self._apply_visemes(jaw, expression, phonemes, count)
        self._add_face(rng, expression, level)
        neck, global_pose, translation = self._head(rng, level, sample_rate, listener, count)
        jaw_pose = np.zeros((count, 3))
        jaw_pose[:, 0] = c.jaw_open * jaw
        return MotionParams(jaw_pose, expression, global_pose, neck, translation, gaze_track(rng, count, c.gaze))

    def _apply_visemes(self, jaw: np.ndarray, expression: np.ndarray, phonemes: list[Phoneme],
                       count: int) -> np.ndarray:
        """Known phonemes decide the lip shape; the loudness still decides how far the jaw opens."""
        track = viseme_track(phonemes, count)
        for name in ("lip_round", "lip_spread", "lip_press"):
            known = track.known
            expression[known, EXPRESSION[name]] = track.values[name][known] * (
                self.config.round if name == "lip_round" else self.config.spread if name == "lip_spread" else 1.0)
        return np.where(track.known, np.maximum(jaw, 0.3 * track.values["jaw"]) * (1.0 - track.values["lip_press"]),
                        jaw)

    def _add_face(self, rng: np.random.Generator, expression: np.ndarray, level: np.ndarray) -> None:
        """Blinks, brow lifts on stressed onsets and a slow smile, seeded."""
        c, count = self.config, len(level)
        blink = blink_track(rng, count, c.blink_per_s, c.blink_frames)
        expression[:, EXPRESSION["blink_left"]] = blink
        expression[:, EXPRESSION["blink_right"]] = np.clip(blink * rng.uniform(0.92, 1.0), 0.0, 1.0)
        emphasis = _onsets(level) & (rng.random(count) < 0.5)
        expression[:, EXPRESSION["brow_raise"]] = c.brow * _pulses(emphasis, 12)
        slow = _smooth_noise(rng, count, 2, 0.03, 0.15)
        expression[:, EXPRESSION["smile"]] = c.smile * np.clip(slow[:, 0] + 0.3, 0.0, None)
        expression[:, EXPRESSION["cheek_raise"]] = 0.5 * expression[:, EXPRESSION["smile"]]

    def _head(self, rng: np.random.Generator, level: np.ndarray, sample_rate: int, listener: np.ndarray | None,
              count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neck nods on stressed onsets (and on the listener's, while silent), a slow sway of the
        whole head, a small drift."""
        c = self.config
        nods = _pulses(_onsets(level), 8) * c.nod
        if listener is not None:
            other = speech_weights(listener, sample_rate, count).get("mouthLowerDownLeft", np.zeros(count)) / 0.3
            quiet = level < 0.05
            backchannel = _onsets(other) & quiet & (rng.random(count) < 0.3)
            nods = np.maximum(nods, _pulses(backchannel, 12) * c.listener_nod)
        neck = np.zeros((count, 3))
        neck[:, 0] = nods
        global_pose = _smooth_noise(rng, count, 3, 0.05, 0.4) * np.asarray(c.sway)
        translation = _smooth_noise(rng, count, 3, 0.03, 0.2) * c.drift
        return neck, global_pose, translation


def motion_vertices(head, motion: MotionParams, shape: np.ndarray = ()) -> np.ndarray:
    """(T, V, 3) float32 posed vertices of ``motion`` on ``head`` (a ``MotionHead`` or a
    ``FlameModel``; LBS per frame)."""
    pose = head.pose if hasattr(head, "pose") else head.forward
    vertices = getattr(head, "vertices", None) or head.num_vertices
    out = np.empty((motion.frames, int(vertices), 3), np.float32)
    for k in range(motion.frames):
        out[k] = pose(motion.frame(k, shape))
    return out

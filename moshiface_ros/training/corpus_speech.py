"""Real words for the conversation corpus, spoken by espeak-ng with exact word timing.

Each word is synthesised on its own (``espeak-ng --stdout``) and the dialogue is assembled
from those clips, so a word's start and end in the transcript are the sample positions
where its voiced part was placed: exact by construction, with no aligner and no reliance
on the engine's word events. The cost is that words lose sentence prosody (each is said
as if alone), which a lip-sync corpus does not need.

Within a word, espeak-ng's own phonemes (``--ipa``) are spread evenly over the voiced
span; they give the lips their shape (``flame.voice_visemes``), while the jaw follows
the loudness of the audio itself.

Two voices differ in espeak-ng variant, pitch and speed, so the speakers sound (and their
Mimi tokens look) distinct. Clips are cached per (voice, word): a corpus says the same few
hundred words many times.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from dataclasses import dataclass, field

import numpy as np

from ..constants import SAMPLE_RATE
from ..errors import MoshifaceError
from ..flame.voice_visemes import Phoneme

ESPEAK = "espeak-ng"
SILENCE_LEVEL = 0.02  # of full scale: below this at a clip's ends is silence, not the word
IPA_MARKS = set("ˈˌːˑ‿ ")  # stress, length and linking marks: not phonemes


@dataclass(frozen=True)
class Voice:
    """One corpus speaker's voice: an espeak-ng voice+variant, its pitch (0-99) and words per minute."""

    name: str
    espeak: str
    pitch: int
    speed: int


VOICES = (Voice("A", "en-us+m3", 38, 165), Voice("B", "en-us+f3", 70, 150))


@dataclass
class Clip:
    """A spoken word at 24 kHz: the samples (silence trimmed) and its phonemes in seconds from its start."""

    samples: np.ndarray
    phonemes: list[Phoneme] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def check_espeak() -> None:
    """One clear line when espeak-ng is not installed (before any work is done)."""
    if shutil.which(ESPEAK) is None:
        raise MoshifaceError("data synth speaks its words with espeak-ng, which is not installed "
                             "(apt-get install espeak-ng, or bash scripts/install_system_packages.sh)")


def _run(args: list[str]) -> bytes:
    try:
        return subprocess.run([ESPEAK, *args], check=True, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise MoshifaceError(f"espeak-ng failed on {args[-1]!r}: {exc}") from exc


def _decode_wav(data: bytes) -> np.ndarray:
    """espeak-ng's stdout WAV (16-bit mono, 22,050 Hz) -> float32 at 24 kHz."""
    import soxr

    with wave.open(io.BytesIO(data)) as reader:
        rate, raw = reader.getframerate(), reader.readframes(reader.getnframes())
    samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    return soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else samples


def _trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > SILENCE_LEVEL * max(float(np.abs(samples).max()), 1e-6))
    return samples[loud[0]: loud[-1] + 1] if loud.size else samples[:0]


def _phonemes(ipa: str, seconds: float) -> list[Phoneme]:
    """The word's IPA letters spread evenly over its voiced span (diphthongs count as two)."""
    letters = [ch for ch in ipa.strip() if ch not in IPA_MARKS]
    if not letters or seconds <= 0:
        return []
    span = seconds / len(letters)
    return [Phoneme(ch, k * span, (k + 1) * span) for k, ch in enumerate(letters)]


class Speaker:
    """``clip(word)`` -> the word said in this voice (cached)."""

    def __init__(self, voice: Voice) -> None:
        self.voice = voice
        self._cache: dict[str, Clip] = {}

    def clip(self, word: str) -> Clip:
        if word not in self._cache:
            v = self.voice
            common = ["-v", v.espeak, "-p", str(v.pitch), "-s", str(v.speed)]
            samples = _trim(_decode_wav(_run([*common, "--stdout", word])))
            if not samples.size:
                raise MoshifaceError(f"espeak-ng said nothing for {word!r} in voice {v.espeak}")
            ipa = _run([*common, "-q", "--ipa", word]).decode("utf-8", "replace")
            peak = float(np.abs(samples).max())
            self._cache[word] = Clip((0.5 / peak) * samples, _phonemes(ipa, len(samples) / SAMPLE_RATE))
        return self._cache[word]

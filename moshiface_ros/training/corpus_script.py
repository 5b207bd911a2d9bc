"""The words of a synthetic two-speaker conversation and where each one falls in time.

A conversation is a run of turns. A turn is a short sentence from a small grammar (real
English words, statements and questions); the floor usually passes to the other speaker
after a pause, sometimes the next turn starts before the last one ends (an overlap), and
sometimes the same speaker goes on. While one speaker holds a long turn the other often
slips in a backchannel ("yeah", "mhm", "right"). That gives the model what real dialogue
data gives it: two audio streams that interleave, overlap, and carry listener responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE
from ..flame.voice_visemes import Phoneme
from .corpus_speech import Clip, Speaker

SUBJECTS = ("I", "you", "we", "they", "my friend", "the robot", "my sister", "our team", "the doctor", "everyone")
VERBS = ("like", "need", "want", "found", "remember", "bought", "moved", "painted", "cooked", "opened", "watched",
         "borrowed", "fixed", "visited", "lost", "carried")
OBJECTS = ("the blue boat", "a warm coffee", "the old map", "some fresh bread", "the big window", "a small garden",
           "the yellow bike", "my phone", "the music", "a good book", "the piano", "the mountain road",
           "the kitchen", "a paper plane", "the market", "lunch")
ENDINGS = ("today", "yesterday", "every morning", "last week", "again", "on Monday", "for a while", "by the river",
           "after work", "at home", "")
OPENERS = ("well", "so", "oh", "okay", "honestly", "and", "")
QUESTIONS = ("did you see", "have you tried", "do you want", "where is", "who moved", "can we fix")
BACKCHANNELS = ("yeah", "mhm", "right", "okay", "wow", "sure", "really")


@dataclass
class Placed:
    """One spoken word in the conversation: who, what, when (seconds) and its clip."""

    speaker: int
    word: str
    start: float
    clip: Clip

    @property
    def end(self) -> float:
        return self.start + self.clip.seconds


def sentence(rng: np.random.Generator) -> list[str]:
    """A short statement or question, as a list of words."""
    pick = lambda options: str(options[rng.integers(len(options))])
    if rng.random() < 0.3:
        text = f"{pick(QUESTIONS)} {pick(OBJECTS)} {pick(ENDINGS)}"
    else:
        text = f"{pick(OPENERS)} {pick(SUBJECTS)} {pick(VERBS)} {pick(OBJECTS)} {pick(ENDINGS)}"
    return text.split()


def _say(speaker: Speaker, index: int, words: list[str], start: float, rng: np.random.Generator) -> list[Placed]:
    """Words one after another from ``start``, with short seeded gaps between them."""
    placed, t = [], start
    for word in words:
        clip = speaker.clip(word)
        placed.append(Placed(index, word, t, clip))
        t += clip.seconds + rng.uniform(0.03, 0.12)
    return placed


def _backchannel(turn: list[Placed], listener: Speaker, index: int, rng: np.random.Generator) -> list[Placed]:
    """Sometimes, in a long enough turn, the listener says one backchannel word during it."""
    if not turn or turn[-1].end - turn[0].start < 1.4 or rng.random() > 0.6:
        return []
    at = rng.uniform(turn[0].start + 0.6, turn[-1].end - 0.3)
    return _say(listener, index, [str(BACKCHANNELS[rng.integers(len(BACKCHANNELS))])], at, rng)


def plan_conversation(speakers: tuple[Speaker, Speaker], seconds: float, rng: np.random.Generator) -> list[Placed]:
    """Every word of a conversation of ``seconds``, sorted by start; none runs past the end."""
    words: list[Placed] = []
    who, t = int(rng.integers(2)), float(rng.uniform(0.2, 0.8))
    while t < seconds - 0.5:
        turn = [w for w in _say(speakers[who], who, sentence(rng), t, rng) if w.end <= seconds]
        if not turn:
            break
        words += turn + [w for w in _backchannel(turn, speakers[1 - who], 1 - who, rng) if w.end <= seconds]
        overlap = rng.random() < 0.2
        t = turn[-1].end + (rng.uniform(-0.35, -0.1) if overlap else rng.uniform(0.15, 0.8))
        who = 1 - who if overlap or rng.random() < 0.85 else who
    return sorted(words, key=lambda w: (w.start, w.speaker))


def render_tracks(words: list[Placed], seconds: float) -> tuple[np.ndarray, list[list[Phoneme]]]:
    """(2, samples) float32 waveforms, one per speaker, and each speaker's phoneme timing."""
    tracks = np.zeros((2, int(round(seconds * SAMPLE_RATE))), np.float32)
    phonemes: list[list[Phoneme]] = [[], []]
    for w in words:
        first = int(round(w.start * SAMPLE_RATE))
        part = w.clip.samples[: max(0, tracks.shape[1] - first)]
        tracks[w.speaker, first: first + len(part)] += part
        phonemes[w.speaker] += [Phoneme(p.label, w.start + p.start_s, w.start + p.end_s) for p in w.clip.phonemes]
    return tracks, phonemes

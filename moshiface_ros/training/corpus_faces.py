"""Both speakers' faces in a synthetic conversation, on the package's synthetic head.

Each speaker's jaw and lips follow that speaker's own voice and phonemes (the voice
motion generator, ``flame.voice_motion``); the generator also gives blinks, brow lifts,
nods on stressed syllables and a slow head sway, and, given the other speaker's voice,
listening nods while the other talks. On top of that comes one social behaviour that
only the other face explains: each speaker now and then smiles, and the listener smiles
back about half a second later. So the user's face carries information a robot's face
should use (a smile to answer), which the speech alone does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import FACE_FPS, SAMPLE_RATE
from ..face_codec.synthetic import SyntheticFace
from ..flame.synthetic_expressions import EXPRESSION
from ..flame.voice_motion import MotionParams, VoiceMotion, motion_vertices
from ..flame.voice_visemes import Phoneme

IDENTITY_COMPONENTS = 20  # identity coefficients drawn per speaker of a conversation
CHEEK_PER_SMILE = 0.5  # a smile raises the cheeks by half as much (a Duchenne smile)


@dataclass
class SocialConfig:
    """How often speakers smile on their own, how long, and how the other answers."""

    smiles_per_minute: float = 6.0
    smile_frames: int = 40          # 1.6 s from start to end of a smile
    smile: float = 0.8              # the smile expression at the peak of a smile
    reply_delay_frames: int = 12    # the listener smiles back ~0.5 s later...
    reply_chance: float = 0.85      # ...most of the time
    reply_scale: float = 0.8        # a little less broadly


def _bumps(starts: np.ndarray, frames: int, length: int) -> np.ndarray:
    """A smooth rise-and-fall of ``length`` frames from each start frame (peak 1)."""
    kernel = np.sin(np.linspace(0.0, np.pi, length)) ** 2
    events = np.zeros(frames)
    events[starts[(starts >= 0) & (starts < frames)]] = 1.0
    return np.clip(np.convolve(events, kernel)[:frames], 0.0, 1.0)


def smile_starts(rng: np.random.Generator, frames: int, config: SocialConfig) -> np.ndarray:
    """Frames where a speaker starts smiling on their own (a Poisson process, seeded)."""
    count = rng.poisson(config.smiles_per_minute * frames / FACE_FPS / 60.0)
    return np.sort(rng.integers(0, max(1, frames - config.smile_frames // 2), count))


def social_smiles(rng: np.random.Generator, frames: int, config: SocialConfig) -> tuple[np.ndarray, np.ndarray]:
    """(2, frames) smile of each speaker: their own smiles plus replies to the other's, and
    (2, frames) the reply part alone (what only the other face explains)."""
    own = [smile_starts(rng, frames, config) for _ in range(2)]
    smiles, replies = np.zeros((2, frames)), np.zeros((2, frames))
    for s in range(2):
        answered = own[1 - s][rng.random(len(own[1 - s])) < config.reply_chance]
        replies[s] = config.reply_scale * _bumps(answered + config.reply_delay_frames, frames, config.smile_frames)
        smiles[s] = np.maximum(_bumps(own[s], frames, config.smile_frames), replies[s])
    return config.smile * smiles, config.smile * replies


class ConversationFaces:
    """``motion(tracks, phonemes, seed)`` -> each speaker's face motion (displacements) of a conversation."""

    def __init__(self, vertices: int, seed: int = 0, social: SocialConfig | None = None) -> None:
        self.face = SyntheticFace(vertices=vertices, seed=seed)
        self.seed = int(seed)
        self.social = social or SocialConfig()

    def params(self, tracks: np.ndarray, phonemes: list[list[Phoneme]], seed: int) -> list[MotionParams]:
        """Both speakers' FLAME parameters, 25 fps, as long as the tracks."""
        frames = int(round(tracks.shape[1] / SAMPLE_RATE * FACE_FPS))
        out = []
        for s in range(2):
            generator = VoiceMotion(seed=int(self.seed * 1000003 + seed * 7 + s))
            out.append(generator.generate(tracks[s], SAMPLE_RATE, phonemes=phonemes[s] or None,
                                          listener=tracks[1 - s], frames=frames))
        smiles, _ = social_smiles(np.random.default_rng((self.seed, seed, 21)), frames, self.social)
        for s, params in enumerate(out):
            column = params.expression[:, EXPRESSION["smile"]]
            params.expression[:, EXPRESSION["smile"]] = np.maximum(column, smiles[s])
            smile = params.expression[:, EXPRESSION["smile"]]
            params.expression[:, EXPRESSION["cheek_raise"]] = CHEEK_PER_SMILE * smile
        return out

    def identity(self, seed: int, speaker: int) -> np.ndarray:
        return np.random.default_rng((self.seed, seed, speaker, 7)).normal(0.0, 1.0, IDENTITY_COMPONENTS)

    def motion(self, tracks: np.ndarray, phonemes: list[list[Phoneme]], seed: int) -> list[np.ndarray]:
        """Each speaker's (frames, V, 3) float32 displacements from their own neutral face."""
        rows, model = self.face.rows, self.face.head.model
        out = []
        for s, params in enumerate(self.params(tracks, phonemes, seed)):
            identity = self.identity(seed, s)
            posed = motion_vertices(self.face.head, params, identity)[:, rows]
            out.append((posed - model.neutral(identity)[rows][None]).astype(np.float32))
        return out

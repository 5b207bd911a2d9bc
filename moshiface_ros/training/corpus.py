"""``moshiface data synth``: a corpus of synthetic two-speaker conversations to train on.

No audiovisual dialogue corpus can ship, yet the research path (codec, ``data prepare``,
both training stages, ``eval``) must be runnable and, above all, must show that the face
learns to move with the speech. This corpus is built so that it can: real words spoken by
two espeak-ng voices (``corpus_speech``), turn-taking with overlaps and backchannels
(``corpus_script``), and each speaker's face on the synthetic head driven by that
speaker's own voice, plus listening nods and smiles answered (``corpus_faces``).

Layout written (``data prepare --dialogues OUT/dialogues --test-list OUT/test.txt`` and
``codec train --data OUT`` read it as it is)::

    OUT/dialogues/<name>/A.wav, B.wav      each speaker's own voice, 24 kHz mono
    OUT/dialogues/<name>/A.npy, B.npy      (frames, V, 3) float32 displacements, 25 fps
    OUT/dialogues/<name>/transcript.json   {"words": [{"speaker", "word", "start", "end"}]}
    OUT/manifest.json, OUT/regions.yaml    the same faces as a face-codec dataset
    OUT/test.txt                           held-out dialogues (left out of the codec dataset)
    OUT/corpus.json                        the settings, for the record

The same settings and seed always give the same corpus. Each dialogue is written under a
temporary name and renamed when whole; one already there is kept, so a run resumes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audio.wav import write_wav
from ..constants import FACE_FPS, FLAME_VERTICES, SAMPLE_RATE
from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from ..regions import save_regions
from .corpus_faces import ConversationFaces
from .corpus_script import plan_conversation, render_tracks
from .corpus_speech import VOICES, Speaker, check_espeak

DIALOGUES_DIR = "dialogues"
TEST_FILE = "test.txt"


@dataclass
class SynthConfig:
    out: Path
    dialogues: int = 40
    seconds: float = 20.0
    vertices: int = FLAME_VERTICES
    test_count: int = 8
    seed: int = 0
    progress: bool = True

    def validate(self) -> None:
        if self.dialogues < 2:
            raise MoshifaceError("--dialogues must be at least 2 (one to train on, one held out)")
        if not 2.0 <= self.seconds <= 600.0:
            raise MoshifaceError("--seconds must be between 2 and 600")
        if not 1 <= self.test_count < self.dialogues:
            raise MoshifaceError("--test-count must be at least 1 and fewer than --dialogues")
        if not 4 <= self.vertices <= FLAME_VERTICES:
            raise MoshifaceError(f"--vertices must be between 4 and {FLAME_VERTICES} (a subset of the head)")


def dialogue_names(count: int) -> list[str]:
    return [f"conv{k:04d}" for k in range(count)]


def held_out(config: SynthConfig) -> list[str]:
    """The test dialogues, drawn with the seed: the codec never sees their faces."""
    names = dialogue_names(config.dialogues)
    order = np.random.default_rng((config.seed, 5)).permutation(len(names))
    return sorted(names[k] for k in order[: config.test_count])


def _transcript(words: list, names: tuple[str, str]) -> str:
    rows = [{"speaker": names[w.speaker], "word": w.word, "start": round(w.start, 4), "end": round(w.end, 4)}
            for w in words]
    return json.dumps({"words": rows}, indent=1)


def write_dialogue(target: Path, index: int, config: SynthConfig, speakers: tuple[Speaker, Speaker],
                   faces: ConversationFaces) -> dict[str, Any]:
    """One conversation, written under a temporary name and renamed when whole."""
    rng = np.random.default_rng((config.seed, index, 1))
    words = plan_conversation(speakers, config.seconds, rng)
    tracks, phonemes = render_tracks(words, config.seconds)
    motion = faces.motion(tracks, phonemes, index)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = (speakers[0].voice.name, speakers[1].voice.name)
        for s, name in enumerate(names):
            write_wav(tmp / f"{name}.wav", tracks[s], SAMPLE_RATE)
            np.save(tmp / f"{name}.npy", motion[s])
        (tmp / "transcript.json").write_text(_transcript(words, names))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"words": len(words), "frames": len(motion[0])}


def _codec_manifest(config: SynthConfig, names: list[str], test: list[str]) -> dict[str, Any]:
    """The training dialogues' faces as a face-codec dataset (``face_codec.data``)."""
    sequences = [{"name": f"{n}_{v.name}", "file": f"{DIALOGUES_DIR}/{n}/{v.name}.npy", "speaker": v.name,
                  "displacement": True} for n in names if n not in set(test) for v in VOICES]
    return {"fps": FACE_FPS, "vertices": config.vertices, "speakers": {}, "sequences": sequences,
            "regions": "regions.yaml"}


def write_corpus(config: SynthConfig) -> dict[str, Any]:
    """Writes (or completes) the corpus under ``config.out``; returns a summary."""
    from tqdm import tqdm

    config.validate()
    check_espeak()
    out = Path(config.out)
    (out / DIALOGUES_DIR).mkdir(parents=True, exist_ok=True)
    speakers = (Speaker(VOICES[0]), Speaker(VOICES[1]))
    faces = ConversationFaces(config.vertices, config.seed)
    names, test = dialogue_names(config.dialogues), held_out(config)
    written = words = 0
    for index, name in enumerate(tqdm(names, disable=not config.progress, desc="conversations", unit="dialogue")):
        target = out / DIALOGUES_DIR / name
        if (target / "transcript.json").is_file():
            continue
        words += write_dialogue(target, index, config, speakers, faces)["words"]
        written += 1
    save_regions(faces.face.regions(), out / "regions.yaml")
    atomic_write_text(out / "manifest.json", json.dumps(_codec_manifest(config, names, test), indent=1) + "\n")
    atomic_write_text(out / TEST_FILE, "\n".join(test) + "\n")
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    atomic_write_text(out / "corpus.json", json.dumps({"settings": record, "voices": [asdict(v) for v in VOICES]},
                                                      indent=1) + "\n")
    return {"dialogues": len(names), "written": written, "kept": len(names) - written, "words": words,
            "test": test, "out": str(out)}

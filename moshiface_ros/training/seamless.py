"""``moshiface data import-seamless``: Meta's Seamless Interaction recordings -> dialogues.

The layout followed is the one the dataset's own tools write when they download an
interaction (facebookresearch/seamless_interaction: ``README.md``, "Working with Downloaded
Data", and ``src/seamless_interaction/fs.py``, ``gather_file_id_data_from_s3``): per
participant, files named ``V<vendor>_S<session>_I<interaction>_P<participant>`` with

- ``.wav``  the participant's own (speaker-bleed denoised) audio, 48 kHz;
- ``.mp4``  the participant's face-to-face video, 30 or 29.97 fps;
- ``.json`` ``{"id": ..., "metadata:transcript": [...], "metadata:vad": [...], ...}``, where
  each transcript entry is one line of the dataset's ``transcript/*.jsonl``: a segment
  ``{"start", "end", "transcript", "words": [{"word", "start", "end", "score"}, ...]}``
  (times in seconds). A segment without ``words`` (as the repository's test fixtures write
  them, ``{"start", "end", "text"}``) has its words spread evenly over its span.

The two participants of one interaction (same ``V_S_I``) become one dialogue directory in
the ``data prepare`` layout (see ``data.py``): ``P<id>.wav``,
``P<id>.npy`` (the video tracked with this package's tracker, ``motion_track.py``, in place
of the paper's VHAP) and ``transcript.json``. Each dialogue is written under a temporary
name and renamed when whole, and one already imported is kept unless ``overwrite``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import MoshifaceError
from ..fileio import atomic_write_text

FILE_ID = re.compile(r"^(V\d+_S\d+_I\d+)_(P[0-9A-Za-z]+)$")
TRANSCRIPT_KEY = "metadata:transcript"


@dataclass
class Participant:
    name: str  # P<participant>
    json: Path
    wav: Path | None = None
    mp4: Path | None = None


@dataclass
class Interaction:
    key: str  # V<vendor>_S<session>_I<interaction>
    participants: list[Participant] = field(default_factory=list)


def find_interactions(root: Path) -> tuple[list[Interaction], list[str]]:
    """Every interaction under ``root`` with exactly two participants that have audio;
    returns them and one note per interaction left out (and why)."""
    if not root.is_dir():
        raise MoshifaceError(f"{root} is not a directory")
    groups: dict[str, dict[str, Participant]] = defaultdict(dict)
    for path in sorted(root.rglob("*.json")):
        match = FILE_ID.match(path.stem)
        if match is None:
            continue
        key, person = match.groups()
        wav, mp4 = path.with_suffix(".wav"), path.with_suffix(".mp4")
        found = Participant(person, path, wav if wav.is_file() else None, mp4 if mp4.is_file() else None)
        known = groups[key].get(person)  # an annotation file of the same name elsewhere must not hide the recording
        if known is None or (known.wav is None and found.wav is not None):
            groups[key][person] = found
    if not groups:
        raise MoshifaceError(f"{root} holds no V<vendor>_S<session>_I<interaction>_P<participant>.json file")
    found, skipped = [], []
    for key, people in sorted(groups.items()):
        with_audio = [p for _, p in sorted(people.items()) if p.wav is not None]
        if len(with_audio) != 2:
            skipped.append(f"{key}: {len(with_audio)} participant(s) with a .wav, a dialogue needs two")
            continue
        found.append(Interaction(key, with_audio))
    return found, skipped


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise MoshifaceError(f"{where}: {value!r} is not a time in seconds") from exc
    if number != number or number < 0:
        raise MoshifaceError(f"{where}: {value!r} is not a time in seconds")
    return number


def _segment_words(segment: dict[str, Any], where: str) -> list[tuple[str, float, float]]:
    words = segment.get("words")
    if isinstance(words, list) and words:
        return [(str(w["word"]).strip(), _number(w["start"], where), _number(w["end"], where))
                for w in words if isinstance(w, dict) and str(w.get("word", "")).strip()]
    text = str(segment.get("transcript", segment.get("text", ""))).split()
    if not text:
        return []
    start, end = _number(segment["start"], where), _number(segment["end"], where)
    span = max(end - start, 0.0) / len(text)
    return [(word, start + i * span, start + (i + 1) * span) for i, word in enumerate(text)]


def read_transcript(path: Path, speaker: str) -> list[dict[str, Any]]:
    """The participant's words as ``data prepare`` reads them."""
    try:
        data = json.loads(path.read_text())
        segments = data[TRANSCRIPT_KEY]
        if not isinstance(segments, list):
            raise TypeError(f"'{TRANSCRIPT_KEY}' is not a list")
        words = [w for s in segments for w in _segment_words(s, str(path))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MoshifaceError(f"{path}: expected a Seamless Interaction JSON with '{TRANSCRIPT_KEY}' "
                             f"segments ({type(exc).__name__}: {str(exc)[:120]})") from exc
    return [{"speaker": speaker, "word": w, "start": s, "end": max(e, s)} for w, s, e in words]


def import_interaction(interaction: Interaction, target: Path,
                       track: Callable[[Path, Path, str], Any] | None) -> dict[str, Any]:
    """Writes one dialogue directory (under a temporary name, renamed when whole)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        words, faces = [], 0
        for person in interaction.participants:
            shutil.copyfile(person.wav, tmp / f"{person.name}.wav")
            words += read_transcript(person.json, person.name)
            if person.mp4 is not None and track is not None:
                track(person.mp4, tmp, person.name)
                faces += 1
        words.sort(key=lambda w: (w["start"], w["speaker"]))
        atomic_write_text(tmp / "transcript.json", json.dumps({"words": words}, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"dialogue": target.name, "words": len(words), "faces": faces}


def import_seamless(root: Path, out: Path, track: Callable[[Path, Path, str], Any] | None,
                    overwrite: bool = False, progress: bool = False) -> dict[str, Any]:
    """Imports every complete interaction under ``root`` into ``out``; ``track(mp4, dir, name)``
    writes ``dir/<name>.npy`` (None: no faces, the dialogues are audio and text only)."""
    from tqdm import tqdm

    interactions, skipped = find_interactions(root)
    if not interactions:
        raise MoshifaceError(f"{root}: no interaction has two participants with audio ({'; '.join(skipped[:3])})")
    out.mkdir(parents=True, exist_ok=True)
    done, kept = [], 0
    for interaction in tqdm(interactions, disable=not progress, desc="importing", unit="interaction"):
        target = out / interaction.key
        if (target / "transcript.json").is_file() and not overwrite:
            kept += 1
            continue
        done.append(import_interaction(interaction, target, track))
    return {"imported": done, "kept": kept, "skipped": skipped}

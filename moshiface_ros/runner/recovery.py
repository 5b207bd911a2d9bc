"""Making a session whole again after its process was killed (SIGKILL, power loss).

A killed run leaves its files as they were at the last moment they reached the disk: the
bag without its index (rebuilt by ``recording.recover``), ``robot.wav`` with sizes from
its last patch, ``text.jsonl`` perhaps ending in half a line, and the ``summary.json``
written when the session started (``"complete": false``). Recovery rebuilds the bag,
then cuts every file to the steps the bag holds (the bag is checkpointed least often, so
it bounds what the session can vouch for), and writes a summary of what is there, marked
``"recovered": true``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..audio.wav import repair_wav
from ..constants import FRAME_SIZE, SAMPLE_RATE
from ..errors import MoshifaceError
from ..fileio import atomic_write_text
from ..recording.recover import reindex_bag
from ..topics import ROBOT_AUDIO
from .outputs import BAG_DIR, ROBOT_WAV, SUMMARY_JSON, TEXT_JSONL, OutputDir


def recover_session(out: Path) -> dict[str, Any]:
    """Rebuilds the session in ``out`` (holding its lock); returns the new summary."""
    if not (out / BAG_DIR).is_dir():
        raise MoshifaceError(f"{out} holds no session bag ({BAG_DIR}/): nothing to recover")
    directory = OutputDir(out)
    directory.lock()
    try:
        counts = reindex_bag(out / BAG_DIR)
        steps = counts.get(ROBOT_AUDIO, 0)
        wav_steps = _cut_wav(out / ROBOT_WAV, steps)
        text_lines = _cut_text(out / TEXT_JSONL, steps)
        old = _old_summary(out / SUMMARY_JSON)
        summary = dict(old, recovered=True, complete=old.get("complete") is True, steps=steps,
                       audio_seconds=round(steps * FRAME_SIZE / SAMPLE_RATE, 3), messages=counts,
                       recovered_files={"robot_wav_steps": wav_steps, "text_lines": text_lines})
        atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        raise MoshifaceError(f"cannot recover {out}: {exc.strerror or exc}") from exc
    finally:
        directory.unlock()
    return summary


def _cut_wav(path: Path, steps: int) -> int | None:
    """Valid sizes for ``robot.wav``, at most ``steps`` steps long; the steps it holds."""
    if not path.is_file():
        return None
    frames = repair_wav(path)
    if frames > steps * FRAME_SIZE:  # audio of steps the bag lost: the files tell one story
        with open(path, "r+b") as file:
            file.truncate(path.stat().st_size - (frames - steps * FRAME_SIZE) * 4)
        frames = repair_wav(path)
    return frames // FRAME_SIZE


def _cut_text(path: Path, steps: int) -> int | None:
    """``text.jsonl`` without a cut last line or lines of steps the bag does not hold."""
    if not path.is_file():
        return None
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        try:
            entry = json.loads(line)
        except ValueError:
            break  # the line the kill cut short, and nothing after it
        if not line.endswith("\n") or not isinstance(entry, dict) or entry.get("step", steps) >= steps:
            break
        kept.append(line)
    atomic_write_text(path, "".join(kept))
    return len(kept)


def _old_summary(path: Path) -> dict[str, Any]:
    """What the session wrote about itself when it started (empty if nothing readable)."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}

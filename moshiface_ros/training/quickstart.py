"""``moshiface quickstart``: the whole research path on the CPU, offline, in one command.

corpus (``data synth``) -> face codec (``codec train``, small) -> tokens (``data prepare``,
tiny model, a tokenizer trained on the transcripts) -> stage 1 -> stage 2 -> ``eval``
(the table, teacher-forced and free-run, with its controls and plots) -> a ``run`` of the
trained model answering a held-out user. Every step writes where the documented
command would, so any of them can be rerun or replaced by hand; a step whose output is
already there is skipped, so an interrupted quick-start resumes.

The sizes are those measured to learn lip sync on a tiny model within the time budget
(docs/moshi-face.md, "Quick start"): the Face Transformer reads the step's audio tokens
through its own embeddings (``FaceConfig.audio_lookup``), which a random backbone needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import MoshifaceError


@dataclass
class QuickstartConfig:
    out: Path
    dialogues: int = 40
    seconds: float = 20.0
    vertices: int = 512
    test_count: int = 8
    codec_epochs: int = 20
    stage1_steps: int = 400
    stage2_steps: int = 100
    batch_size: int = 8
    seq_len: int = 100
    paper_conditioning: bool = False  # True: the paper's e_all alone (no audio lookup)
    face_delay: int = 2  # 1: the paper's; 2: frame t's face also reads frame t + 1's audio (FaceConfig.delay)
    face_dim: int = 384  # the Face Transformer's width (tiny's own: 64)
    seed: int = 0
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)


def _timed(config: QuickstartConfig, name: str, done: Path, work: Callable[[], Any]) -> None:
    """Runs one step unless ``done`` exists; records its wall time."""
    if done.exists():
        print(f"[{name}] already done ({done})")
        return
    print(f"[{name}] ...", flush=True)
    start = time.monotonic()
    work()
    config.timings[name] = round(time.monotonic() - start, 1)
    print(f"[{name}] {config.timings[name]:.0f} s", flush=True)


def _corpus(config: QuickstartConfig) -> None:
    from .corpus import SynthConfig, write_corpus

    write_corpus(SynthConfig(out=config.out / "corpus", dialogues=config.dialogues, seconds=config.seconds,
                             vertices=config.vertices, test_count=config.test_count, seed=config.seed,
                             progress=config.progress))


def _codec(config: QuickstartConfig) -> None:
    from ..face_codec.train import TrainOptions, train_codec

    train_codec(config.out / "corpus", config.out / "codec", "small-causal",  # causal: `run` streams it
                TrainOptions(epochs=config.codec_epochs, lr=1e-3, batch_size=8, seed=config.seed,
                             progress=config.progress))


def _prepare(config: QuickstartConfig) -> None:
    from .data import PrepareConfig, run_prepare

    corpus = config.out / "corpus"
    run_prepare(PrepareConfig(dialogues=corpus / "dialogues", out=config.out / "data", codec=config.out / "codec",
                              model="tiny", device="cpu", test_list=corpus / "test.txt", seed=config.seed,
                              progress=config.progress))


def _stage(config: QuickstartConfig, stage: int) -> None:
    from .config import TrainConfig
    from .train import run_training

    face: dict[str, Any] = {"delay": config.face_delay, "dim": config.face_dim}  # feed-forward: 2x the width, as tiny's
    if not config.paper_conditioning:
        face["audio_lookup"] = True
    model = "tiny" if stage == 1 else str(config.out / "stage1" / "final")
    steps = config.stage1_steps if stage == 1 else config.stage2_steps
    lrs = {} if stage == 1 else {"lr_temporal": 1e-4, "lr_depth": 1e-4, "lr_face": 2e-4}
    run_training(TrainConfig(stage=stage, data=config.out / "data", out=config.out / f"stage{stage}", model=model,
                             steps=steps, batch_size=config.batch_size, seq_len=config.seq_len, device="cpu",
                             seed=config.seed, progress=config.progress, eval_every=max(steps, 1),
                             save_every=max(steps, 1), face=face if stage == 1 else {}, **lrs))


def _eval(config: QuickstartConfig, stage: str) -> dict[str, Any]:
    from .evaluate import EvalConfig, run_eval

    return run_eval(EvalConfig(data=config.out / "data", model=str(config.out / stage / "final"),
                               codec=config.out / "codec", out=config.out / f"eval-{stage}",
                               regions=config.out / "corpus" / "regions.yaml", corpus=config.out / "corpus",
                               device="cpu", seed=config.seed,
                               progress=config.progress))


def _run(config: QuickstartConfig) -> None:
    """The trained model answering a held-out dialogue's speaker B, through ``moshiface run``."""
    test = (config.out / "corpus" / "test.txt").read_text().split()
    user = config.out / "corpus" / "dialogues" / test[0] / "B.wav"
    command = [sys.executable, "-m", "moshiface_ros.cli", "run", "--user-audio", str(user), "--model",
               str(config.out / "stage2" / "final"), "--codec", str(config.out / "codec"), "--device", "cpu",
               "--out", str(config.out / "run"), "--overwrite"] + ([] if config.progress else ["--quiet"])
    if subprocess.run(command).returncode != 0:
        raise MoshifaceError(f"moshiface run with the trained model failed (command: {' '.join(command)})")


def run_quickstart(config: QuickstartConfig) -> dict[str, Any]:
    """Every step in order (skipping those already done); returns the eval results and timings."""
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _timed(config, "corpus", out / "corpus" / "corpus.json", lambda: _corpus(config))
    _timed(config, "codec", out / "codec" / "config.json", lambda: _codec(config))
    _timed(config, "prepare", out / "data" / "splits.json", lambda: _prepare(config))
    _timed(config, "stage 1", out / "stage1" / "final", lambda: _stage(config, 1))
    _timed(config, "stage 2", out / "stage2" / "final", lambda: _stage(config, 2))
    results: dict[str, Any] = {}
    for stage in ("stage1", "stage2"):
        _timed(config, f"eval {stage}", out / f"eval-{stage}" / "results.json",
               lambda stage=stage: results.__setitem__(stage, _eval(config, stage)))
        if stage not in results:
            results[stage] = json.loads((out / f"eval-{stage}" / "results.json").read_text())
    _timed(config, "run", out / "run" / "summary.json", lambda: _run(config))
    config.timings["total"] = round(time.monotonic() - started, 1)
    return {"results": results, "timings": config.timings}

"""``moshiface``: the embedded runner's command line (no ROS needed).

    moshiface run --user-audio FILE [--out DIR] [--model tiny|DIR|hf:REPO] [--seed N]
    moshiface demo [--out DIR]
    moshiface codec|train|data|eval|render|flame ...   (see COMMAND_MODULES)

``run`` and ``demo`` live here; every other command group lives in its own module under
``moshiface_ros.commands`` with ``register(subparsers)``, which adds its parsers and sets
``handler`` on them. Those modules import their heavy dependencies inside the handlers, so
``moshiface --help`` stays fast.

User mistakes end with one line ``moshiface: error: ...`` and exit status 1; an
interrupted run (SIGINT/SIGTERM) closes its outputs and exits with 128 + the signal
number (130 or 143), as shells report a process killed by that signal.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import MoshifaceError

EXIT_ERROR = 1

# Command groups in moshiface_ros.commands, in the order --help lists them.
COMMAND_MODULES = ("codec", "face_lm", "flame", "render")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="tiny",
                       help="tiny (random weights, no download), a checkpoint DIR, or hf:OWNER/NAME "
                            "(default: %(default)s)")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    group.add_argument("--dtype", default="auto",
                       help="auto (bfloat16 on CUDA and for real weights, float32 for tiny on CPU), "
                            "float32, bfloat16 or float16")
    group.add_argument("--seed", type=int, default=42, help="sampling seed (default: %(default)s)")
    group.add_argument("--threads", type=int, default=None,
                       help="CPU threads for torch (default: 1 for the tiny model, torch's choice otherwise)")
    group.add_argument("--no-cuda-graphs", action="store_true", help="run the CUDA steps eagerly")
    group.add_argument("--temperature", type=float, default=0.8, help="audio sampling temperature")
    group.add_argument("--text-temperature", type=float, default=0.7, help="text sampling temperature")
    group.add_argument("--top-k", type=int, default=250, help="audio top-k")
    group.add_argument("--text-top-k", type=int, default=25, help="text top-k")
    group.add_argument("--codec", default="tiny",
                       help="face codec of a Moshi-Face model: tiny (random) or a causal codec checkpoint DIR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moshiface", description="Moshi-Face for robots: full-duplex voice and face, run without ROS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a session from a user WAV file",
                              description="Step the speech model over a user WAV (any rate or channel count) "
                                          "and write robot.wav, text.jsonl, summary.json and a rosbag2 (MCAP).")
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--user-audio", type=Path, metavar="FILE", help="the user's speech, a WAV file")
    source.add_argument("--live", action="store_true",
                        help="microphone in, speaker out (PortAudio devices; see docs/audio.md)")
    live = run.add_argument_group("live audio (--live)")
    live.add_argument("--input-device", default=None, help="microphone: name, part of a name or number")
    live.add_argument("--output-device", default=None, help="speaker: name, part of a name or number")
    live.add_argument("--echo-cancel", action="store_true", help="cancel the robot's own voice from the microphone")
    live.add_argument("--presentation-delay-ms", type=float, default=300.0,
                      help="robot audio plays at its step's stamp + this (default: %(default)s)")
    live.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this long (default: at Ctrl-C)")
    run.add_argument("--user-face", type=Path, default=None, metavar="FILE",
                     help="the user's face: .npy (frames, vertices, 3) displacements at 25 fps")
    run.add_argument("--user-video", type=Path, default=None, metavar="FILE",
                     help="the user's face as a video, tracked to FLAME (with VHAP's teeth) at 25 fps")
    run.add_argument("--flame", default="synthetic", metavar="PKL",
                     help="FLAME model for --user-video (default: synthetic, a stand-in; see docs/face-tracking.md)")
    run.add_argument("--head", type=Path, default=None, metavar="FILE",
                     help="a head file (config/heads/*.yaml): retarget the robot's face to its blendshapes "
                          "and actuators, recorded in the bag")
    run.add_argument("--embedding", type=Path, default=None, metavar="NPZ",
                     help="landmark embedding of that FLAME model (moshiface flame embedding)")
    run.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="output directory (default: moshiface-session-<date>-<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace a session already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_options(run)

    demo = commands.add_parser("demo", help="run a session on speech-like audio it generates itself",
                               description="Generate a user WAV, run a session on it and say where everything went. "
                                           "Uses the real Moshi weights when they are in the local Hugging Face "
                                           "cache, the tiny random model otherwise.")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), metavar="DIR",
                      help="output directory, replaced on each demo (default: %(default)s)")
    demo.add_argument("--seconds", type=float, default=12.0, help="length of the generated input (default: %(default)s)")
    demo.add_argument("--model", default=None, help="force a model (tiny, DIR or hf:OWNER/NAME)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_run)
    demo.set_defaults(handler=cmd_demo)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{name}").register(commands)
    return parser


def _configure_torch(model: str, threads: int | None) -> None:
    import torch

    if threads is None and model == "tiny":
        threads = 1  # small matrices: a second thread costs more than it gives
    if threads:
        torch.set_num_threads(threads)


def _run_config(args: argparse.Namespace, **overrides: Any):
    from .runner.pipeline import RunConfig
    from .speech.engine import Sampling

    values = dict(
        user_audio=args.user_audio,
        out=args.out or Path(time.strftime("moshiface-session-%Y%m%d-%H%M%S")),
        model=args.model, device=args.device, dtype=getattr(args, "dtype", "auto"), seed=args.seed,
        cuda_graphs=not getattr(args, "no_cuda_graphs", False),
        sampling=Sampling(getattr(args, "temperature", 0.8), getattr(args, "text_temperature", 0.7),
                          getattr(args, "top_k", 250), getattr(args, "text_top_k", 25)),
        overwrite=getattr(args, "overwrite", False), progress=not args.quiet,
        user_face=getattr(args, "user_face", None), codec=getattr(args, "codec", "tiny"),
        user_video=getattr(args, "user_video", None), flame=getattr(args, "flame", "synthetic"),
        embedding=getattr(args, "embedding", None), head=getattr(args, "head", None),
        live=getattr(args, "live", False), input_device=getattr(args, "input_device", None),
        output_device=getattr(args, "output_device", None), echo_cancel=getattr(args, "echo_cancel", False),
        presentation_delay_ms=getattr(args, "presentation_delay_ms", 300.0), duration_s=getattr(args, "duration", None),
    )
    values.update(overrides)
    return RunConfig(**values)


def _report(summary: dict[str, Any], out: Path) -> None:
    step = summary["step_ms"]
    print(f"model: {summary['model']} on {summary['device']} ({summary['dtype']})")
    print(f"steps: {summary['steps']} ({summary['audio_seconds']:.2f} s of audio); "
          f"step time p50 {step['p50']:.1f} ms, p95 {step['p95']:.1f} ms, max {step['max']:.1f} ms; "
          f"real-time factor {summary['real_time_factor']}")
    print(f"overhead outside the model: p50 {summary['overhead_ms']['p50']:.2f} ms per step")
    counts = ", ".join(f"{topic} {n}" for topic, n in summary["messages"].items())
    print(f"robot audio: {out / 'robot.wav'}")
    print(f"robot text:  {out / 'text.jsonl'}")
    print(f"summary:     {out / 'summary.json'}")
    if summary.get("face"):
        face = summary["face"]
        print(f"robot face:  {face['robot_face_frames']} frames at 25 fps in the bag "
              f"(codec {face['codec']}; user face seen on {face['user_steps_with_face']} steps)")
    if summary.get("head"):
        print(f"head:        {summary['head']['file']}: {summary['head']['outputs']} frames retargeted "
              f"(face / speech fallback / none)")
    print(f"bag:         {out / 'bag'} ({counts})")
    if summary["interrupted"]:
        print(f"interrupted by {summary['signal']}: outputs hold the steps before it")


def _exit_code(summary: dict[str, Any]) -> int:
    if not summary["interrupted"]:
        return 0
    return 128 + int(signal.Signals[summary["signal"]])


def cmd_run(args: argparse.Namespace) -> int:
    _configure_torch(args.model, args.threads)
    from .runner.pipeline import run_session

    config = _run_config(args)
    summary = run_session(config)
    _report(summary, config.out)
    return _exit_code(summary)


def cmd_demo(args: argparse.Namespace) -> int:
    from .speech.models import DEFAULT_REPO, hf_repo_is_cached

    if args.model is not None:
        model, why = args.model, "as asked"
    elif hf_repo_is_cached(DEFAULT_REPO):
        model, why = f"hf:{DEFAULT_REPO}", "real weights found in the local Hugging Face cache"
    else:
        model, why = "tiny", (f"{DEFAULT_REPO} is not in the local Hugging Face cache, so the tiny random "
                              "model stands in (its voice is noise)")
    print(f"demo model: {model} ({why})")
    _configure_torch(model, None)
    from .audio.synth import synthetic_speech
    from .audio.wav import write_wav
    from .runner.pipeline import run_session

    if args.seconds <= 0:
        raise MoshifaceError(f"--seconds must be positive, got {args.seconds}")
    user_wav = args.out / "user.wav"
    rate = 16000  # a typical microphone rate: the run resamples it to 24 kHz
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        write_wav(user_wav, synthetic_speech(args.seconds, rate, seed=args.seed), rate)
    except OSError as exc:
        raise MoshifaceError(f"cannot write the demo input {user_wav}: {exc.strerror or exc}") from exc
    print(f"user audio:  {user_wav} (generated speech-like signal, {args.seconds:g} s at {rate} Hz)")
    args.user_audio = user_wav
    args.user_face = _demo_user_face(args.out, args.seconds, args.seed) if model == "tiny" else None
    config = _run_config(args, model=model, overwrite=True)
    summary = run_session(config)
    _report(summary, config.out)
    return _exit_code(summary)


def _demo_user_face(out: Path, seconds: float, seed: int) -> Path:
    """Synthetic FLAME-like user face motion for the demo's tiny Moshi-Face model."""
    import numpy as np

    from .face_codec.synthetic import SyntheticFace

    path = out / "user_face.npy"
    motion = SyntheticFace(vertices=5143).motion(int(seconds * 25), seed=seed)
    try:
        np.save(path, motion)
    except OSError as exc:
        raise MoshifaceError(f"cannot write the demo input {path}: {exc.strerror or exc}") from exc
    print(f"user face:   {path} (synthetic FLAME-like motion, {len(motion)} frames at 25 fps)")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MoshifaceError as exc:
        print(f"moshiface: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:  # before the session had outputs (e.g. loading weights)
        print("moshiface: interrupted before the session started; nothing was written", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())

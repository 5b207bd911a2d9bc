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
from typing import TYPE_CHECKING, Any, Sequence

from .constants import FACE_FPS, VHAP_VERTICES
from .errors import MoshifaceError

if TYPE_CHECKING:  # imported where used, so that --help stays fast
    from .runner.config import RunConfig
    from .speech.session import SessionOptions

EXIT_ERROR = 1
DEMO_MICROPHONE_RATE = 16_000  # the demo's input is at a typical microphone rate, not the model's

# Command groups in moshiface_ros.commands, in the order --help lists them.
COMMAND_MODULES = ("codec", "face_lm", "flame", "render", "serve", "session")


# Sampling flags; one left out keeps the default of ``Sampling`` (Moshi's own).
SAMPLING_FLAGS = ("temperature", "text_temperature", "top_k", "text_top_k", "face_temperature", "face_top_k")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help unless the help already speaks of its default.

    argparse's own ArgumentDefaultsHelpFormatter also prints "(default: None)" and "(default:
    False)" for flags and unset options, which tells a user nothing; those stay as written.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.required or "default" in text.lower()
                or default is None or default is False or default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-command's parser below it, depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found.extend(all_parsers(sub))
    return found


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from .speech.session import SessionOptions as defaults

    group = parser.add_argument_group("model")
    group.add_argument("--model", default=defaults.model,
                       help="tiny (random weights, no download), a checkpoint DIR, or hf:OWNER/NAME "
                            "(default: %(default)s)")
    group.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    group.add_argument("--dtype", default=defaults.dtype,
                       help="auto (bfloat16 on CUDA and for real weights, float32 for tiny on CPU), "
                            "float32, bfloat16 or float16 (default: %(default)s)")
    group.add_argument("--seed", type=int, default=defaults.seed, help="sampling seed (default: %(default)s)")
    group.add_argument("--threads", type=int, default=defaults.threads,
                       help="CPU threads for torch (default: 1 for the tiny model, torch's choice otherwise)")
    group.add_argument("--no-cuda-graphs", action="store_true", help="run the CUDA steps eagerly")
    group.add_argument("--codec", default=defaults.codec,
                       help="face codec of a Moshi-Face model: tiny (random) or a causal codec checkpoint DIR")
    sampling = parser.add_argument_group("sampling (default: Moshi's own values)")
    sampling.add_argument("--temperature", type=float, default=None, help="audio sampling temperature")
    sampling.add_argument("--text-temperature", type=float, default=None, help="text sampling temperature")
    sampling.add_argument("--top-k", type=int, default=None, help="audio top-k")
    sampling.add_argument("--text-top-k", type=int, default=None, help="text top-k")
    sampling.add_argument("--face-temperature", type=float, default=None,
                          help="face token sampling temperature (Moshi-Face models)")
    sampling.add_argument("--face-top-k", type=int, default=None, help="face token top-k (Moshi-Face models)")


def _add_face_options(run: argparse.ArgumentParser) -> None:
    """The user's face (a motion file or a tracked video) and the robot head it drives."""
    from .runner.config import RunConfig

    face = run.add_argument_group("user face (optional)")
    face.add_argument("--user-face", type=Path, default=None, metavar="FILE",
                      help=f"the user's face: .npy (frames, vertices, 3) displacements at {FACE_FPS} fps")
    face.add_argument("--user-video", type=Path, default=None, metavar="FILE",
                      help=f"the user's face as a video, tracked to FLAME (with VHAP's teeth) at {FACE_FPS} fps")
    face.add_argument("--flame", default=RunConfig.flame, metavar="PKL",
                      help="FLAME model for --user-video (default: synthetic, a stand-in; see docs/face-tracking.md)")
    face.add_argument("--embedding", type=Path, default=None, metavar="NPZ",
                      help="landmark embedding of that FLAME model (moshiface flame embedding)")
    head = run.add_argument_group("robot head (optional)")
    head.add_argument("--head", type=Path, default=None, metavar="FILE",
                      help="a head file (config/heads/*.yaml): retarget the robot's face to its blendshapes "
                           "and actuators, recorded in the bag")


def _add_run_parser(commands: argparse._SubParsersAction) -> None:
    """``run``: its options grouped in the order a user fills them in: input, face, head,
    model, sampling, output."""
    from .runner.config import RunConfig

    run = commands.add_parser("run", help="run a session from a user WAV file",
                              description="Step the speech model over a user WAV (any rate or channel count) "
                                          "and write robot.wav, text.jsonl, summary.json and a rosbag2 (MCAP).")
    inputs = run.add_argument_group("input (one of)")
    source = inputs.add_mutually_exclusive_group(required=True)
    source.add_argument("--user-audio", type=Path, metavar="FILE", help="the user's speech, a WAV file")
    source.add_argument("--live", action="store_true",
                        help="microphone in, speaker out (PortAudio devices; see docs/audio.md)")
    live = run.add_argument_group("live audio (--live)")
    live.add_argument("--input-device", default=None,
                      help="microphone: name, part of a name or number (default: the system's)")
    live.add_argument("--output-device", default=None,
                      help="speaker: name, part of a name or number (default: the system's)")
    live.add_argument("--echo-cancel", action="store_true", help="cancel the robot's own voice from the microphone")
    live.add_argument("--presentation-delay-ms", type=float, default=RunConfig.presentation_delay_ms,
                      help="robot audio plays (and a --head moves) at its step's stamp + this "
                           "(default: %(default)s)")
    live.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="stop after this long (default: at Ctrl-C)")
    _add_face_options(run)
    _add_model_options(run)
    output = run.add_argument_group("output")
    output.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output directory (default: moshiface-session-<date>-<time>)")
    output.add_argument("--overwrite", action="store_true", help="replace a session already in --out")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=cmd_run)


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    from .speech.session import SessionOptions

    demo = commands.add_parser("demo", help="run a session on speech-like audio it generates itself",
                               description="Generate a user WAV, run a session on it and say where everything went. "
                                           "Uses the real Moshi weights when they are in the local Hugging Face "
                                           "cache, the tiny random model otherwise.")
    demo.add_argument("--out", type=Path, default=Path("demo-output"), metavar="DIR",
                      help="output directory, replaced on each demo (default: %(default)s)")
    demo.add_argument("--seconds", type=float, default=12.0,
                      help="length of the generated input (default: %(default)s)")
    demo.add_argument("--model", default=None,
                      help="force a model (tiny, DIR or hf:OWNER/NAME; default: the real weights when cached, "
                           "else tiny)")
    demo.add_argument("--device", default=SessionOptions.device, help="auto, cpu, cuda or cuda:N")
    demo.add_argument("--seed", type=int, default=SessionOptions.seed, help="seed of the input and of sampling")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument("--sessions", type=int, default=1, metavar="N",
                      help="benchmark mode: play N inputs at once through one batched model and write "
                           "fleet.json (default: 1, one recorded session)")
    demo.set_defaults(handler=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moshiface", description="Moshi-Face for robots: full-duplex voice and face, run without ROS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(commands)
    _add_demo_parser(commands)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.commands.{name}").register(commands)
    for each in all_parsers(parser):
        each.formatter_class = DefaultsHelpFormatter
    return parser


def _session_options(args: argparse.Namespace) -> SessionOptions:
    """The conversation ``moshiface run`` asks for; sampling flags left out keep their defaults."""
    from .speech.engine import Sampling
    from .speech.session import SessionOptions

    given = {name: getattr(args, name) for name in SAMPLING_FLAGS if getattr(args, name) is not None}
    return SessionOptions(model=args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                          cuda_graphs=not args.no_cuda_graphs, seed=args.seed, sampling=Sampling(**given),
                          codec=args.codec)


def _run_config(args: argparse.Namespace) -> RunConfig:
    from .runner.config import RunConfig

    return RunConfig(
        user_audio=args.user_audio, out=args.out or Path(time.strftime("moshiface-session-%Y%m%d-%H%M%S")),
        session=_session_options(args), overwrite=args.overwrite, progress=not args.quiet,
        user_face=args.user_face, user_video=args.user_video, flame=args.flame, embedding=args.embedding,
        head=args.head, live=args.live, input_device=args.input_device, output_device=args.output_device,
        echo_cancel=args.echo_cancel, presentation_delay_ms=args.presentation_delay_ms, duration_s=args.duration,
    )


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
        print(f"robot face:  {face['robot_face_frames']} frames at {FACE_FPS} fps in the bag "
              f"(codec {face['codec']}; user face seen on {face['user_steps_with_face']} steps)")
    if summary.get("head"):
        outputs = summary["head"]["outputs"]
        print(f"head:        {summary['head']['file']}: retargeted {outputs.get('face', 0)} face frames, "
              f"{outputs.get('fallback', 0)} from the voice (no face), {outputs.get('none', 0)} with neither")
    print(f"bag:         {out / 'bag'} ({counts})")
    if summary["interrupted"]:
        print(f"interrupted by {summary['signal']}: outputs hold the steps before it")
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")


def _exit_code(summary: dict[str, Any]) -> int:
    if not summary["interrupted"]:
        return 0
    return 128 + int(signal.Signals[summary["signal"]])


def _run_and_report(config: RunConfig) -> int:
    from .runner.pipeline import run_session

    summary = run_session(config)
    _report(summary, config.out)
    return _exit_code(summary)


def cmd_run(args: argparse.Namespace) -> int:
    return _run_and_report(_run_config(args))


def cmd_demo(args: argparse.Namespace) -> int:
    from .runner.config import RunConfig
    from .speech.models import DEFAULT_REPO, hf_repo_is_cached
    from .speech.session import SessionOptions

    if args.model is not None:
        model, why = args.model, "as asked"
    elif hf_repo_is_cached(DEFAULT_REPO):
        model, why = f"hf:{DEFAULT_REPO}", "real weights found in the local Hugging Face cache"
    else:
        model, why = "tiny", (f"{DEFAULT_REPO} is not in the local Hugging Face cache, so the tiny random "
                              "model stands in (its voice is noise)")
    print(f"demo model: {model} ({why})")
    if args.seconds <= 0:
        raise MoshifaceError(f"--seconds must be positive, got {args.seconds}")
    if args.sessions != 1:
        return _demo_fleet(args, SessionOptions(model=model, device=args.device, seed=args.seed))
    user_wav = _demo_user_audio(args.out, args.seconds, args.seed)
    user_face = _demo_user_face(args.out, args.seconds, args.seed) if model == "tiny" else None
    session = SessionOptions(model=model, device=args.device, seed=args.seed)
    return _run_and_report(RunConfig(user_audio=user_wav, out=args.out, session=session, overwrite=True,
                                     progress=not args.quiet, user_face=user_face))


def _demo_fleet(args: argparse.Namespace, session) -> int:
    """``demo --sessions N``: N conversations at once through one batched model."""
    from .runner.fleet import run_fleet

    summary = run_fleet(session, args.sessions, args.seconds, args.out)
    face = ", faces through one shared codec" if summary["shared_face_codec"] else ""
    print(f"sessions:    {summary['sessions']} at once, {summary['steps']} steps ({summary['model']}{face})")
    print(f"step time:   p50 {summary['step_ms']['p50']:.2f} ms p95 {summary['step_ms']['p95']:.2f} ms for all "
          f"sessions, {summary['per_session_ms']:.2f} ms per session")
    print(f"real time:   factor {summary['real_time_factor']:.3f} "
          f"({'keeps up' if summary['real_time_factor'] < 1 else 'slower than real time'})")
    print(f"summary:     {args.out / 'fleet.json'}")
    return 0


def _demo_user_audio(out: Path, seconds: float, seed: int) -> Path:
    """A speech-like user WAV at a typical microphone rate (the run resamples it)."""
    from .audio.synth import synthetic_speech
    from .audio.wav import write_wav

    path = out / "user.wav"
    rate = DEMO_MICROPHONE_RATE
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_wav(path, synthetic_speech(seconds, rate, seed=seed), rate)
    except OSError as exc:
        raise MoshifaceError(f"cannot write the demo input {path}: {exc.strerror or exc}") from exc
    print(f"user audio:  {path} (generated speech-like signal, {seconds:g} s at {rate} Hz)")
    return path


def _demo_user_face(out: Path, seconds: float, seed: int) -> Path:
    """The demo user's face: the synthetic head speaking the demo's user voice (``user.wav``,
    written just before by ``_demo_user_audio``), as displacements for the tiny Moshi-Face model."""
    import numpy as np

    from .audio.wav import read_wav
    from .flame.motion_head import motion_head
    from .flame.voice_motion import VoiceMotion, motion_vertices

    path = out / "user_face.npy"
    samples, rate = read_wav(out / "user.wav")
    head = motion_head(VHAP_VERTICES)
    params = VoiceMotion(seed=seed).generate(samples, rate, frames=int(seconds * FACE_FPS))
    motion = (motion_vertices(head, params) - head.neutral[None]).astype(np.float32)
    try:
        np.save(path, motion)
    except OSError as exc:
        raise MoshifaceError(f"cannot write the demo input {path}: {exc.strerror or exc}") from exc
    print(f"user face:   {path} (the synthetic head speaking user.wav, {len(motion)} frames at {FACE_FPS} fps)")
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

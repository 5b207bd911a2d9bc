"""``moshiface render``: a preview video of a recorded session.

    moshiface render SESSION [--out FILE.mp4] [--head FILE] [--neutral FILE] [--size WxH] [--no-audio]
                             [--face-from-voice]

SESSION is a ``moshiface run`` output directory or a rosbag2 directory. The video shows
the robot's face (and the user's, when the bag has it) shaded, next to its blendshape or
actuator bars, and under them a strip of the robot's voice and lip aperture on one time
axis, at 25 fps, with the robot's voice muxed in (a system ffmpeg, or the one in the
imageio-ffmpeg wheel). ``--face-from-voice`` draws the robot's face from its recorded
voice on the synthetic head instead of its face frames, and says so in the picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import FACE_FPS
from ..errors import MoshifaceError


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from exc
    return width, height


def register(commands: argparse._SubParsersAction) -> None:
    """Adds this group's parsers to ``commands``; each sets its own ``handler``."""
    render = commands.add_parser(
        "render", help="render a recorded session as an MP4 preview",
        description=f"Draw the robot's face (and the user's) shaded, its blendshape or actuator bars, and its voice "
                    f"under its lip aperture, {FACE_FPS} fps, with the robot's audio.")
    render.add_argument("session", type=Path, metavar="SESSION", help="a `moshiface run` output or a rosbag2 directory")
    render.add_argument("--out", type=Path, default=None, metavar="FILE.mp4",
                        help="output video (default: SESSION/preview.mp4, or BAG.mp4 next to a bag)")
    render.add_argument("--head", type=Path, default=None, metavar="FILE",
                        help="a head file: show its actuators (or blendshapes), computed from the recording")
    render.add_argument("--neutral", type=Path, default=None, metavar="FILE",
                        help="the neutral mesh the face frames are displacements from (.npy, or .npz with "
                             "neutral [+ faces]); default: the head's, else the synthetic head")
    render.add_argument("--size", type=_size, default=(960, 540), metavar="WxH", help="frame size (default 960x540)")
    render.add_argument("--no-audio", action="store_true", help="do not mux the robot's audio")
    render.add_argument("--face-from-voice", action="store_true",
                        help="draw the robot's face from its recorded voice on the synthetic head (the voice motion "
                             "generator) instead of its face frames: judges sync when the face model does not lip-sync")
    render.set_defaults(handler=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from ..render.preview import render_session

    if args.head is not None and not args.head.is_file():
        raise MoshifaceError(f"head file {args.head} does not exist")
    summary = render_session(args.session, args.out, args.head, args.neutral, args.size, not args.no_audio,
                             args.face_from_voice)
    audio = "with the robot's audio" if summary["audio"] else f"without audio: {summary['audio_note']}"
    print(f"preview: {summary['out']} ({summary['frames']} frames at {FACE_FPS} fps, "
          f"{summary['size'][0]}x{summary['size'][1]}, {audio})")
    if summary["face_from_voice"]:
        print("robot face: the synthetic head driven from the robot's recorded voice (--face-from-voice)")
    elif summary["mesh_source"]:
        print(f"mesh: neutral from {summary['mesh_source']}")
    if summary["user_face"]:
        print("user face: drawn from /moshiface/user/face")
    if summary["bars"]:
        print(f"bars: {summary['bars']}")
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} unreadable messages")
    return 0

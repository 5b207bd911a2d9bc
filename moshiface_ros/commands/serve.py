"""``moshiface serve``: talk to the robot in a browser.

    moshiface serve [--host 127.0.0.1] [--port 8998] [--token SECRET] [--out DIR] [model options]

One process serves the page (the robot's face in 3D, its voice, live captions) and a
WebSocket on which each browser connection is one conversation, built like ``moshiface
run``'s from the same model, codec and sampling options. With ``--out`` every conversation
leaves a session directory under DIR holding what ``run`` writes (robot.wav, text.jsonl,
summary.json, bag/). Only this machine may connect unless ``--host`` says otherwise, and
then every other machine needs ``--token``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import PRESENTATION_DELAY_MS

DEFAULT_PORT = 8998


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``serve``; it sets its own ``handler``."""
    from ..cli import _add_model_options

    serve = commands.add_parser(
        "serve", help="talk to the robot in a browser (a local web page, full duplex)",
        description="Serve a web page that streams the microphone to the model and shows the robot's face "
                    "in 3D while it plays the robot's voice; one conversation at a time.")
    net = serve.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1",
                     help="address to listen on; anything but loopback needs --token (default: %(default)s)")
    net.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)")
    net.add_argument("--token", default=None, metavar="SECRET",
                     help="required as ?token=SECRET on requests from other machines")
    serve.add_argument("--presentation-delay-ms", type=float, default=PRESENTATION_DELAY_MS,
                       help="the page presents the robot's voice and face at each step's stamp + this "
                            "(default: %(default)s)")
    _add_model_options(serve)
    output = serve.add_argument_group("output")
    output.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write each conversation to DIR/session-<date>-<time>-<n>/ as `run` does")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from ..cli import _session_options
    from ..server.app import ServeConfig
    from ..server.run import serve

    config = ServeConfig(session=_session_options(args), host=args.host, port=args.port, token=args.token,
                         out=args.out, presentation_delay_ms=args.presentation_delay_ms)
    server = serve(config)
    done = server.sessions_done
    print(f"stopped after {len(done)} conversation(s)")
    return 0

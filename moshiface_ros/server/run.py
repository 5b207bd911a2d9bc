"""Starting and stopping the conversation server: models once, then serve until a signal.

The models are loaded before the port opens, so the first visitor does not wait for them
and a bad model option fails at once with one line. The address actually bound (``--port
0`` picks a free one) is printed as the page's URL, which is how a user, a script or a test
finds it. SIGINT and SIGTERM stop the server; a conversation in progress is finished
(its outputs closed with their summary) before the process ends.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Callable

from aiohttp import web

from ..speech.session import build_stepper, load_models, resolve_placement
from .app import ConversationServer, ServeConfig
from .assets import web_dir
from .bridge import WebSession


def build_server(config: ServeConfig) -> ConversationServer:
    """Loads the models and returns a server whose conversations use them."""
    placement = resolve_placement(config.session)
    web = web_dir()
    models = load_models(config.session, placement)
    probe = build_stepper(config.session, models)
    vertices = probe.face_vertices
    probe.close()

    def new_session(out: Path | None) -> WebSession:
        return WebSession(build_stepper(config.session, models), config.session, placement,
                          models.description, out)

    return ConversationServer(config, new_session, web, vertices)


async def _serve(server: ConversationServer, announce: Callable[[str], None]) -> None:
    runner = web.AppRunner(server.application(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, server.config.host, server.config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    announce(f"http://{shown}:{port}/")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(config: ServeConfig, announce: Callable[[str], None] | None = None) -> ConversationServer:
    """Serves until SIGINT or SIGTERM; returns the server (its ``sessions_done``)."""
    logging.basicConfig(level=logging.INFO, format="moshiface: %(message)s", stream=sys.stderr)
    server = build_server(config)

    def say(url: str) -> None:
        print(f"serving: {url} (open it in a browser; Ctrl-C stops)", flush=True)

    asyncio.run(_serve(server, announce or say))
    return server

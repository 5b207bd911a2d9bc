"""The page as a robot's face screen: the robot's voice, face and text pushed in from any
thread (the ``web_head`` node's subscriptions) and streamed to every page that connects.

A display has no microphone, so there is no first user sample to count from: each viewer's
clock starts when it connects. The server sends every output as its stamp's offset from
that moment (``origin``, on the same clock as the stamps, e.g. ROS time), and the page
presents it at offset + presentation delay on its own audio clock, which it started
when the server said hello: the stamp + delay rule of ``timing``, with the connection
as the one point where the two clocks are matched. Outputs stamped before a viewer
connected would be late for it and are not sent.

The face comes either as vertex displacements (``/moshiface/robot/face``) or, for a head
given by a head file's rig, as blendshape weights (``/moshiface/robot/blendshapes``): the
page then draws the rig's shapes as morph targets and each frame carries only the weights,
in the rig's order (``mesh.MorphHead.order``), presented on the same clock.

The server runs its own event loop on a thread, so the caller (a ROS node spinning in the
main thread) only ever enqueues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiohttp import WSMsgType, web

from ..constants import PRESENTATION_DELAY_MS
from ..errors import MoshifaceError
from ..messages.types import AudioChunk, BlendshapeWeights, DialogueText, FaceFrame
from . import protocol
from .app import hello_payload
from .mesh import MorphHead
from .pages import PageSite

_log = logging.getLogger("moshiface.web_head")
MAX_VIEWERS = 8
MAX_QUEUED = 200  # messages waiting for a slow viewer before it is dropped


@dataclass
class _Viewer:
    ws: web.WebSocketResponse
    origin_ns: int
    queue: asyncio.Queue


class FaceDisplay:
    """Serves the page at ``host:port`` and streams pushed outputs to its viewers."""

    def __init__(self, web_root: Path, clock: Callable[[], int], host: str = "127.0.0.1", port: int = 8999,
                 token: str | None = None, vertices: int | None = None,
                 presentation_delay_ms: float = PRESENTATION_DELAY_MS, morphs: MorphHead | None = None) -> None:
        self.clock = clock
        self.host, self.port = host, port
        self.delay_ms = presentation_delay_ms
        self.morphs = morphs
        self.bad_blendshapes = 0  # blendshape messages dropped or corrected (see push_blendshapes)
        self.site = PageSite(web_root, vertices, token, self.hello, morphs)
        self.url = ""
        self._viewers: list[_Viewer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def hello(self) -> dict:
        hello = hello_payload(self.delay_ms, self.site.vertices, display=True)
        hello["blendshapes"] = list(self.morphs.names) if self.morphs is not None else None
        return hello

    def start(self) -> str:
        """Binds and serves on a thread of its own; returns the page's URL."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="web_head", daemon=True)
        self._thread.start()
        try:
            self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self.url

    async def _start(self) -> str:
        app = self.site.application()
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    # -- any thread -------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk) -> None:
        self._broadcast(chunk.stamp_ns, lambda offset: protocol.encode_robot_audio(offset, chunk.samples))

    def push_face(self, frame: FaceFrame) -> None:
        self._broadcast(frame.stamp_ns,
                        lambda offset: protocol.encode_face(offset, frame.vertices, frame.face_present))

    def push_blendshapes(self, weights: BlendshapeWeights) -> str | None:
        """Streams one frame of weights (a display drawing a rig); returns what was wrong
        with it, if anything (the frame is then dropped or corrected, and counted)."""
        if self.morphs is None:
            raise MoshifaceError("this display draws face frames: give it a head (morphs) to draw blendshapes")
        ordered, problem = self.morphs.order(weights.names, weights.weights)
        if problem is not None:
            self.bad_blendshapes += 1
        if ordered is not None:
            self._broadcast(weights.stamp_ns, lambda offset: protocol.encode_blendshapes(offset, ordered))
        return problem

    def push_text(self, text: DialogueText) -> None:
        self._broadcast(text.stamp_ns, lambda offset: protocol.encode_text(offset, text.piece))

    def _broadcast(self, stamp_ns: int, encode: Callable[[int], bytes]) -> Future | None:
        if self._loop is None or not self._viewers:
            return None
        return asyncio.run_coroutine_threadsafe(self._send(stamp_ns, encode), self._loop)

    # -- the server's loop ------------------------------------------------------------

    async def _send(self, stamp_ns: int, encode: Callable[[int], bytes]) -> None:
        for viewer in list(self._viewers):
            offset = stamp_ns - viewer.origin_ns
            if offset < 0:
                continue  # from before this viewer's clock began: already late for it
            if viewer.queue.qsize() >= MAX_QUEUED:
                _log.warning("a viewer fell %d messages behind; disconnecting it", MAX_QUEUED)
                await viewer.ws.close()
                continue
            viewer.queue.put_nowait(encode(offset))

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=protocol.MAX_MESSAGE_BYTES + 1, heartbeat=20.0)
        await ws.prepare(request)
        if len(self._viewers) >= MAX_VIEWERS:
            await ws.send_bytes(protocol.encode_state("busy", f"{MAX_VIEWERS} viewers already"))
            await ws.close()
            return ws
        viewer = _Viewer(ws, self.clock(), asyncio.Queue())
        await ws.send_bytes(protocol.encode_json(protocol.Kind.HELLO, self.hello()))
        await ws.send_bytes(protocol.encode_state("listening"))
        self._viewers.append(viewer)
        sender = asyncio.create_task(self._drain(viewer))
        try:
            async for msg in ws:  # a display only listens; whatever a viewer sends is ignored
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._viewers.remove(viewer)
            sender.cancel()
        return ws

    async def _drain(self, viewer: _Viewer) -> None:
        try:
            while True:
                await viewer.ws.send_bytes(await viewer.queue.get())
        except (ConnectionError, RuntimeError):
            return

"""The HTTP + WebSocket server behind ``moshiface serve``: the page, the head mesh, and
one conversation at a time over ``/ws``.

The model steps on one worker thread, never on the event loop, so while a step runs the
server still answers pages, meshes and a second visitor (who is told it is busy). Each
connection is one conversation built by the same session builder as ``moshiface run``
(models loaded once, at start-up); a client that sends something malformed, too big, or
at an impossible rate, or that goes away mid-step, ends only its own session, with one
logged line saying why, and the next visitor gets a fresh one.

Access: the server binds 127.0.0.1 unless told otherwise. With a ``token``, every request
from another machine must carry it (``?token=`` on the page's address, which the page
passes on; see ``pages``); binding anywhere but loopback without one is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import WSCloseCode, WSMsgType, web

from ..constants import FACE_FPS, FRAME_SIZE, PRESENTATION_DELAY_MS, SAMPLE_RATE, STEP_NS
from ..errors import MoshifaceError
from ..speech.session import SessionOptions
from . import protocol
from .bridge import WebSession
from .pages import PageSite, is_loopback
from .webcam import WebcamTracker

_log = logging.getLogger("moshiface.serve")


@dataclass(frozen=True)
class ServeConfig:
    """What ``moshiface serve`` is asked for."""

    session: SessionOptions
    host: str = "127.0.0.1"
    port: int = 8998
    token: str | None = None
    out: Path | None = None  # each conversation writes a session directory under it
    presentation_delay_ms: float = PRESENTATION_DELAY_MS

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise MoshifaceError(f"--host {self.host} lets other machines in: give --token SECRET as well")
        if not 0 <= self.port <= 65535:
            raise MoshifaceError(f"--port must be 0..65535, got {self.port}")
        if self.presentation_delay_ms < 0:
            raise MoshifaceError(f"--presentation-delay-ms must be >= 0, got {self.presentation_delay_ms}")


def hello_payload(delay_ms: float, vertices: int | None, display: bool = False) -> dict[str, Any]:
    """What the page learns first: the clock (rates, step, presentation delay), the face's
    vertex count, and whether it is a display (no microphone) or a conversation."""
    return {"sample_rate": SAMPLE_RATE, "frame_size": FRAME_SIZE, "step_ms": STEP_NS / 1e6, "face_fps": FACE_FPS,
            "presentation_delay_ms": delay_ms, "vertices": vertices, "max_audio_s": protocol.MAX_AUDIO_S,
            "display": display}


SessionFactory = Callable[[Path | None], WebSession]


class ConversationServer:
    """The aiohttp application and the one conversation it runs at a time."""

    def __init__(self, config: ServeConfig, new_session: SessionFactory, web: Path, vertices: int | None) -> None:
        self.config = config
        self.web = web
        self.vertices = vertices
        self.sessions_done: list[dict[str, Any]] = []  # (reason, steps, out) of each ended session
        self._new_session = new_session
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._vision = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webcam")
        self._webcam = WebcamTracker()
        self._tracking: asyncio.Task | None = None  # the webcam frame being tracked (one at a time)
        self._video_error: str | None = None
        self._busy = False
        self._count = 0

    def application(self) -> web.Application:
        app = PageSite(self.web, self.vertices, self.config.token, self.hello).application()
        app.router.add_get("/ws", self._websocket)
        app.on_cleanup.append(self._shutdown)
        return app

    async def _shutdown(self, app: web.Application) -> None:
        """After the handlers ended (``on_cleanup``, not ``on_shutdown``, which runs while a
        conversation may still be finishing on the model thread and needs its executor)."""
        self._vision.shutdown(wait=True)
        self._webcam.close()
        self._executor.shutdown(wait=True)

    def hello(self) -> dict[str, Any]:
        """The session's clock and what the page needs to draw it."""
        return hello_payload(self.config.presentation_delay_ms, self.vertices)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=protocol.MAX_MESSAGE_BYTES + 1, heartbeat=20.0)
        await ws.prepare(request)
        if self._busy:
            _log.info("refused a second conversation from %s: busy", request.remote)
            await ws.send_bytes(protocol.encode_state("busy", "another conversation is running; try again later"))
            await ws.close()
            return ws
        self._busy = True
        try:
            await self._converse(ws, request.remote)
        finally:
            self._busy = False
        return ws

    def _session_out(self) -> Path | None:
        self._count += 1
        if self.config.out is None:
            return None
        return self.config.out / time.strftime(f"session-%Y%m%d-%H%M%S-{self._count}")

    async def _step(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _converse(self, ws: web.WebSocketResponse, peer: str | None) -> None:
        """One conversation from hello to its last step; always ends it cleanly."""
        self._video_error = None
        self._webcam.reset()
        try:
            session = await self._step(self._new_session, self._session_out())
        except MoshifaceError as exc:
            _log.error("cannot start a conversation: %s", exc)
            await ws.send_bytes(protocol.encode_state("error", str(exc)))
            await ws.close()
            return
        reason: str | None = None
        try:
            await ws.send_bytes(protocol.encode_json(protocol.Kind.HELLO, self.hello()))
            await ws.send_bytes(protocol.encode_state("listening"))
            reason = await self._receive(ws, session)
        except (ConnectionError, asyncio.CancelledError):
            reason = "the client went away mid-step"
        finally:
            if self._tracking is not None:
                await asyncio.wait([self._tracking])
            summary = await asyncio.shield(self._step(session.close, reason))
            self._log_end(peer, session, reason, summary)
        if reason is not None and not ws.closed:
            await ws.send_bytes(protocol.encode_state("error", reason))
        await ws.close()

    async def _receive(self, ws: web.WebSocketResponse, session: WebSession) -> str | None:
        """Messages until the user ends (None) or something ends the session (the reason)."""
        async for msg in ws:
            if self._video_error is not None:  # a webcam frame before this one was bad
                return self._video_error
            if msg.type is WSMsgType.TEXT:
                return "text frames are not part of the protocol"
            if msg.type is not WSMsgType.BINARY:
                error = ws.exception()
                if getattr(error, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    return f"message too big ({error})"
                return f"connection error: {ws.exception() or msg.type.name}"
            try:
                message = protocol.decode_client(msg.data)
                if isinstance(message, protocol.ClientEnd):
                    await self._send_all(ws, await self._step(session.finish_input))
                    await ws.send_bytes(protocol.encode_state("ended"))
                    return None
                if isinstance(message, protocol.ClientAudio):
                    await self._send_all(ws, await self._step(session.push_audio, message))
                elif isinstance(message, protocol.ClientVideo):
                    self._track(session, message.jpeg)
            except protocol.ProtocolError as exc:
                return str(exc)
            except ValueError as exc:  # the stepper refusing a chunk
                return f"bad audio: {exc}"
        return "the client disconnected"

    def _track(self, session: WebSession, jpeg: bytes) -> None:
        """Tracks a webcam frame on the webcam's thread, then hands the face to the model's
        thread; while one frame is being tracked the next ones are dropped, so the camera
        never queues work in front of the voice."""
        if self._tracking is not None and not self._tracking.done():
            return

        async def track() -> None:
            loop = asyncio.get_running_loop()
            try:
                face = await loop.run_in_executor(self._vision, self._webcam.track, jpeg, session.now_ns())
            except protocol.ProtocolError as exc:
                self._video_error = str(exc)
                return
            await self._step(session.push_face, face)

        self._tracking = asyncio.create_task(track())

    async def _send_all(self, ws: web.WebSocketResponse, messages: list[bytes]) -> None:
        for message in messages:
            await ws.send_bytes(message)

    def _log_end(self, peer: str | None, session: WebSession, reason: str | None,
                 summary: dict[str, Any] | None) -> None:
        out = str(session.out) if summary is not None else None
        self.sessions_done.append({"reason": reason, "steps": session.steps, "out": out})
        where = f"; outputs in {out}" if out else ""
        if reason is None:
            _log.info("conversation with %s ended after %d steps%s", peer, session.steps, where)
        else:
            _log.warning("conversation with %s ended after %d steps: %s%s", peer, session.steps, reason, where)

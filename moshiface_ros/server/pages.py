"""What every page server answers besides its WebSocket: the page, its static files and
three.js, the session's clock (``/hello``), the head mesh (``/mesh``; for a head drawn by
blendshapes also its morph targets, ``/morphs``: float32 K x V x 3, binary because as JSON
they would be several times larger), and the access rule.

``moshiface serve`` and the ``web_head`` node serve the same page; only their WebSocket
differs (a conversation, or a display fed by ROS topics). Access: requests from this
machine are always let in; from anywhere else only with the token (``?token=``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from .assets import three_dir
from .mesh import MorphHead, head_mesh

_log = logging.getLogger("moshiface.serve")


def is_loopback(host: str | None) -> bool:
    """Whether an address (or host name) is this machine's loopback."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address((host or "").split("%")[0]).is_loopback
    except ValueError:
        return False


class PageSite:
    """The page's routes on an aiohttp application."""

    def __init__(self, web_root: Path, vertices: int | None, token: str | None,
                 hello: Callable[[], dict[str, Any]], morphs: MorphHead | None = None) -> None:
        self.web = web_root
        self.morphs = morphs
        self.vertices = morphs.vertices if morphs is not None else vertices
        self.token = token
        self.hello = hello
        self._mesh: bytes | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._access])
        app.router.add_get("/", self._page)
        app.router.add_get("/hello", self._hello_json)
        app.router.add_get("/mesh", self._mesh_json)
        app.router.add_get("/morphs", self._morphs)
        app.router.add_static("/vendor/three/", three_dir(self.web))
        app.router.add_static("/static/", self.web)
        return app

    @web.middleware
    async def _access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not is_loopback(request.remote):
            if not self.token or request.query.get("token") != self.token:
                _log.warning("refused %s %s: no valid token", request.remote, request.path)
                raise web.HTTPForbidden(text="a valid ?token= is needed from another machine\n")
        return await handler(request)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.web / "index.html")

    async def _hello_json(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.hello())

    async def _mesh_json(self, request: web.Request) -> web.StreamResponse:
        if self.vertices is None:
            raise web.HTTPNotFound(text="this model has no face\n")
        if self._mesh is None:
            loop = asyncio.get_running_loop()
            mesh = self.morphs.mesh if self.morphs is not None else await loop.run_in_executor(
                None, head_mesh, self.vertices)
            self._mesh = json.dumps(mesh, separators=(",", ":")).encode()
        return web.Response(body=self._mesh, content_type="application/json")

    async def _morphs(self, request: web.Request) -> web.StreamResponse:
        if self.morphs is None:
            raise web.HTTPNotFound(text="this head is not drawn by blendshapes\n")
        return web.Response(body=self.morphs.morph_bytes(), content_type="application/octet-stream")

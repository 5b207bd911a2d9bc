"""The harness the server tests share (no tests of its own): a real ``moshiface serve``
process on a free loopback port, and a WebSocket client that talks the page's protocol."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import numpy as np

from moshiface_ros.server import protocol

START_TIMEOUT_S = 120.0


@dataclass
class ServerProcess:
    """``moshiface serve --port 0`` in its own process; ``url`` once it is listening."""

    out: Path | None
    args: tuple[str, ...] = ()
    url: str = ""
    log: Path = field(default_factory=lambda: Path(os.devnull))
    process: subprocess.Popen | None = None

    def start(self, log: Path) -> "ServerProcess":
        self.log = log
        command = [sys.executable, "-m", "moshiface_ros.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--model", "tiny", *self.args]
        if self.out is not None:
            command += ["--out", str(self.out)]
        env = dict(os.environ, NO_TORCH_COMPILE="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("serving: "):
                self.url = line.split()[1]
                return self
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"moshiface serve did not start: {self.log.read_text()}")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "ws"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> tuple[int | None, str]:
        """SIGTERM, then the exit status and everything it logged."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode if self.process is not None else None
        return code, self.log.read_text(errors="replace")

    def logged(self) -> str:
        return self.log.read_text(errors="replace")



def serve_for_module(root: Path) -> Iterator[ServerProcess]:
    """A module-scoped server fixture's body: a server writing under ``root``, stopped at
    the end with status 0 and no traceback in its log, whatever the tests sent it."""
    process = ServerProcess(root / "out").start(root / "serve.log")
    yield process
    code, log = process.stop()
    assert code == 0, log
    assert "Traceback" not in log, log

@dataclass
class Conversation:
    """What a client received, decoded."""

    hello: dict[str, Any] | None = None
    states: list[dict[str, Any]] = field(default_factory=list)
    audio: list[tuple[int, np.ndarray]] = field(default_factory=list)
    texts: list[tuple[int, str]] = field(default_factory=list)
    faces: list[tuple[int, bool, np.ndarray]] = field(default_factory=list)
    close_code: int | None = None

    def take(self, data: bytes) -> None:
        kind, value = protocol.decode_server(data)
        if kind is protocol.Kind.HELLO:
            self.hello = value
        elif kind is protocol.Kind.STATE:
            self.states.append(value)
        elif kind is protocol.Kind.ROBOT_AUDIO:
            self.audio.append(value)
        elif kind is protocol.Kind.TEXT:
            self.texts.append(value)
        else:
            self.faces.append(value)

    @property
    def state_names(self) -> list[str]:
        return [state["state"] for state in self.states]


async def talk(url: str, messages: list[bytes], pace_s: float = 0.0, end: bool = True,
               linger_s: float = 10.0) -> Conversation:
    """Sends ``messages`` (``pace_s`` apart), then END; collects what comes back until the
    server closes the connection (or ``linger_s`` after the last message)."""
    got = Conversation()
    async with aiohttp.ClientSession() as client:
        async with client.ws_connect(url, max_msg_size=0) as ws:
            receiver = asyncio.create_task(_collect(ws, got))
            for message in messages:
                if ws.closed:
                    break
                await ws.send_bytes(message)
                if pace_s:
                    await asyncio.sleep(pace_s)
            if end and not ws.closed:
                await ws.send_bytes(bytes([protocol.Kind.END]))
            try:
                await asyncio.wait_for(asyncio.shield(receiver), linger_s)
            except asyncio.TimeoutError:
                await ws.close()
                await receiver
            got.close_code = ws.close_code
    return got


async def _collect(ws: aiohttp.ClientWebSocketResponse, got: Conversation) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            got.take(msg.data)


def speech_messages(seconds: float, rate: int = 24000, chunk_s: float = 0.08, seed: int = 0) -> list[bytes]:
    """Synthetic speech as AUDIO messages of ``chunk_s`` each."""
    from moshiface_ros.audio.synth import synthetic_speech

    samples = synthetic_speech(seconds, rate, seed=seed)
    size = int(rate * chunk_s)
    return [protocol.encode_audio(rate, samples[i:i + size]) for i in range(0, len(samples), size)]


def session_dirs(out: Path) -> list[Path]:
    return sorted(path for path in out.iterdir() if path.is_dir()) if out.exists() else []

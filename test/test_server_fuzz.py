"""Fuzzing the WebSocket protocol against a running ``moshiface serve``: random bytes and
valid messages cut short, each in the middle of a real conversation. The server must end
each broken session with a reason, never crash, and still hold a clean conversation after."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from moshiface_ros.server import protocol
from test_server_harness import serve_for_module, session_dirs, speech_messages, talk

CASES = 48


def fuzz_messages(seed: int) -> list[bytes]:
    """Half random byte strings (a random kind byte first, sometimes a real kind), half
    valid client messages truncated at a random point."""
    rng = np.random.default_rng(seed)
    found = []
    valid = [protocol.encode_audio(16000, rng.normal(0, 0.1, 1280)), bytes([protocol.Kind.END]),
             bytes([protocol.Kind.VIDEO]) + bytes(rng.integers(0, 256, 64, dtype=np.uint8))]
    for i in range(CASES):
        if i % 2:
            message = valid[int(rng.integers(len(valid)))]
            found.append(message[: int(rng.integers(0, len(message)))])
        else:
            body = bytes(rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8))
            kind = int(rng.choice([0x02, 0x03, 0x04, 0x10, int(rng.integers(0, 256))]))
            found.append(bytes([kind]) + body)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory.mktemp("fuzz"))


async def _fuzz(url: str, messages: list[bytes]) -> list:
    lead = speech_messages(0.24, rate=16000, seed=1)
    results = []
    for message in messages:
        results.append(await talk(url, lead + [message] + lead, end=True, linger_s=10))
    return results


def test_random_and_truncated_messages_never_crash_the_server(server):
    results = asyncio.run(_fuzz(server.ws_url, fuzz_messages(seed=7)))
    assert server.alive()
    for got in results:
        assert got.state_names[0] == "listening"
        assert got.state_names[-1] in ("ended", "error")  # every session was ended, one way or the other
        assert got.close_code is not None
    errors = [got for got in results if got.state_names[-1] == "error"]
    assert len(errors) >= CASES // 2  # most fuzz is refused, with its reason
    assert all(got.states[-1]["message"] and "\n" not in got.states[-1]["message"] for got in errors)
    for out in session_dirs(server.out):  # nothing half-written: every kept session was finished
        assert '"complete": true' in (out / "summary.json").read_text()
    clean = asyncio.run(talk(server.ws_url, speech_messages(0.8)))
    assert clean.state_names == ["listening", "ended"] and len(clean.audio) == 10
    log = server.logged()
    assert log.count("ended after") == CASES + 1


def test_a_burst_of_garbage_connections_at_once(server):
    async def burst():
        return await asyncio.gather(*(talk(server.ws_url, [bytes([i]) * 3], linger_s=10) for i in range(12)))

    results = asyncio.run(burst())
    busy = [got for got in results if got.state_names == ["busy"]]
    refused = [got for got in results if got.state_names[-1] == "error"]
    assert len(busy) + len(refused) == 12 and refused
    assert server.alive()

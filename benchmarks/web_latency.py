"""End-to-end latency of the browser page: a real ``moshiface serve`` (tiny model, CPU) and
headless Chromium whose fake microphone plays a speech WAV.

    python benchmarks/web_latency.py [--seconds 8] [--chromium /usr/bin/chromium]

Prints, from the page's own measurements on its audio clock:
  server round trip: a step's last microphone sample sent -> its robot chunk back;
  mic -> robot audio received: the first microphone sample of a step to that step's robot
      chunk arriving in the page (includes the 80 ms the step needs to fill);
  mic -> robot audio played: the same sample to the chunk's first sample leaving the
      page's jitter buffer (the presentation delay when the chunk came in time);
  face vs audio offset: when each face frame was shown minus when the audio of the same
      stamp was heard (positive: the face is late).
The page and the server share the machine, so a busy CPU shows up in these figures.
The browser test imports ``open_page`` and ``page_stats`` from here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# What headless Chromium needs on a machine with no GPU and no outside network, plus its
# fake media devices: the microphone plays ``wav`` in a loop, permission prompts say yes.
BASE_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
              "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")

STATS_JS = """() => {
  const s = window.moshiface.stats;
  return {...s, state: window.moshiface.state, frames: window.moshiface.frames.length};
}"""


@contextmanager
def open_page(url: str, wav: Path, profile: Path, chromium: str = CHROMIUM,
              problems: list[str] | None = None, camera: bool = True) -> Iterator[Any]:
    """A Playwright page on ``url`` (started, talking), the microphone fed from ``wav``
    (and Chromium's fake camera unless ``camera`` is false); console errors and page
    errors are appended to ``problems``."""
    from playwright.sync_api import sync_playwright

    flags = [*BASE_FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=chromium, headless=True, args=flags,
            viewport={"width": 560, "height": 720}, ignore_default_args=["--mute-audio"])
        try:
            page = context.new_page()
            if problems is not None:
                page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(url + ("?autostart=1" if camera else "?autostart=1&camera=0"))
            yield page
        finally:
            context.close()


def page_stats(page: Any) -> dict[str, Any]:
    return page.evaluate(STATS_JS)


def wait_for(page: Any, condition_js: str, timeout_s: float) -> None:
    page.wait_for_function(condition_js, timeout=timeout_s * 1000, polling=100)


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    array = np.asarray(values, np.float64)
    return (f"p50 {np.percentile(array, 50):.1f} p95 {np.percentile(array, 95):.1f} "
            f"max {array.max():.1f} ms (n={len(array)})")


def speech_wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    """A speech-like 16-bit WAV for the fake microphone."""
    import scipy.io.wavfile

    sys.path.insert(0, str(REPO))
    from moshiface_ros.audio.synth import synthetic_speech

    samples = synthetic_speech(seconds, rate, seed=3)
    scipy.io.wavfile.write(path, rate, (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    return path


@contextmanager
def serving(out: Path | None, log: Path) -> Iterator[str]:
    """``moshiface serve`` (tiny) on a free loopback port; yields its URL."""
    command = [sys.executable, "-m", "moshiface_ros.cli", "serve", "--port", "0", "--model", "tiny"]
    command += ["--out", str(out)] if out is not None else []
    env = dict(os.environ, NO_TORCH_COMPILE="1", PYTHONUNBUFFERED="1")
    with log.open("wb") as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO)
    try:
        line = process.stdout.readline()
        if not line.startswith("serving: "):
            raise SystemExit(f"moshiface serve did not start: {log.read_text()}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="how long to talk")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--camera", action="store_true",
                        help="also send Chromium's fake camera to the tracker (off: the voice and face alone)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wav = speech_wav(root / "speech.wav", max(args.seconds, 4.0))
        with serving(None, root / "serve.log") as url, \
                open_page(url, wav, root / "profile", args.chromium, camera=args.camera) as page:
            wait_for(page, "() => window.moshiface.stats.micChunks > 0", 60)
            time.sleep(args.seconds)
            stats = page_stats(page)
    print(f"web latency: tiny model, CPU; {stats['micChunks']} mic chunks sent, {stats['audioReceived']} robot "
          f"chunks received, {stats['audioPlayed']} played, {stats['audioLate']} late; "
          f"{stats['faceReceived']} face frames received, {stats['faceShown']} shown, "
          f"{stats['faceLate']} late (skipped)")
    print(f"server round trip: {percentiles(stats['roundTripMs'])}")
    print(f"mic -> robot audio received: {percentiles(stats['arrivalMs'])}")
    print(f"mic -> robot audio played: {percentiles(stats['playedMs'])}")
    print(f"face vs audio offset: {percentiles(stats['faceOffsetMs'])}")
    offsets = np.abs(np.asarray(stats["faceOffsetMs"] or [np.inf]))
    print(f"face frames within 20 ms of their audio: {np.mean(offsets <= 20.0) * 100:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

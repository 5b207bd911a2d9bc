"""The page in a real browser: headless Chromium (Debian's) with fake media devices whose
microphone plays a speech WAV, talking to a real ``moshiface serve``.

It checks the whole loop: the server hears the user (the session's bag holds non-silent
user audio), the page receives and schedules every robot audio chunk and face frame the
server sent, nothing is logged as an error, and the face drawn for a mouth-closed frame
and a mouth-open one differ where the mouth is. The screenshots stay in SHOTS to look at.
The page as the web_head node's display draws pushed face frames, and a head given by its
rig (blendshape weights as three.js morph targets) with its mouth shut and open.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.server.assets import THREE_MODULE
from test_server_harness import ServerProcess, session_dirs

REPO = Path(__file__).resolve().parent.parent
SHOTS = Path(tempfile.gettempdir()) / "web_shots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytest.importorskip("playwright.sync_api", reason="playwright (requirements/test.txt) is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (scripts/install_system_packages.sh installs it)",
                allow_module_level=True)
if not (REPO / "web" / THREE_MODULE).is_file():
    pytest.skip("three.js is not installed in web/node_modules (make install runs npm ci)", allow_module_level=True)


def _bench():
    spec = importlib.util.spec_from_file_location("web_latency", REPO / "benchmarks" / "web_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(path: Path) -> np.ndarray:
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(path))[..., :3]


def _talk(url: str, tmp: Path, problems: list[str]):
    bench = _bench()
    wav = bench.speech_wav(tmp / "speech.wav", 6.0)
    with bench.open_page(url, wav, tmp / "profile", CHROMIUM, problems) as page:
        bench.wait_for(page, "() => window.moshiface.stats.audioPlayed >= 20 && window.moshiface.frames.length >= 40",
                       120)
        page.evaluate("window.moshiface.stop()")
        bench.wait_for(page, "() => window.moshiface.state === 'ended'", 60)
        page.wait_for_timeout(500)
        stats = bench.page_stats(page)
        motion = np.asarray(page.evaluate("window.moshiface.mouthMotion()"))
        closed, opened = int(np.argmin(motion)), int(np.argmax(motion))
        SHOTS.mkdir(parents=True, exist_ok=True)
        boxes = []
        for name, index in (("mouth_closed", closed), ("mouth_open", opened)):
            boxes.append(page.evaluate(f"window.moshiface.freeze({index})"))
            page.wait_for_timeout(300)
            page.screenshot(path=str(SHOTS / f"{name}.png"))
    return stats, motion[[closed, opened]], boxes


def test_the_page_talks_plays_and_draws_the_face(tmp_path, read_session):
    server = ServerProcess(tmp_path / "out").start(tmp_path / "serve.log")
    problems: list[str] = []
    try:
        stats, (closed, opened), boxes = _talk(server.url, tmp_path, problems)
    finally:
        code, log = server.stop()
    assert code == 0 and "Traceback" not in log, log
    assert not problems and not stats["errors"], problems + stats["errors"]
    [out] = session_dirs(tmp_path / "out")
    session = read_session(out)
    user = np.concatenate([np.asarray(m.samples) for _, _, m in session["bag"]["/moshiface/user/audio"]])
    assert np.sqrt(np.mean(user ** 2)) > 0.01, "the server heard silence"
    assert session["summary"]["user_sample_rate"] == 24000 and session["summary"]["complete"]
    steps = session["summary"]["steps"]
    # every chunk and frame the server sent reached the page and was scheduled or shown
    assert stats["audioReceived"] == steps == len(session["bag"]["/moshiface/robot/audio"])
    assert stats["faceReceived"] == 2 * steps == len(session["bag"]["/moshiface/robot/face"])
    assert stats["audioPlayed"] + stats["audioLate"] >= steps - 10  # the rest were still queued at the end
    assert stats["audioPlayed"] >= 20 and stats["faceShown"] >= 20 and stats["micChunks"] >= steps - 1
    assert stats["texts"] == len(session["text"])
    assert opened > closed + 5e-4  # metres of mean mouth motion between the two frames
    # the fake camera's frames reached the tracker (it shows no face: tracked as absent)
    assert stats["videoFrames"] > 0 and session["bag"]["/moshiface/user/face"]
    _assert_mouths_differ(boxes)


def _assert_mouths_differ(boxes: list[dict], shots: tuple[str, str] = ("mouth_closed", "mouth_open")) -> None:
    closed, opened = _png(SHOTS / f"{shots[0]}.png"), _png(SHOTS / f"{shots[1]}.png")
    assert closed.shape == opened.shape
    box = boxes[1]
    x0, y0 = int(box["x"]) - 4, int(box["y"]) - 4
    x1, y1 = int(box["x"] + box["width"]) + 5, int(box["y"] + box["height"]) + 5
    assert x1 - x0 > 20 and y1 - y0 > 5, box
    mouth = np.abs(closed[y0:y1, x0:x1] - opened[y0:y1, x0:x1]).mean(axis=-1)
    assert (mouth > 0.02).mean() > 0.05, f"the mouth looks the same in both frames ({(mouth > 0.02).mean():.3f})"


def test_the_page_as_a_display_plays_and_draws_what_is_pushed(tmp_path):
    """The web_head node's page (no microphone): voice and face pushed on the robot's clock
    are played and drawn."""
    import threading
    import time

    from moshiface_ros.messages.types import AudioChunk, FaceFrame
    from moshiface_ros.server.assets import web_dir
    from moshiface_ros.server.display import FaceDisplay

    display = FaceDisplay(web_dir(), time.time_ns, port=0, vertices=5143)
    display.start()
    stop = threading.Event()

    def robot() -> None:  # 80 ms steps stamped now, as the conversation node publishes them
        step = 0
        while not stop.wait(0.08):
            stamp = time.time_ns()
            display.push_audio(AudioChunk(stamp, 24000, np.sin(np.arange(1920) * 0.05 * (1 + step % 5)) * 0.3))
            for k in range(2):
                display.push_face(FaceFrame(stamp + k * 40_000_000, np.full((5143, 3), 0.002 * (step % 2))))
            step += 1

    problems: list[str] = []
    pusher = threading.Thread(target=robot)
    try:
        bench = _bench()
        with bench.open_page(display.url, bench.speech_wav(tmp_path / "s.wav", 2.0), tmp_path / "profile",
                             CHROMIUM, problems, camera=False) as page:
            pusher.start()
            bench.wait_for(page, "() => window.moshiface.stats.audioPlayed >= 10 && "
                                 "window.moshiface.stats.faceShown >= 10", 60)
            stats = bench.page_stats(page)
    finally:
        stop.set()
        if pusher.is_alive():
            pusher.join()
        display.stop()
    assert not problems and not stats["errors"], problems + stats["errors"]
    assert stats["micChunks"] == 0 and stats["state"] in ("listening", "speaking")
    assert stats["audioLate"] <= 2 and max(np.abs(stats["faceOffsetMs"])) < 60


def _push_weights(display, jaw_names: list[str], stop) -> None:
    """80 ms steps stamped now: a voice chunk and two frames of weights, the jaw shut in
    the first and open in the second (as a retarget node publishes them, by name)."""
    import time

    from moshiface_ros.messages.types import AudioChunk, BlendshapeWeights

    while not stop.wait(0.08):
        stamp = time.time_ns()
        display.push_audio(AudioChunk(stamp, 24000, np.sin(np.arange(1920) * 0.07) * 0.3))
        for k, jaw in enumerate((0.0, 1.0)):
            display.push_blendshapes(BlendshapeWeights(stamp + k * 40_000_000, jaw_names, [jaw, 0.1]))


def test_the_page_as_a_display_draws_a_head_from_its_blendshapes(tmp_path):
    """web_head with source blendshapes: the shipped ARKit virtual head's rig becomes morph
    targets; a frame at jawOpen 0 and one at jawOpen 1 look different at the mouth."""
    import threading
    import time

    from moshiface_ros.server.assets import web_dir
    from moshiface_ros.server.display import FaceDisplay
    from moshiface_ros.server.mesh import rig_head

    head = rig_head(REPO / "config" / "heads" / "arkit_virtual_head.yaml", 5143)
    display = FaceDisplay(web_dir(), time.time_ns, port=0, vertices=5143, morphs=head)
    display.start()
    stop, problems = threading.Event(), []
    pusher = threading.Thread(target=_push_weights, args=(display, ["jawOpen", "eyeBlinkLeft"], stop))
    jaw = head.names.index("jawOpen")
    try:
        bench = _bench()
        with bench.open_page(display.url, bench.speech_wav(tmp_path / "s.wav", 2.0), tmp_path / "profile",
                             CHROMIUM, problems, camera=False) as page:
            pusher.start()
            bench.wait_for(page, "() => window.moshiface.stats.faceShown >= 10 && "
                                 "window.moshiface.frames.length >= 20", 60)
            stats = bench.page_stats(page)
            jaws = page.evaluate(f"window.moshiface.frames.map((f) => f.weights[{jaw}])")
            motion = page.evaluate("window.moshiface.mouthMotion()")
            closed, opened = jaws.index(0.0), jaws.index(1.0)
            SHOTS.mkdir(parents=True, exist_ok=True)
            boxes = []
            for name, index in (("bs_closed", closed), ("bs_open", opened)):
                boxes.append(page.evaluate(f"window.moshiface.freeze({index})"))
                page.wait_for_timeout(300)
                page.screenshot(path=str(SHOTS / f"{name}.png"))
            morphs = page.evaluate("window.moshiface.view.object.morphTargetInfluences.length")
    finally:
        stop.set()
        if pusher.is_alive():
            pusher.join()
        display.stop()
    assert not problems and not stats["errors"], problems + stats["errors"]
    assert morphs == 52 and display.bad_blendshapes == 0
    assert set(jaws) == {0.0, 1.0} and max(np.abs(stats["faceOffsetMs"])) < 60
    assert motion[opened] > motion[closed] + 5e-4  # metres the rig's jawOpen moves the lips
    _assert_mouths_differ(boxes, ("bs_closed", "bs_open"))

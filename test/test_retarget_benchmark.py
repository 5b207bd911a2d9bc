"""benchmarks/retarget.py runs with tiny sizes and prints every figure (timings are
never asserted)."""

import re
import subprocess
import sys

import pytest
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_retarget_benchmark_prints_every_figure():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "retarget.py"), "--frames", "5"],
                            capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    figure = re.compile(r"^[^:]+(: [^:]+)?: p50 [\d.]+ p95 [\d.]+ max [\d.]+ ms/frame CPU \(n=\d+\)$")
    for name in ("solve 52 blendshapes x 5143 vertices (1 core)", "features: rigid fit + 12 features",
                 "step: ARKit virtual head (rig solve)", "step: servo head (features, 12 actuators)",
                 "Live Link packet encode"):
        matching = [line for line in lines if line.startswith(name)]
        assert len(matching) == 1 and figure.match(matching[0]), (name, lines)


def test_presenter_says_when_a_send_timer_may_sleep():
    """What lets the retarget node's 250 Hz send timer sleep when nothing arrives (the idle
    figure of benchmarks/retarget_idle.py): pending() counts what is held for later."""
    import numpy as np

    from moshiface_ros.messages.types import FaceFrame
    from moshiface_ros.retarget.arkit import ARKIT_52
    from moshiface_ros.retarget.presenter import HeadPresenter
    from moshiface_ros.retarget.retargeter import HeadRetargeter
    from moshiface_ros.retarget.synthetic import synthetic_face

    servo = REPO / "config" / "heads" / "servo_head.yaml"
    assert not HeadPresenter(HeadRetargeter.from_file(servo)).sends_later  # trajectories go out at once
    head = HeadRetargeter.from_file(servo, presentation_delay_ms=300.0)
    presenter = HeadPresenter(head, command_mode="forward", livelink=True)
    assert presenter.sends_later and presenter.pending() == 0
    face, weights, t0 = synthetic_face(5143), np.zeros(52), 10**18
    weights[ARKIT_52.index("jawOpen")] = 0.5
    presenter.accept(head.step_face(FaceFrame(t0, face.rig.synthesise(weights))))
    assert presenter.pending() > 0
    presenter.due(t0 + 10**9)  # everything is due a second later
    assert presenter.pending() == 0


def test_retarget_idle_benchmark_prints_its_figures():
    import os

    if os.environ.get("MOSHIFACE_REQUIRE_ROS") != "1":
        pytest.skip("runs the retarget node under real ROS 2 (MOSHIFACE_REQUIRE_ROS=1)")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "retarget_idle.py"), "--seconds", "1"],
                            capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    figure = re.compile(r"^retarget node idle, [^:]+: [\d.]+ % of a core over 1 s \(target <= 1 %\)$")
    assert len(lines) == 2 and all(figure.match(line) for line in lines), lines

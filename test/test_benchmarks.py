"""The benchmark scripts run and print their figures (their timings are never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_step_latency_prints_every_figure():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "step_latency.py"), "--steps", "5", "--no-gpu"],
        capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    figure = re.compile(r"^[^:]+(: [^:]+)?: p50 [\d.]+ p95 [\d.]+ max [\d.]+ ms/step \(n=5\)$")
    for name in ("cpu tiny LM step", "cpu tiny whole step", "cpu tiny audio-only Moshi LM step",
                 "cpu tiny Moshi-Face LM step", "overhead: resample",
                 "overhead: convert + serialise", "overhead: write robot.wav",
                 "overhead outside the model, total"):
        matching = [line for line in lines if line.startswith(name)]
        assert len(matching) == 1 and figure.match(matching[0]), (name, lines)
    ratio = [line for line in lines if line.startswith("cpu tiny face path: ")]
    assert len(ratio) == 1 and re.search(r"ratio \d+\.\d{3} \(\+-?[\d.]+ %", ratio[0]), lines

"""benchmarks/retarget.py runs with tiny sizes and prints every figure (timings are
never asserted)."""

import re
import subprocess
import sys
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

"""benchmarks/batching.py runs with tiny sizes and prints its curve (timings are never asserted)."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_batching_benchmark_prints_the_curve():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "batching.py"), "--steps", "2",
                             "--max-batch", "8"], capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    figure = re.compile(r"^batch B=(\d+): tiny Moshi-Face whole step \(1 thread, CPU time\): "
                        r"p50 [\d.]+ p95 [\d.]+ max [\d.]+ ms/step \(n=2\)$")
    assert [int(m.group(1)) for m in map(figure.match, lines) if m] == list(range(1, 9)), lines
    per_session = [line for line in lines if re.match(r"^batch B=\d+: [\d.]+ ms per session, [\d.]+x the single step$", line)]
    assert len(per_session) == 8, lines
    assert any(re.match(r"^batching: B=8 in one step costs [\d.]+x the single-session step \(target <= 3x\)$", line)
               for line in lines), lines
    codec = re.compile(r"^shared face codec B=(\d+): [\d.]+ ms per robot, [\d.]+x one robot's$")
    assert [int(m.group(1)) for m in map(codec.match, lines) if m] == [1, 2, 4, 8], lines

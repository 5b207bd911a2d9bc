"""The soak benchmark's short run: it drives the runner's real session and prints the
figures the one-hour run is judged by (RSS, step-time percentiles per block, counts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_soak_short_run_prints_its_figures_and_counts_equal_steps(tmp_path):
    env = dict(os.environ, NO_TORCH_COMPILE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--steps", "260",
                             "--block", "130", "--out", str(tmp_path / "soak")],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^rss at start \(after 200 steps\): [\d.]+ MB$", out, re.M), out
    assert re.search(r"^rss at end: [\d.]+ MB; growth [-+][\d.]+ MB$", out, re.M), out
    blocks = re.findall(r"^step time, steps (\d+)-(\d+): p50 [\d.]+ p95 [\d.]+ max [\d.]+ ms/step \(n=(\d+)\)$",
                        out, re.M)
    assert blocks == [("0", "129", "130"), ("130", "259", "130")], out
    counts = dict(re.findall(r"(/moshiface/\S+) (\d+)", out.split("messages: ")[1].splitlines()[0]))
    for topic in ("user/audio", "robot/audio", "user/face_tokens"):
        assert counts[f"/moshiface/{topic}"] == "260", counts
    assert int(counts["/moshiface/robot/face"]) == 2 * 260 and int(counts["/moshiface/user/face"]) >= 2 * 260
    assert "bag checkpoints: 20" in out  # 13 steps (1.04 s) per checkpoint
    assert (tmp_path / "soak" / "bag" / "metadata.yaml").exists()

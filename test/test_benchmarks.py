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


def test_gpu_suite_runs_on_cpu_and_prints_its_table():
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--device", "cpu", "--steps", "4",
         "--budget-s", "60"],
        capture_output=True, text=True, timeout=300, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpu_suite: ran on cpu, tiny random model"), lines
    figure = re.compile(r"^[^:]+: p50 [\d.]+ p95 [\d.]+ max [\d.]+ ms/step \(n=4\)$")
    for graphs in ("with CUDA graphs", "without CUDA graphs"):
        for name in ("audio-only LM step", "audio-only whole step", "Moshi-Face LM step", "Moshi-Face whole step"):
            matching = [line for line in lines if line.startswith(f"{name}, {graphs}")]
            assert len(matching) == 1 and figure.match(matching[0]), (name, graphs, lines)
        overhead = [line for line in lines if line.startswith(f"face path overhead, whole step, {graphs}")]
        assert len(overhead) == 1 and re.search(r": [+-][\d.]+ % \(p50", overhead[0]), lines
    batch = re.compile(r"^batch B=(\d+): p50 [\d.]+ p95 [\d.]+ ms/step, [\d.]+ ms per session, "
                       r"real-time margin -?[\d.]+ ms \([\d.]+x\)")
    sizes = [int(m.group(1)) for m in map(batch.match, lines) if m]
    assert sizes[:6] == [1, 2, 4, 8, 16, 32], lines
    assert sum(line.startswith("largest batch with p95 < 80 ms: B=") for line in lines) == 1, lines
    for name in ("cpu face codec streaming encode + decode", "cpu Mimi encode of one step",
                 "cpu Mimi decode of one step"):
        assert sum(bool(figure.match(line)) and line.startswith(name) for line in lines) == 1, (name, lines)
    assert lines[-1].startswith("gpu_suite: done in "), lines

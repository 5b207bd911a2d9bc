"""``moshiface demo --sessions N``: the runner's benchmark mode plays N inputs at once."""

import json
import subprocess
import sys


def demo(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "moshiface_ros.cli", "demo", "--model", "tiny", "--out",
                           str(tmp_path / "out"), *args], capture_output=True, text=True, timeout=300)


def test_demo_plays_several_sessions_at_once(tmp_path):
    result = demo(tmp_path, "--sessions", "3", "--seconds", "0.4")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "fleet.json").read_text())
    assert summary["sessions"] == 3 and summary["steps"] == 5 and summary["shared_face_codec"] is True
    assert 0 < summary["step_ms"]["p50"] <= summary["step_ms"]["max"]
    assert summary["per_session_ms"] == round(summary["per_session_ms"], 3) > 0
    assert summary["real_time_factor"] > 0
    assert "sessions:    3 at once, 5 steps" in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fleet.json"]  # nothing else is written


def test_bad_session_counts_are_one_line(tmp_path):
    for value in ("0", "-2", "1000"):
        result = demo(tmp_path, "--sessions", value, "--seconds", "0.4")
        assert result.returncode != 0
        assert f"--sessions must be between 1 and 256, got {value}" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "fleet.json").exists()

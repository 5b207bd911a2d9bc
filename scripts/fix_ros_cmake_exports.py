#!/usr/bin/env python3
"""Points the ROS 2 wheels' exported CMake targets at this venv's Python and numpy headers.

    VENV/bin/python scripts/fix_ros_cmake_exports.py VENV

The ros-jazzy-* wheels export targets (``*__rosidl_generator_pyExport.cmake``) whose include
directories name the machine the wheels were built on (``/opt/python/cp311-cp311/...``), and
CMake refuses to use a target that names a missing directory. This rewrites them to the
headers of the Python that runs this script, which must be the venv's.

Why a stamp: pip restores the build machine's paths whenever it reinstalls a wheel, and a
numpy upgrade moves numpy's headers (``numpy/core`` -> ``numpy/_core``), so the fix must be
re-applied after either. ``make`` runs this every time; it rewrites only files that still
name the build machine or the paths it wrote last time (recorded in ``VENV/.ros-cmake-exports``)
and otherwise returns at once.
"""

from __future__ import annotations

import json
import re
import sys
import sysconfig
from pathlib import Path

from moshiface_ros.fileio import atomic_write_text

BUILD_MACHINE = re.compile(
    r"/opt/python/cp3\d+-cp3\d+/"
    r"(?:include/python3\.\d+|lib/python3\.\d+/site-packages/numpy/_?core/include)"
)
STAMP_NAME = ".ros-cmake-exports"


def current_paths() -> dict[str, str]:
    """The header directories CMake must see: this interpreter's and its numpy's."""
    import numpy

    return {"python": sysconfig.get_paths()["include"], "numpy": numpy.get_include()}


def rewrite(text: str, new: dict[str, str], old: dict[str, str]) -> str:
    """Replaces build-machine paths and the paths a previous run wrote with ``new``."""

    def replace(match: re.Match[str]) -> str:
        return new["numpy"] if "numpy" in match.group(0) else new["python"]

    text = BUILD_MACHINE.sub(replace, text)
    for key, path in old.items():
        if path and path != new[key]:
            text = text.replace(path, new[key])
    return text


def fix(venv: Path) -> int:
    """Rewrites every exported CMake file under ``venv/share`` that needs it; returns how many."""
    stamp = venv / STAMP_NAME
    old = json.loads(stamp.read_text()) if stamp.is_file() else {}
    new = current_paths()
    markers = ["/opt/python/"] + [p for k, p in old.items() if p and p != new.get(k)]
    changed = 0
    for path in sorted((venv / "share").rglob("*.cmake")):
        text = path.read_text(encoding="utf-8")
        if not any(marker in text for marker in markers):
            continue
        fixed = rewrite(text, new, old)
        if fixed != text:
            atomic_write_text(path, fixed)
            changed += 1
    if old != new:
        atomic_write_text(stamp, json.dumps(new, sort_keys=True) + "\n")
    return changed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "share").is_dir():
        print("usage: fix_ros_cmake_exports.py VENV  (VENV/share must exist: install the ROS wheels first)",
              file=sys.stderr)
        return 2
    changed = fix(Path(argv[0]))
    if changed:
        print(f"fix_ros_cmake_exports: {changed} CMake export file(s) now use this venv's Python and numpy headers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Helpers for tests that run this package under real ROS 2: nodes, `ros2 launch` and the
`ros2` tools as child processes, with the environment `make test` set up, and their output.

`make test` builds the package into an install prefix and runs pytest through
scripts/with_ros.sh, which sources PREFIX/setup.sh (AMENT_PREFIX_PATH, PYTHONPATH,
LD_LIBRARY_PATH, RMW_IMPLEMENTATION, the loopback-only Fast DDS profile) and, as root, enters
a private network namespace. Children inherit all of it; this module adds only what makes
their output readable (unbuffered, uncoloured) and never changes where DDS talks.

What is missing decides between skip and failure: without ROS a ROS test skips, saying what
is missing, unless ``MOSHIFACE_REQUIRE_ROS=1`` (set by `make test` once it installed ROS),
where it fails instead, since then a skip would hide a broken build.

Every process is started in its own session (so a test can signal the whole tree and
nothing outlives the test) and writes into a log file, never into a pipe that could fill.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pytest

PACKAGE = "moshiface_ros"
TRACEBACK = "Traceback (most recent call last)"
# What a process must not print on a clean shutdown: a Python traceback, or a C++
# extension's leak report (nanobind prints these when the interpreter dies with objects alive).
UNCLEAN = re.compile(r"Traceback \(most recent call last\)|leaked \d+ (?:instances|types|functions)"
                     r"|terminate called|Segmentation fault|core dumped")
LAUNCH_TOOLS_HINT = ("run `make test ROS_TOOLS=<directory with install-launch-tools.sh>` "
                     "(CI: ../shared/ros), or source a ROS 2 installation with launch_ros and ros2cli")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a shell's `cmd &`: children would ignore it too
    signal.signal(signal.SIGINT, signal.default_int_handler)


# ------------------------------------------------------------------ what is available


def ros_required() -> bool:
    """True when the ROS tests must run (``make test`` installed ROS): missing ROS is a failure."""
    return os.environ.get("MOSHIFACE_REQUIRE_ROS") == "1"


def missing_ros() -> str | None:
    """Why rclpy and this package's generated messages cannot be used here, or None."""
    try:
        importlib.import_module("rclpy")
    except ImportError as exc:
        return f"rclpy does not import ({exc})"
    try:
        importlib.import_module(f"{PACKAGE}.msg")
    except ImportError as exc:
        package = importlib.import_module(PACKAGE)
        return (f"{PACKAGE}.msg does not import ({exc}); {PACKAGE} comes from "
                f"{Path(package.__file__).parent}, which has no generated msg/ (build with "
                "scripts/build_ros.sh and put its site-packages first on PYTHONPATH; run `pytest`, "
                "not `python -m pytest`)")
    return None


def require_ros_module() -> None:
    """At the top of a ROS test module: skip it without ROS, or fail it at once under
    ``MOSHIFACE_REQUIRE_ROS=1`` (``make test``), where missing ROS is a broken set-up."""
    problem = missing_ros()
    if problem is None:
        return
    if ros_required():
        pytest.fail(f"MOSHIFACE_REQUIRE_ROS=1 but {problem}", pytrace=False)
    pytest.skip(problem, allow_module_level=True)


def missing_launch_tools() -> str | None:
    """Why `ros2 launch` and the `ros2` tools cannot be used here, or None."""
    if shutil.which("ros2") is None:
        return f"the `ros2` command is not installed: {LAUNCH_TOOLS_HINT}"
    for module in ("launch_ros.actions", "ros2launch", "ros2topic", "ros2param", "composition_interfaces.srv"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return f"{module} does not import ({exc}): {LAUNCH_TOOLS_HINT}"
    return None


def require(problem: str | None) -> None:
    """Skips (or, under ``MOSHIFACE_REQUIRE_ROS=1``, fails) the test when ``problem`` is set."""
    if problem is None:
        return
    if ros_required():
        pytest.fail(f"MOSHIFACE_REQUIRE_ROS=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def require_ros() -> None:
    require(missing_ros())


def require_launch_tools() -> None:
    """Launch tests need ROS and the launch tools; without the tools they skip even under
    ``make test`` (ROS_TOOLS is optional there), saying what to install."""
    require_ros()
    problem = missing_launch_tools()
    if problem is not None:
        pytest.skip(problem)


# ------------------------------------------------------------------ processes


def child_env(extra: dict[str, str] | None = None, log_dir: Path | None = None) -> dict[str, str]:
    """The environment of a ROS child: this one, with unbuffered, uncoloured logging (into
    ``log_dir``/ros, not the user's ~/.ros, when given)."""
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0", RCUTILS_COLORIZED_OUTPUT="0")
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir / "ros")
    env.update(extra or {})
    return env


class RosProcess:
    """A child process (a node, `ros2 launch`, a `ros2` tool) whose output goes to ``log``."""

    def __init__(self, cmd: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.cmd = [str(c) for c in cmd]
        self.log = Path(log)
        self.started = time.monotonic()
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=child_env(env, self.log.parent),
                                            cwd=cwd, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> float:
        """Waits until ``pattern`` (a regex) occurs ``count`` times in the output; returns the
        seconds since start. Fails with the output when the process ends or time runs out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            if len(regex.findall(self.text())) >= count:
                return time.monotonic() - self.started
            if not self.alive():
                pytest.fail(f"{self.cmd[:4]} exited ({self.process.returncode}) before printing "
                            f"{pattern!r}:\n{self.text()[-6000:]}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.cmd[:4]} did not print {pattern!r} within {timeout:g} s:\n"
                            f"{self.text()[-6000:]}", pytrace=False)
            time.sleep(0.1)

    def wait_for_all(self, patterns: dict[str, str], timeout: float) -> dict[str, float]:
        """Waits for every pattern at once; returns, per key, the seconds since start at which
        its pattern was first seen (to within 0.1 s): e.g. each node's start-up time."""
        seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while len(seen) < len(patterns):
            text = self.text()
            for key, pattern in patterns.items():
                if key not in seen and re.search(pattern, text):
                    seen[key] = time.monotonic() - self.started
            missing = [patterns[k] for k in patterns if k not in seen]
            if missing and (not self.alive() or time.monotonic() > deadline):
                pytest.fail(f"{self.cmd[:4]} ({'exited' if not self.alive() else 'timed out'}) never printed "
                            f"{missing}:\n{self.text()[-6000:]}", pytrace=False)
            time.sleep(0.1)
        return seen

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C as a terminal sends it to the process alone; waits for the exit status."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.cmd[:4]} still running {timeout:g} s after SIGINT:\n{self.text()[-6000:]}",
                        pytrace=False)

    def kill(self) -> None:
        """Ends the whole process group at once (cleanup; not a clean shutdown)."""
        if self.process.poll() is None or _group_alive(self.process.pid):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> RosProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_left(process: RosProcess, timeout: float = 5.0) -> bool:
    """True when every process of ``process``'s session has exited within ``timeout``."""
    deadline = time.monotonic() + timeout
    while _group_alive(process.process.pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def assert_clean_output(text: str, what: str) -> None:
    """No traceback, leak report or crash in a process's output."""
    found = UNCLEAN.search(text)
    assert found is None, f"{what} printed {found.group(0)!r}:\n{text[-6000:]}"


# ------------------------------------------------------------------ starting things


def share_dir() -> Path:
    """The package's installed share directory (launch files, config, heads)."""
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE))


def executable(name: str) -> Path:
    """An installed node launcher (PREFIX/lib/moshiface_ros/NAME)."""
    from ament_index_python.packages import get_package_prefix

    path = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / name
    assert path.is_file(), f"{name} is not installed in {path.parent}"
    return path


def start_node(name: str, log_dir: Path, *ros_args: str, params_file: Path | None = None) -> RosProcess:
    """Starts an installed node as `ros2 run` would (its launcher, with --ros-args), without
    needing the ros2 tools. ``ros_args``: e.g. ``"-p", "device:=cpu"``."""
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    cmd = [sys.executable, str(executable(name)), *args, *ros_args]
    return RosProcess(cmd, log_dir / f"{name}.log")


def start_launch(launch_file: str, log_dir: Path, *arguments: str,
                 env: dict[str, str] | None = None) -> RosProcess:
    """`ros2 launch moshiface_ros LAUNCH_FILE name:=value ...`, run in ``log_dir`` (where
    relative paths land) with its log there."""
    cmd = ["ros2", "launch", PACKAGE, launch_file, *arguments]
    return RosProcess(cmd, log_dir / f"{launch_file}.log", env=env, cwd=log_dir)


def ros2(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a `ros2` command to its end; stdout and stderr in the result (text)."""
    return subprocess.run(["ros2", *args], capture_output=True, text=True, timeout=timeout,
                          env=child_env(env), stdin=subprocess.DEVNULL)


def topic_list() -> set[str]:
    """`ros2 topic list` (no daemon: a daemon would outlive the test)."""
    result = ros2("topic", "list", "--no-daemon", "--spin-time", "2")
    assert result.returncode == 0, result.stderr
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def wait_until(condition: Callable[[], object], timeout: float, what: str, period: float = 0.5) -> object:
    """Polls ``condition`` until it returns something true; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(period)


def wait_for_topics(topics: Iterable[str], timeout: float) -> set[str]:
    """Waits until every one of ``topics`` shows in `ros2 topic list`; returns the list."""
    wanted = set(topics)
    seen: set[str] = set()

    def all_there() -> bool:
        seen.clear()
        seen.update(topic_list())
        return wanted <= seen

    deadline = time.monotonic() + timeout
    while not all_there():
        if time.monotonic() > deadline:
            pytest.fail(f"topics missing after {timeout:g} s: {sorted(wanted - seen)} (seen: {sorted(seen)})",
                        pytrace=False)
        time.sleep(0.5)
    return set(seen)


def write_face_video(path: Path, seconds: float = 4.0, fps: float = 25.0) -> Path:
    """A video of a real face (scikit-image's astronaut photo) turning gently, as a camera
    would see a user; MJPG in an .avi, which OpenCV reads everywhere."""
    import cv2
    import numpy as np
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    height, width = face.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    try:
        for k in range(int(seconds * fps)):
            turn = cv2.getRotationMatrix2D((width * 0.45, height * 0.35), 6.0 * np.sin(k / 6.0), 1.0)
            writer.write(cv2.warpAffine(face, turn, (width, height)))
    finally:
        writer.release()
    assert path.stat().st_size > 0, f"OpenCV wrote no video to {path}"
    return path

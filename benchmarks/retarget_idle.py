#!/usr/bin/env python3
"""CPU cost of an idle retarget node under real ROS 2: the node process's CPU time over a
window in which nothing arrives, one line per configuration.

The node's send timer (250 Hz) runs only while a forward command or a Live Link packet is
held for later; with nothing held it sleeps. Target: <= 1 % of a core when idle.
Needs rclpy and the package's messages (run it through ``scripts/with_ros.sh``).

    python benchmarks/retarget_idle.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CONFIGURATIONS = {
    "trajectory commands (default)": [],
    "forward commands + Live Link": ["-p", "command_mode:=forward", "-p", "livelink_enabled:=true",
                                     "-p", "livelink_host:=127.0.0.1"],
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_executable() -> str:
    """The installed node (the source tree has no generated messages)."""
    from ament_index_python.packages import get_package_prefix

    return os.path.join(get_package_prefix("moshiface_ros"), "lib", "moshiface_ros", "retarget")


def idle_share(arguments: list[str], seconds: float, settle_s: float = 3.0) -> float:
    command = [sys.executable, node_executable(), "--ros-args", *arguments]
    node = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(settle_s)  # start-up (imports, head file, DDS discovery) is not idle time
        if node.poll() is not None:
            raise SystemExit(f"the retarget node exited at start (code {node.returncode})")
        start_cpu, start = cpu_seconds(node.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(node.pid) - start_cpu) / (time.monotonic() - start)
    finally:
        node.terminate()
        node.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    try:
        import rclpy  # noqa: F401
    except ImportError:
        print("retarget idle: skipped, needs ROS 2 (rclpy; run through scripts/with_ros.sh)")
        return 0
    for name, arguments in CONFIGURATIONS.items():
        share = idle_share(arguments, args.seconds)
        print(f"retarget node idle, {name}: {share * 100:.2f} % of a core over {args.seconds:g} s (target <= 1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

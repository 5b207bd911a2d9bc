"""The life of every node's process: init, build, spin, shut down, in one place.

A node that cannot start (a bad parameter, a missing model) prints one error line and
the process exits with status 1; Ctrl-C and a launch shutdown end it with status 0.
"""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from moshiface_ros.errors import MoshifaceError


def run_node(make_node: Callable[[], Node], name: str, args=None) -> int:
    rclpy.init(args=args)
    try:
        node = make_node()
    except MoshifaceError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


class WarnOnce:
    """A running node survives bad input and says so once per kind of problem (``key``),
    not once per message: a broken publisher at 25 Hz must not flood the log."""

    def __init__(self, logger) -> None:
        self._logger = logger
        self._said: set[str] = set()

    def __call__(self, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._logger.warning(f"{text} (reported once)")

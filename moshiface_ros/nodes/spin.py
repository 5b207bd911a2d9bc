"""The life of every node's process: init, build, spin, shut down, in one place.

A node that cannot start (a bad parameter, a missing model) logs one error line under its
own name and the process exits with status 1; Ctrl-C and a launch shutdown end it with
status 0 and no traceback. Under ``ros2 launch`` a node receives SIGINT twice (the
terminal's and launch's own), the second while it is shutting down: once shutdown has
begun, further SIGINT/SIGTERM are ignored, and releasing what a node holds is idempotent
(``destroy_node`` may be called again by rclpy or a test).
"""

from __future__ import annotations

import gc
import signal
from typing import Any, Callable

import rclpy
import rclpy.logging
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from moshiface_ros.errors import MoshifaceError

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _SignalGate:
    """The process's SIGINT/SIGTERM handler: the first one interrupts the spin (as
    KeyboardInterrupt), every later one and any during shutdown does nothing. rclpy's own
    handler (installed by ``rclpy.init``) shuts the context down and then calls this one."""

    def __init__(self) -> None:
        self.closing = False

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.closing:
            self.closing = True
            raise KeyboardInterrupt

    def install(self) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, self)

    def close(self) -> None:
        """From now on the signals are ignored by the kernel: Python resets its own handlers
        to the default (death by signal) while the interpreter exits, which is when a
        launch's second SIGINT tends to arrive."""
        self.closing = True
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def run_node(make_node: Callable[[], Node], name: str, args=None) -> int:
    gate = _SignalGate()
    gate.install()
    rclpy.init(args=args)
    node: Node | None = None
    status = 0
    try:
        node = make_node()
        rclpy.spin(node)
    except MoshifaceError as exc:
        rclpy.logging.get_logger(name).error(str(exc))
        status = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        gate.close()
        _shut_down(node)
        gate.close()  # again: rclpy.try_shutdown restored the handler it had found
    return status


def _shut_down(node: Node | None) -> None:
    """Release the node, then ROS."""
    try:
        if node is not None:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
        del node
        gc.collect()  # native objects (resamplers, streams) go now, not at interpreter exit


class WarnOnce:
    """A running node survives bad input and says so once per kind of problem (``key``),
    not once per message: a broken publisher at 25 Hz must not flood the log."""

    def __init__(self, logger) -> None:
        self._logger = logger
        self.counts: dict[str, int] = {}  # key -> problems seen (each said once)

    def __call__(self, key: str, text: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] == 1:
            self._logger.warning(f"{text} (reported once)")


class Releasable:
    """Mixin for nodes: ``release()`` frees what the node holds (threads, devices, models)
    exactly once, before rclpy destroys the node; calling ``destroy_node`` twice is safe."""

    _released = False

    def release(self) -> None:
        """Override: stop threads and close devices and models."""

    def destroy_node(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            self.release()
        finally:
            super().destroy_node()

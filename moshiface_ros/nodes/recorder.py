"""recorder: a session's topics into a rosbag2 (MCAP, bag version 8) where `ros2 bag` is missing.

`record:=true` in the launch files runs `ros2 bag record -s mcap` when rosbag2 is installed,
and this node otherwise. It writes through the same code as `moshiface run`
(``recording.bag.SessionBag``), so a live session's bag and an offline one carry the same
types and definitions and read back with the same tools (rosbags' ``AnyReader``, `ros2 bag`).

Which topics: ``RECORDED_TOPICS``, every topic the package's nodes publish, except the rviz
marker (the robot's face again, decimated for display). A topic is subscribed once a
publisher for it appears, with that publisher's type and a QoS it can deliver to, as
`ros2 bag record` does; each message is written at its header stamp (the session's one
clock, as the runner writes), or at its arrival when it has no header.

    ros2 run moshiface_ros recorder --ros-args -p bag_dir:=/data/session1
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from moshiface_ros.nodes.params import NodeParameters
from moshiface_ros.nodes.paramspec import ParameterError, param
from moshiface_ros.nodes.spin import Releasable, WarnOnce, run_node
from moshiface_ros.recording.bag import SessionBag
from moshiface_ros.topics import (DIAGNOSTICS, ROBOT_ACTUATORS, ROBOT_AUDIO, ROBOT_BLENDSHAPES, ROBOT_FACE,
                                  ROBOT_FACE_TOKENS, ROBOT_TEXT, USER_AUDIO, USER_FACE, USER_FACE_BOX,
                                  USER_FACE_TOKENS)

# Every topic the nodes publish: what `moshiface run` records, and what only a live robot has
# (the face box, the actuator commands, the diagnostics).
RECORDED_TOPICS = (USER_AUDIO, USER_FACE, USER_FACE_BOX, USER_FACE_TOKENS, ROBOT_AUDIO, ROBOT_TEXT,
                   ROBOT_FACE, ROBOT_FACE_TOKENS, ROBOT_BLENDSHAPES, ROBOT_ACTUATORS, DIAGNOSTICS)


@dataclass(frozen=True)
class RecorderSettings:
    bag_dir: str = param("", "directory of the new bag; '' = rosbag2_<date>-<time> in the current directory "
                             "(as ros2 bag names it)")
    topics: str = param(" ".join(RECORDED_TOPICS), "topics to record, separated by spaces")
    discovery_period_s: float = param(0.5, "how often (s) new publishers of the recorded topics are looked for",
                                      low=0.05, high=10.0)

    def check(self) -> None:
        names = self.topics.split()
        if not names or any(not name.startswith("/") for name in names):
            raise ParameterError("topics", f"absolute topic names separated by spaces, got {self.topics!r}")
        if self.bag_dir.strip() and Path(self.bag_dir).exists():
            raise ParameterError("bag_dir", f"{self.bag_dir} exists already: give a new directory")


def default_bag_dir(now: float | None = None) -> Path:
    """ros2 bag's default name for a bag started ``now``."""
    return Path(time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S", time.localtime(now)))


def message_class(type_name: str) -> type:
    """The rclpy class of ``pkg/msg/Type``."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def stamp_ns(message: Any) -> int | None:
    """A message's header stamp in ns, or None when it has no (set) header."""
    header = getattr(message, "header", None)
    if header is None:
        return None
    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    return stamp or None


def qos_for(publishers: list[Any]) -> QoSProfile:
    """A subscription QoS every one of ``publishers`` delivers to: reliable only when all
    are, transient-local only when all are (else it would match none of the others)."""
    reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
    latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
    return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class RecorderNode(Releasable, Node):
    def __init__(self, **node_options) -> None:
        super().__init__("recorder", **node_options)
        s: RecorderSettings = NodeParameters(self, RecorderSettings).settings
        self._wanted = tuple(dict.fromkeys(s.topics.split()))
        self.path = Path(s.bag_dir) if s.bag_dir.strip() else default_bag_dir()
        try:
            self._bag: SessionBag | None = SessionBag(self.path)
        except Exception as exc:  # rosbags refuses the directory (exists, not writable)
            raise ParameterError("bag_dir", f"cannot write a bag in {self.path}: {exc}") from None
        self._warn_once = WarnOnce(self.get_logger())
        self._recording: dict[str, Any] = {}
        self.create_timer(s.discovery_period_s, self._discover)
        self.get_logger().info(f"ready: recording {len(self._wanted)} topics into {self.path} (MCAP)")

    def _discover(self) -> None:
        """Subscribes each wanted topic that has publishers and no subscription yet."""
        types = dict(self.get_topic_names_and_types())
        for topic in self._wanted:
            if topic in self._recording or topic not in types or self._bag is None:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            type_name = types[topic][0]
            try:
                self._bag.add_ros_topic(topic, type_name)
            except Exception as exc:  # a type the bag's typestore does not know
                self._warn_once(topic, f"not recording {topic}: {type_name} cannot be written ({exc})")
                self._recording[topic] = None
                continue
            self._recording[topic] = self.create_subscription(
                message_class(type_name), topic, partial(self._write, topic, type_name), qos_for(publishers),
                raw=True)

    def _write(self, topic: str, type_name: str, data: bytes) -> None:
        if self._bag is None:
            return
        message = self._bag.typestore.deserialize_cdr(data, type_name)
        stamp = stamp_ns(message) or self.get_clock().now().nanoseconds
        self._bag.write_ros(topic, stamp, message)
        # at most ~1 s of session in memory: a killed recorder loses little (`moshiface bag reindex`)
        self._bag.checkpoint(self.get_clock().now().nanoseconds)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._bag.counts) if self._bag is not None else {}

    def release(self) -> None:
        """Closes the bag (metadata.yaml written): what was recorded is kept."""
        if self._bag is not None:
            bag, self._bag = self._bag, None
            counts = dict(bag.counts)
            bag.close()
            summary = f"wrote {sum(counts.values())} messages to {self.path}: {counts}"
            if self.context.ok():
                self.get_logger().info(summary)
            else:  # Ctrl-C has shut ROS down already: /rosout is gone, the console is not
                print(f"[recorder] {summary}", file=sys.stderr, flush=True)


def main(args=None) -> int:
    return run_node(RecorderNode, "recorder", args)


if __name__ == "__main__":
    sys.exit(main())

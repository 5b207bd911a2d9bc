"""The whole robot under `ros2 launch robot.launch.py`, with no hardware: speech played into a
PulseAudio virtual microphone, a video of a face as the camera, the tiny model on CPU.

What a robot builder would check by eye and ear, measured: the robot's voice comes out of
the virtual speaker (recorded, not silent; chunks played and late from the playback node's
diagnostics), face frames reach /moshiface/robot/face at 25 Hz (`ros2 topic hz`), actuator
commands stay within the head file's limits, Live Link packets reach a UDP listener on
127.0.0.1, the bag written with record:=true holds exactly the topics the nodes publish, with
the counts a subscriber saw, and Ctrl-C ends everything with status 0 and no traceback.
The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import ros_harness
from pulse_server import Microphone, Sink, pulse_or_skip
from ros_harness import RosProcess, assert_clean_output, group_left, start_launch

RATE = 48000
NODES = ("audio_capture", "face_tracker", "moshiface_node", "audio_playback", "retarget")
READY = {"audio_capture": r"\[audio_capture\]: capturing", "audio_playback": r"\[audio_playback\]: playing",
         "face_tracker": r"\[face_tracker\]: ready", "moshiface_node": r"\[moshiface_node\]: ready",
         "retarget": r"\[retarget\]: ready", "recorder": r"\[recorder\]: ready"}
SPEECH_S = 10.0
NOT_RECORDED = {"/rosout", "/parameter_events", "/moshiface/robot/face_marker"}


class UdpCounter:
    """A Live Link receiver: counts the datagrams that reach 127.0.0.1:port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._running = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._running:
            try:
                self.packets.append(self.sock.recv(65536))
            except socket.timeout:
                continue

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        self.sock.close()


class Monitor:
    """A subscriber of every recorded topic in this process (its own rclpy context, spun by
    a thread): message counts, face arrival times, actuator commands, playback diagnostics."""

    def __init__(self, topics: tuple[str, ...]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from trajectory_msgs.msg import JointTrajectory

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("robot_test_monitor", context=self.context)
        self.counts = {topic: 0 for topic in topics}
        self.stamps: dict[str, list[int]] = {topic: [] for topic in topics}  # header stamps, ns
        self._kinds: dict[str, type] = {}
        self.face_arrivals: list[float] = []
        self.commands: list[JointTrajectory] = []
        self.playback: dict[str, str] = {}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        typed = {"/moshiface/robot/actuators": JointTrajectory, "/diagnostics": DiagnosticArray}
        for topic in topics:
            kind = self._kinds[topic] = typed.get(topic) or _message_class(topic)
            self.node.create_subscription(kind, topic, lambda msg, t=topic: self._on(t, msg), qos,
                                          raw=topic not in typed)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._running = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on(self, topic: str, msg) -> None:
        from rclpy.serialization import deserialize_message

        self.counts[topic] += 1
        message = deserialize_message(msg, self._kinds[topic]) if isinstance(msg, bytes) else msg
        if hasattr(message, "header"):
            self.stamps[topic].append(message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec)
        if topic == "/moshiface/robot/face":
            self.face_arrivals.append(time.monotonic())
        elif topic == "/moshiface/robot/actuators":
            self.commands.append(msg)
        elif topic == "/diagnostics":
            for status in msg.status:
                if status.name.endswith(": speaker"):
                    self.playback = {kv.key: kv.value for kv in status.values}

    def published_topics(self, nodes: tuple[str, ...]) -> set[str]:
        """Topics with a publisher in one of ``nodes``."""
        topics = set()
        for topic, _ in self.node.get_topic_names_and_types():
            if any(info.node_name in nodes for info in self.node.get_publishers_info_by_topic(topic)):
                topics.add(topic)
        return topics

    def stop(self) -> None:
        self._running = False
        self._thread.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _message_class(topic: str) -> type:
    from sensor_msgs.msg import RegionOfInterest

    from moshiface_ros import msg

    if topic == "/moshiface/user/face_box":
        return RegionOfInterest
    name = topic.rsplit("/", 1)[1]
    return {"audio": msg.AudioChunk, "face": msg.FaceFrame, "face_tokens": msg.FaceTokens, "text": msg.DialogueText,
            "blendshapes": msg.BlendshapeWeights}[name]


def _face_rate(seconds: float, log_dir: Path) -> float:
    """`ros2 topic hz /moshiface/robot/face` over ``seconds``: its last average rate."""
    with RosProcess(["ros2", "topic", "hz", "/moshiface/robot/face", "--window", "100"],
                    log_dir / "topic_hz.log") as hz:
        hz.wait_for(r"average rate: [\d.]+", timeout=seconds + 30)
        time.sleep(seconds)
        hz.interrupt(timeout=20)
        rates = re.findall(r"average rate: ([\d.]+)", hz.text())
    assert rates, hz.text()
    return float(rates[-1])


def _read_bag(path: Path) -> tuple[dict, dict[str, int], dict[str, str]]:
    from rosbags.highlevel import AnyReader

    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    stamps: dict[str, list[int | None]] = {}
    types: dict[str, str] = {}
    with AnyReader([path]) as reader:
        for connection in reader.connections:
            stamps.setdefault(connection.topic, [])
            types[connection.topic] = connection.msgtype
        for connection, _, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            header = getattr(message, "header", None)
            stamps[connection.topic].append(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                                            if header is not None else None)
    return metadata, stamps, types


def _limits(head_file: Path) -> dict[str, tuple[float, float]]:
    head = yaml.safe_load(head_file.read_text())
    return {a["name"]: (float(a["min"]), float(a["max"])) for a in head["actuators"]}


@pytest.fixture(scope="module")
def pulse():
    ros_harness.require_launch_tools()
    with pulse_or_skip([Sink("speaker", RATE, 2), Sink("mic_feed", RATE, 1)],
                       [Microphone("mic", "mic_feed")]) as server:
        yield server


def _run_robot(pulse, tmp_path: Path, listener: UdpCounter, monitor: Monitor) -> dict:
    """Starts the robot, talks to it, measures, presses Ctrl-C; what was seen."""
    from moshiface_ros.audio.synth import synthetic_speech

    video = ros_harness.write_face_video(tmp_path / "user.avi")
    speaker = pulse.record("speaker.monitor", tmp_path / "speaker.wav", RATE, 2)
    with start_launch("robot.launch.py", tmp_path, "device:=cpu", f"camera:={video}", "input_device:=mic",
                      "output_device:=speaker", "livelink:=true", f"livelink_port:={listener.port}",
                      "record:=true", f"bag_dir:={tmp_path / 'bag'}") as launch:
        ready = launch.wait_for_all(READY, timeout=240)
        talk = pulse.play("mic_feed", synthetic_speech(SPEECH_S, RATE, seed=3), RATE)
        face_rate = _face_rate(6.0, tmp_path)
        talk.wait(SPEECH_S + 30)
        published = monitor.published_topics(NODES)
        status = launch.interrupt(timeout=90)
        output = launch.text()
        left = group_left(launch)
    heard, _ = speaker.stop()
    return {"ready": ready, "face_rate": face_rate, "published": published, "status": status,
            "output": output, "left": left, "heard": heard}


def test_whole_robot_without_hardware(pulse, tmp_path):
    from moshiface_ros.nodes.recorder import RECORDED_TOPICS

    listener, monitor = UdpCounter(), Monitor(RECORDED_TOPICS)
    try:
        seen = _run_robot(pulse, tmp_path, listener, monitor)
    finally:
        monitor.stop()
        listener.close()
    output = seen["output"]
    print(f"\nrobot.launch.py: ready after " + ", ".join(f"{n} {t:.1f} s" for n, t in seen["ready"].items()))
    played, late = int(monitor.playback.get("played", 0)), int(monitor.playback.get("late_drops", -1))
    received = int(monitor.playback.get("received", 0))
    rms = float(np.sqrt(np.mean(np.square(seen["heard"])))) if seen["heard"].size else 0.0
    print(f"robot voice: {received} chunks received, {played} played, {late} late; speaker RMS {rms:.4f}")
    print(f"face: `ros2 topic hz /moshiface/robot/face` {seen['face_rate']:.2f} Hz; "
          f"{len(listener.packets)} Live Link packets; {len(monitor.commands)} actuator commands")
    print(f"messages seen: {monitor.counts}")

    assert seen["status"] == 0, output[-8000:]
    assert seen["left"], "processes left after the launch exited"
    assert_clean_output(output, "robot.launch.py")
    for node in (*NODES, "recorder"):
        assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", output), (node, output[-8000:])

    # Through a sound server on two cores, a few chunks arrive after their time when the machine is
    # quiet (0-16 of ~160 here) and many more under load; a muted robot (a presentation delay too
    # short for the chain: 195 of 197 chunks late at 200 ms) must fail.
    assert received >= 60 and played >= 0.5 * received and 0 <= late <= 0.45 * received, monitor.playback
    assert rms > 1e-3, "the speaker stayed silent"
    assert 23.0 <= seen["face_rate"] <= 27.0
    assert len(listener.packets) >= 50

    share = ros_harness.share_dir()
    limits = _limits(share / "config" / "heads" / "servo_head.yaml")
    assert len(monitor.commands) >= 50
    for command in monitor.commands:
        assert set(command.joint_names) == set(limits)
        for point in command.points:
            for name, value in zip(command.joint_names, point.positions):
                low, high = limits[name]
                assert low - 1e-9 <= value <= high + 1e-9, (name, value, low, high)

    assert seen["published"] - NOT_RECORDED == set(RECORDED_TOPICS)
    _check_bag(tmp_path / "bag", monitor.counts, monitor.stamps)


def _check_bag(path: Path, seen: dict[str, int], seen_stamps: dict[str, list[int]]) -> None:
    """The recorder's bag: version 8, MCAP, exactly the recorded topics, with the package's
    types, and for each topic the messages the test's own subscriber got. The two subscribers
    discover a publisher at different moments and stop at different moments of the Ctrl-C, so
    the bag is compared over the span of header stamps both of them heard: inside it, the bag
    holds what was published (a message lost by the recorder fails the test)."""
    from moshiface_ros.nodes.recorder import RECORDED_TOPICS

    metadata, stamps, types = _read_bag(path)
    counts = {topic: len(values) for topic, values in stamps.items()}
    print(f"bag: {counts}")
    assert metadata["version"] == 8 and metadata["storage_identifier"] == "mcap"
    assert set(counts) == set(RECORDED_TOPICS)
    assert types["/moshiface/robot/face"] == "moshiface_ros/msg/FaceFrame"
    assert types["/moshiface/user/audio"] == "moshiface_ros/msg/AudioChunk"
    for topic, count in counts.items():
        assert count > 0, topic
        window = seen_stamps.get(topic) if topic != "/diagnostics" else None
        if not window:  # no header (the face box), or several publishers (diagnostics): counts only
            assert abs(count - seen[topic]) <= max(5, seen[topic] // 10), (topic, count, seen[topic])
            continue
        recorded = [stamp for stamp in stamps[topic] if stamp is not None]
        low, high = max(min(window), min(recorded)), min(max(window), max(recorded))  # both listening
        inside = sum(1 for stamp in recorded if low <= stamp <= high)
        seen_inside = sum(1 for stamp in window if low <= stamp <= high)
        print(f"bag {topic}: {count} in all, {inside} within the span both heard ({seen_inside} seen there)")
        assert high > low and abs(inside - seen_inside) <= 2, (topic, inside, seen_inside)

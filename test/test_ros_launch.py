"""Every shipped launch file under `ros2 launch`, as a user starts it: its nodes come up with
their shipped parameter files, their topics exist, `ros2 param describe` explains a
parameter, and Ctrl-C (SIGINT to the launch process) ends everything with status 0 and no
traceback. robot.launch.py, which starts all of them at once, has its own test
(test_ros_robot.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import ros_harness
from pulse_server import Microphone, Sink, pulse_or_skip
from ros_harness import assert_clean_output, group_left, ros2, start_launch, wait_for_topics

REPO = Path(__file__).resolve().parent.parent
COVERED_ELSEWHERE = {"robot.launch.py": "test_ros_robot.py"}


@dataclass(frozen=True)
class Case:
    arguments: tuple[str, ...]
    ready: dict[str, str]  # node -> what its log says when it is ready
    topics: tuple[str, ...]
    describe: tuple[str, str]  # node, parameter
    pulse: bool = False  # needs a sound server with a `mic` and a `speaker`
    video: bool = False  # needs a camera: a face video as `source`
    bag: bool = False  # writes a bag: into the test's directory


CASES = {
    "moshiface.launch.py": Case(
        ("device:=cpu",), {"moshiface_node": r"\[moshiface_node\]: ready"},
        ("/moshiface/robot/audio", "/moshiface/robot/text", "/moshiface/robot/face", "/moshiface/user/audio"),
        ("moshiface_node", "temperature")),
    "face_tracker.launch.py": Case(
        ("flame_model:=synthetic",), {"face_tracker": r"\[face_tracker\]: ready"},
        ("/moshiface/user/face", "/moshiface/user/face_box"), ("face_tracker", "publish_rate"), video=True),
    "retarget.launch.py": Case(
        (), {"retarget": r"\[retarget\]: ready"},
        ("/moshiface/robot/blendshapes", "/moshiface/robot/actuators", "/moshiface/robot/face"),
        ("retarget", "presentation_delay_ms")),
    "audio.launch.py": Case(
        ("input_device:=mic", "output_device:=speaker"),
        {"audio_capture": r"\[audio_capture\]: capturing", "audio_playback": r"\[audio_playback\]: playing"},
        ("/moshiface/user/audio", "/moshiface/robot/audio", "/diagnostics"),
        ("audio_playback", "presentation_delay_ms"), pulse=True),
    "record.launch.py": Case(
        ("recorder:=node",), {"recorder": r"\[recorder\]: ready"}, ("/rosout",), ("recorder", "bag_dir"),
        bag=True),
}


def test_every_launch_file_has_a_case():
    shipped = {p.name for p in (REPO / "launch").glob("*.launch.py")}
    assert shipped == set(CASES) | set(COVERED_ELSEWHERE)
    for test_file in COVERED_ELSEWHERE.values():
        assert (REPO / "test" / test_file).is_file()


@pytest.fixture(scope="module")
def tools():
    ros_harness.require_launch_tools()


@pytest.fixture(scope="module")
def pulse(tools):
    with pulse_or_skip([Sink("speaker", 48000, 2), Sink("mic_feed", 48000, 1)],
                       [Microphone("mic", "mic_feed")]) as server:
        yield server


def _arguments(case: Case, tmp_path: Path, request) -> list[str]:
    arguments = list(case.arguments)
    if case.video:
        arguments.append(f"source:={ros_harness.write_face_video(tmp_path / 'user.avi')}")
    if case.bag:
        arguments.append(f"bag_dir:={tmp_path / 'bag'}")
    if case.pulse:
        request.getfixturevalue("pulse")
    return arguments


@pytest.mark.parametrize("launch_file", sorted(CASES))
def test_launch_file_comes_up_describes_and_stops_on_ctrl_c(launch_file, tools, tmp_path, request):
    case = CASES[launch_file]
    arguments = _arguments(case, tmp_path, request)
    with start_launch(launch_file, tmp_path, *arguments) as launch:
        started = launch.wait_for_all(case.ready, timeout=180)
        print(f"\n{launch_file}: ready after " + ", ".join(f"{n} {t:.1f} s" for n, t in started.items()))
        wait_for_topics(case.topics, timeout=30)

        node, parameter = case.describe
        described = ros2("param", "describe", "--no-daemon", "--timeout", "10", f"/{node}", parameter)
        assert described.returncode == 0, described.stdout + described.stderr
        assert f"Parameter name: {parameter}" in described.stdout
        description = next(line for line in described.stdout.splitlines() if "Description:" in line)
        assert description.split("Description:", 1)[1].strip(), described.stdout

        status = launch.interrupt(timeout=60)
        output = launch.text()
        assert status == 0, output[-6000:]
        assert group_left(launch), f"{launch_file}: processes left after the launch exited"
    assert_clean_output(output, launch_file)
    for node in case.ready:
        assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", output), output[-6000:]

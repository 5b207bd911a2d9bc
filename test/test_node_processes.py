"""Every node as a user starts it (its installed launcher, its shipped params file, ``-p``
overrides), under real ROS over DDS: described parameters, integers for numbers, one clear
line and a non-zero exit for a bad value, run-time sets that take effect or are refused
with a reason, and Ctrl-C (twice, as ``ros2 launch`` delivers it) ending with status 0 and
no traceback. Start-up times are printed.

Needs the package built with its CMakeLists (``make test``); skips without ROS, or fails
under ``MOSHIFACE_REQUIRE_ROS=1``.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import ros_harness
from ros_harness import assert_clean_output, share_dir, start_node

ros_harness.require_ros_module()

import rclpy  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters  # noqa: E402

READY = r"\]: ready: "
TYPE_NAMES = {ParameterType.PARAMETER_DOUBLE: "double", ParameterType.PARAMETER_INTEGER: "integer",
              ParameterType.PARAMETER_STRING: "string", ParameterType.PARAMETER_BOOL: "boolean"}


@pytest.fixture
def client_node():
    rclpy.init()
    node = rclpy.create_node("node_process_test_client")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def call(node, service_type, service: str, request, timeout: float = 20.0):
    client = node.create_client(service_type, service)
    assert client.wait_for_service(timeout_sec=timeout), f"{service} did not come up"
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    assert future.done(), f"{service} did not answer"
    return future.result()


def describe(node, name: str, parameter: str) -> str:
    """What `ros2 param describe /NAME PARAMETER` prints, from the describe_parameters service."""
    d = call(node, DescribeParameters, f"/{name}/describe_parameters",
             DescribeParameters.Request(names=[parameter])).descriptors[0]
    lines = [f"Parameter name: {d.name}", f"  Type: {TYPE_NAMES[d.type]}", f"  Description: {d.description}",
             "  Constraints:"]
    if d.read_only:
        lines.append("    Read only: true")
    for r in d.floating_point_range:
        lines += [f"    Min value: {r.from_value}", f"    Max value: {r.to_value}"]
    for r in d.integer_range:
        lines += [f"    Min value: {r.from_value}", f"    Max value: {r.to_value}", f"    Step: {r.step}"]
    if d.additional_constraints:
        lines.append(f"    {d.additional_constraints}")
    return "\n".join(lines)


def set_parameter(node, name: str, parameter: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[ParameterMsg(name=parameter, value=value)])
    return call(node, SetParameters, f"/{name}/set_parameters", request).results[0]


def stop_twice(process) -> int:
    """Ctrl-C as `ros2 launch` delivers it: SIGINT, and another while the node shuts down."""
    process.process.send_signal(signal.SIGINT)
    time.sleep(0.05)
    if process.alive():
        process.process.send_signal(signal.SIGINT)
    return process.interrupt(timeout=30.0)


def test_conversation_node_describes_its_parameters_and_takes_an_integer_temperature(client_node, tmp_path):
    with start_node("moshiface_node", tmp_path, "-p", "temperature:=1", "-p", "device:=cpu",
                    params_file=share_dir() / "config" / "moshiface.yaml") as node:
        started = node.wait_for(READY, 120)
        text = describe(client_node, "moshiface_node", "temperature")
        print(f"\nmoshiface_node start-up {started:.1f} s\n$ ros2 param describe /moshiface_node temperature\n{text}")
        assert "Type: double" in text and "sampling temperature" in text
        assert "Min value: 0.0" in text and "Max value: 10.0" in text and "Read only: true" in text
        values = call(client_node, GetParameters, "/moshiface_node/get_parameters",
                      GetParameters.Request(names=["temperature", "threads"])).values
        assert values[0].type == ParameterType.PARAMETER_DOUBLE and values[0].double_value == 1.0
        threads = describe(client_node, "moshiface_node", "threads")
        assert "Type: integer" in threads and "Min value: 0" in threads and "Max value: 1024" in threads
        refused = set_parameter(client_node, "moshiface_node", "temperature",
                                ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.5))
        assert not refused.successful and "read-only" in refused.reason
        assert stop_twice(node) == 0
        assert_clean_output(node.text(), "moshiface_node")


def test_retarget_node_applies_run_time_sets_and_refuses_read_only_ones(client_node, tmp_path):
    params = tmp_path / "retarget.yaml"
    shipped = (share_dir() / "config" / "retarget.yaml").read_text()
    params.write_text(shipped.replace("presentation_delay_ms: 300.0", "presentation_delay_ms: 300"))  # an integer
    with start_node("retarget", tmp_path, params_file=params) as node:
        started = node.wait_for(READY, 60)
        print(f"\nretarget start-up {started:.1f} s")
        value = call(client_node, GetParameters, "/retarget/get_parameters",
                     GetParameters.Request(names=["presentation_delay_ms"])).values[0]
        assert value.type == ParameterType.PARAMETER_DOUBLE and value.double_value == 300.0
        done = set_parameter(client_node, "retarget", "livelink_latency_ms",  # `ros2 param set ... 20`: an integer
                             ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=20))
        assert done.successful, done.reason
        value = call(client_node, GetParameters, "/retarget/get_parameters",
                     GetParameters.Request(names=["livelink_latency_ms"])).values[0]
        assert value.type == ParameterType.PARAMETER_DOUBLE and value.double_value == 20.0
        out_of_range = set_parameter(client_node, "retarget", "marker_max_triangles",
                                     ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=-3))
        assert not out_of_range.successful and "marker_max_triangles" in out_of_range.reason
        read_only = set_parameter(client_node, "retarget", "head_file",
                                  ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="x.yaml"))
        assert not read_only.successful and "read-only" in read_only.reason
        assert "Type: string" in describe(client_node, "retarget", "command_mode")
        assert stop_twice(node) == 0
        assert_clean_output(node.text(), "retarget")


BAD_VALUES = [
    ("moshiface_node", ["-p", "threads:=-1"], "parameter threads: "),
    ("moshiface_node", ["-p", "temperature:=hot"], "parameter temperature: expected a number"),
    ("moshiface_node", ["-p", "model:=/no/such/checkpoint"], "parameter model: "),
    ("retarget", ["-p", "head_file:=/no/such/head.yaml"], "parameter head_file: "),
    ("retarget", ["-p", "command_mode:=servo"], "parameter command_mode: must be one of"),
    ("face_tracker", [], "parameter flame_model: set it to your FLAME pickle"),
    ("audio_playback", ["-p", "device:=no-such-speaker"], "parameter device: "),
    ("audio_capture", ["-p", "latency:=soon"], "latency must be 'low', 'high' or seconds"),
]


@pytest.mark.parametrize("name, args, words", BAD_VALUES, ids=[f"{n}-{' '.join(a)}" for n, a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_and_a_non_zero_exit(tmp_path, name, args, words):
    with start_node(name, tmp_path, *args) as node:
        status = node.process.wait(120)
        text = node.text()
        assert status == 1, text
        assert_clean_output(text, name)
        errors = [line for line in text.splitlines() if "[ERROR]" in line]
        assert len(errors) == 1 and f"[{name}]" in errors[0] and words in errors[0], text


def test_face_tracker_stops_cleanly_on_a_double_ctrl_c(tmp_path):
    with start_node("face_tracker", tmp_path, "-p", "flame_model:=synthetic", "-p",
                    f"source:={tmp_path / 'no-camera.avi'}") as node:
        started = node.wait_for(READY, 120)
        print(f"\nface_tracker start-up {started:.1f} s")
        assert stop_twice(node) == 0
        assert_clean_output(node.text(), "face_tracker")


def test_audio_nodes_stop_cleanly_on_a_double_ctrl_c(tmp_path):
    from pulse_server import Microphone, Sink, pulse_or_skip

    with pulse_or_skip([Sink("speaker", 48000, 2), Sink("mic_feed", 48000, 1)], [Microphone("mic", "mic_feed")]):
        assert os.environ.get("PULSE_SERVER")
        for name, device in (("audio_capture", "mic"), ("audio_playback", "speaker")):
            with start_node(name, tmp_path, "-p", f"device:={device}",
                            params_file=share_dir() / "config" / "audio.yaml") as node:
                started = node.wait_for(r"\]: (capturing|playing) ", 60)
                time.sleep(1.0)  # streams running, chunks flowing
                print(f"\n{name} start-up {started:.1f} s")
                assert stop_twice(node) == 0
                assert_clean_output(node.text(), name)

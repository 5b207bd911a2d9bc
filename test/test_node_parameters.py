"""The nodes' parameter tables and their checks, without ROS: what every node declares, how
values as users write them become typed settings, and the one-line errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moshiface_ros.constants import PRESENTATION_DELAY_MS
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.nodes import parameters
from moshiface_ros.nodes.paramspec import ParameterError, about, coerce, settings_from, table, updated

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"moshiface_node": "moshiface.yaml", "audio_capture": "audio.yaml", "audio_playback": "audio.yaml",
          "face_tracker": "face_tracker.yaml", "retarget": "retarget.yaml", "web_head": "web_head.yaml"}


def test_every_parameter_is_described_and_typed():
    for node, settings in parameters.SETTINGS.items():
        for spec in table(settings):
            assert spec.kind in (bool, int, float, str), (node, spec.name)
            assert len(spec.description) > 15, (node, spec.name)
            if spec.low is not None:
                assert spec.kind in (int, float) and spec.low <= spec.default <= spec.high, (node, spec.name)
            if spec.choices:
                assert spec.default in spec.choices, (node, spec.name)


def test_presentation_delay_is_the_shared_default_everywhere():
    delays = {node: values["presentation_delay_ms"] for node, values in parameters.NODES.items()
              if "presentation_delay_ms" in values}
    assert set(delays) == {"audio_capture", "audio_playback", "retarget", "web_head"}
    assert set(delays.values()) == {PRESENTATION_DELAY_MS} == {300.0}
    for node in delays:
        file = yaml.safe_load((ROOT / "config" / CONFIG[node]).read_text())
        assert file[node]["ros__parameters"]["presentation_delay_ms"] == 300.0


def test_sampling_defaults_come_from_the_engine():
    from moshiface_ros.speech.engine import Sampling

    sampling, node = Sampling(), parameters.MOSHIFACE_NODE
    for name in ("temperature", "text_temperature", "top_k", "text_top_k", "face_temperature", "face_top_k"):
        assert node[name] == getattr(sampling, name), name


def test_retarget_publishes_actuator_trajectories_on_the_recorded_topic_by_default():
    from moshiface_ros.topics import ROBOT_ACTUATORS

    assert parameters.RETARGET["command_topic"] == ROBOT_ACTUATORS
    assert parameters.RETARGET["command_mode"] == "trajectory"


def test_integers_are_accepted_where_a_number_is_declared():
    s = settings_from(parameters.MoshifaceSettings, {"temperature": 1, "threads": 2})
    assert s.temperature == 1.0 and type(s.temperature) is float and s.threads == 2
    r = settings_from(parameters.RetargetSettings, {"presentation_delay_ms": 300})
    assert type(r.presentation_delay_ms) is float
    t = settings_from(parameters.FaceTrackerSettings, {"source": 0, "flame_model": "synthetic"})
    assert t.source == "0"  # `-p source:=0` arrives as an integer
    c = settings_from(parameters.AudioCaptureSettings, {"latency": 0.05})
    assert c.latency == "0.05"


@pytest.mark.parametrize("settings, values, words", [
    ("MoshifaceSettings", {"threads": -1}, "parameter threads: must lie between 0 and 1024, got -1"),
    ("MoshifaceSettings", {"temperature": "hot"}, "parameter temperature: expected a number, got a string 'hot'"),
    ("MoshifaceSettings", {"temperature": float("nan")}, "parameter temperature: must be a finite number"),
    ("MoshifaceSettings", {"dtype": "int8"}, "parameter dtype: must be one of 'auto'"),
    ("MoshifaceSettings", {"device": "tpu"}, "parameter device: must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("MoshifaceSettings", {"cuda_graphs": 1}, "parameter cuda_graphs: expected a boolean, got an integer 1"),
    ("MoshifaceSettings", {"top_k": 2.5}, "parameter top_k: expected an integer, got a number 2.5"),
    ("MoshifaceSettings", {"temprature": 1.0}, "parameter temprature: is not a parameter of this node"),
    ("AudioCaptureSettings", {"latency": "soon"}, "latency must be 'low', 'high' or seconds"),
    ("AudioPlaybackSettings", {"presentation_delay_ms": -5.0}, "parameter presentation_delay_ms: must lie"),
    ("FaceTrackerSettings", {}, "parameter flame_model: set it to your FLAME pickle"),
    ("FaceTrackerSettings", {"flame_model": "synthetic", "publish_rate": 0.0}, "parameter publish_rate"),
    ("RetargetSettings", {"command_mode": "servo"}, "parameter command_mode: must be one of 'trajectory'"),
    ("RetargetSettings", {"livelink_port": 70000}, "parameter livelink_port: must lie between 1 and 65535"),
    ("RetargetSettings", {"command_topic": "commands"}, "parameter command_topic: must be an absolute"),
])
def test_a_bad_value_is_one_line_naming_the_parameter(settings, values, words):
    with pytest.raises(MoshifaceError) as info:
        settings_from(getattr(parameters, settings), values)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_run_time_changes_only_for_dynamic_parameters():
    current = settings_from(parameters.RetargetSettings, {})
    changed = updated(current, {"livelink_latency_ms": 20, "frame_id": "head"})
    assert changed.livelink_latency_ms == 20.0 and changed.frame_id == "head" and current.frame_id == "robot_head"
    with pytest.raises(ParameterError, match="parameter head_file: is read-only: restart the node"):
        updated(current, {"head_file": "other.yaml"})
    with pytest.raises(ParameterError, match="marker_max_triangles: must lie between 0"):
        updated(current, {"marker_max_triangles": -1})
    dynamic = {s.name for settings in parameters.SETTINGS.values() for s in table(settings) if not s.read_only}
    assert dynamic == {"max_frame_age", "livelink_latency_ms", "marker_max_triangles", "frame_id"}


def test_about_names_the_parameter_behind_a_core_error():
    with pytest.raises(ParameterError) as info:
        with about("device"):
            raise MoshifaceError("--device 'tpu' is not a device (use auto, cpu, cuda or cuda:N)")
    assert str(info.value) == "parameter device: 'tpu' is not a device (use auto, cpu, cuda or cuda:N)"
    with pytest.raises(ValueError):  # not a user error: it stays what it is
        with about("model"):
            raise ValueError("a bug")


def test_coerce_keeps_the_declared_type():
    spec = next(s for s in table(parameters.RetargetSettings) if s.name == "marker_rate_hz")
    assert coerce(spec, 5) == 5.0 and coerce(spec, 0.1) == 0.1
    with pytest.raises(ParameterError, match="expected a number, got a boolean True"):
        coerce(spec, True)
    assert "from 0.1 to 50" in spec.constraints and "read-only" in spec.constraints

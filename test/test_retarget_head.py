"""Head files: the shipped examples load; a missing or contradictory field is one clear
error naming the file and the field."""

import copy
from pathlib import Path

import pytest
import yaml

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.retarget.head import load_head
from moshiface_ros.retarget.retargeter import HeadRetargeter

ROOT = Path(__file__).resolve().parents[1]
HEADS = sorted((ROOT / "config" / "heads").glob("*.yaml"))
SERVO = yaml.safe_load((ROOT / "config" / "heads" / "servo_head.yaml").read_text())


def test_example_heads_load():
    assert {p.name for p in HEADS} >= {"arkit_virtual_head.yaml", "servo_head.yaml"}
    for path in HEADS:
        head = HeadRetargeter.from_file(path)
        assert head.names and head.config.name == path.stem
    servo = load_head(ROOT / "config" / "heads" / "servo_head.yaml")
    names = [a.name for a in servo.actuators]
    for part in ("jaw", "lip_corner_left", "brow_left", "eyelid_left", "neck_yaw"):
        assert part in names
    assert load_head(ROOT / "config" / "heads" / "arkit_virtual_head.yaml").source == "rig"


def _edit(change):
    data = copy.deepcopy(SERVO)
    change(data)
    return data


def _pop(key):
    return lambda d: d["actuators"][1].pop(key)


def _set(key, value, index=1):
    def change(d):
        d["actuators"][index][key] = value
    return change


BAD = {
    "missing max": (_pop("max"), "actuators[1].max: missing"),
    "missing drive": (_pop("drive"), "actuators[1].drive: missing"),
    "missing name": (lambda d: d.pop("name"), "name: missing"),
    "missing units": (_pop("units"), "actuators[1].units: missing"),
    "min above max": (_set("min", 40.0), "actuators[1].min: (40) must be below max (30)"),
    "neutral outside": (_set("neutral", -31.0), "actuators[1].neutral: (-31) must lie between"),
    "zero velocity": (_set("max_velocity", 0), "actuators[1].max_velocity: must be positive"),
    "negative acceleration": (_set("max_acceleration", -5.0), "actuators[1].max_acceleration: must be positive"),
    "text velocity": (_set("max_velocity", "fast"), "actuators[1].max_velocity: must be a finite number"),
    "infinite velocity": (_set("max_velocity", float("inf")), "actuators[1].max_velocity: must be a finite number"),
    "negative latency": (_set("latency_ms", -1.0), "actuators[1].latency_ms: must be at least 0"),
    "invert not bool": (_set("invert", "yes please"), "actuators[1].invert: must be true or false"),
    "misspelt field": (_set("max_velocty", 3.0), "actuators[1].max_velocty: unknown field (did you mean 'max_velocity'?)"),
    "unknown drive": (_set("drive", {"jawOpn": 1.0}), "actuators[1].drive.jawOpn: is neither a blendshape"),
    "empty drive": (_set("drive", {}), "actuators[1].drive: must map blendshape or feature names"),
    "duplicate name": (_set("name", "jaw"), "actuators[1].name: 'jaw' is used by another actuator"),
    "bad source": (lambda d: d["blendshapes"].update(source="magic"), "blendshapes.source: must be 'features' or 'rig'"),
    "rig without file": (lambda d: d["blendshapes"].update(source="rig"), "blendshapes.rig: missing"),
    "bad range": (lambda d: d["blendshapes"].update(features={"ranges": [["jaw_open", "jawOpen", 0.01, 0.01]]}),
                  "blendshapes.features.ranges[0]: value at 0 and value at 1 are both 0.01"),
    "bad fallback": (lambda d: d["fallback"].update(ceiling_db=-60.0), "fallback.ceiling_db: (-60) must be above floor_db"),
    "top-level typo": (lambda d: d.update(actuator=[]), "actuator: unknown field (did you mean 'actuators'?)"),
    "actuators not list": (lambda d: d.update(actuators={"jaw": 1}), "actuators: must be a list"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_head_file_names_the_field(tmp_path, case):
    change, message = BAD[case]
    path = tmp_path / "head.yaml"
    path.write_text(yaml.safe_dump(_edit(change)))
    with pytest.raises(MoshifaceError) as error:
        HeadRetargeter.from_file(path)
    text = str(error.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_latency_beyond_the_presentation_delay_is_a_contradiction(tmp_path):
    path = tmp_path / "head.yaml"
    path.write_text(yaml.safe_dump(_edit(_set("latency_ms", 250.0))))
    HeadRetargeter.from_file(path, presentation_delay_ms=300.0)  # fine with a longer delay
    with pytest.raises(MoshifaceError, match=r"actuators\[1\]\.latency_ms \(250\) exceeds the presentation delay"):
        HeadRetargeter.from_file(path, presentation_delay_ms=200.0)


def test_unreadable_head_files(tmp_path):
    with pytest.raises(MoshifaceError, match="does not exist"):
        load_head(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(MoshifaceError, match="not valid YAML"):
        load_head(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(MoshifaceError, match="must be a mapping"):
        load_head(tmp_path / "list.yaml")


def test_file_topology_needs_generated_regions(tmp_path):
    """The shipped FLAME regions file is empty until generated: say how to generate it."""
    import numpy as np

    from moshiface_ros.retarget.synthetic import synthetic_topology

    neutral, faces = synthetic_topology(5023)
    np.savez(tmp_path / "neutral.npz", neutral=neutral, faces=faces)
    empty = tmp_path / "regions.yaml"
    empty.write_text("vertices: 5023\nregions: {}\n")
    data = _edit(lambda d: d.update(topology={"neutral": "neutral.npz", "regions": "regions.yaml"}))
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(MoshifaceError, match="moshiface flame regions"):
        HeadRetargeter.from_file(tmp_path / "head.yaml")
    data["topology"]["neutral"] = "missing.npz"
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(MoshifaceError, match="missing.npz does not exist"):
        HeadRetargeter.from_file(tmp_path / "head.yaml")

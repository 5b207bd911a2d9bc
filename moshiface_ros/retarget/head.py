"""Head files: everything about one robot head, in YAML, checked field by field.

A head file says how the robot's FLAME face becomes this head's blendshape weights and
actuator positions. Every mistake is reported as one ``MoshifaceError`` naming the file
and the field (``servo_head.yaml: actuators[2].max_velocity: must be a positive
number``), including unknown keys (a misspelt limit must not be silently ignored) and
contradictions (``min`` above ``max``, ``neutral`` outside them, a drive naming a
blendshape the head does not have). See docs/retargeting.md for a walk-through::

    name: servo_head
    topology: synthetic            # or {neutral: FILE, regions: FILE}
    blendshapes:
      source: features             # features | rig
      rig: FILE.npz                # source: rig (or "synthetic")
      names: arkit52               # output names (source: features)
      solver: {l1: 1.0e-4, l2: 1.0e-5, temporal: 0.05, symmetry: 0.002,
               region_weights: {lips: 4.0, eye_region: 3.0}, exclusive_pairs: [[a, b]]}
      features: {vertices: {SET: [i, ...]}, ranges: [[FEATURE, SHAPE, AT_0, AT_1]], scales: {FEATURE: S}}
    fallback: {jaw_gain: 0.7, floor_db: -50, ceiling_db: -15, attack_ms: 20, release_ms: 80, timeout_ms: 500}
    livelink: {subject: MoshiFace, device_id: moshiface_ros}
    actuators:
      - {name: jaw, units: rad, min: 0.0, neutral: 0.0, max: 0.45, invert: false,
         max_velocity: 4.0, max_acceleration: 60.0, latency_ms: 60, drive: {jawOpen: 1.0}}

Relative paths are relative to the head file's directory.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MoshifaceError
from ..yamlio import describe, load_file
from .actuators import ActuatorSpec
from .arkit import ARKIT_52
from .fallback import FALLBACK_NAMES, FallbackConfig
from .features import (
    DEFAULT_RANGES,
    DEFAULT_SCALES,
    FEATURE_NAMES,
    VERTEX_SETS,
    FeatureConfig,
)
from .solver import SolverConfig

SYNTHETIC = "synthetic"

_TOP_KEYS = {"name", "topology", "blendshapes", "fallback", "livelink", "actuators"}
_ACTUATOR_KEYS = {"name", "units", "min", "neutral", "max", "invert", "max_velocity", "max_acceleration",
                  "latency_ms", "drive"}


@dataclass
class Topology:
    """The mesh the robot's face frames live on: the built-in stand-in, or files."""

    synthetic: bool = True
    neutral: Path | None = None  # .npy or .npz (neutral [+ faces]); None: the rig's
    regions: Path | None = None  # regions YAML; None: the package's flame_regions.yaml


@dataclass
class HeadConfig:
    name: str
    path: Path
    topology: Topology
    source: str  # "features" | "rig"
    rig: Path | str | None  # a path, or "synthetic"
    names: list[str]  # output blendshape names (features source; the rig's names otherwise)
    solver: SolverConfig = field(default_factory=SolverConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    actuators: list[ActuatorSpec] = field(default_factory=list)
    livelink_subject: str = "MoshiFace"
    livelink_device_id: str = "moshiface_ros"


class _Fields:
    """Reads one mapping of a head file, raising errors that name the field."""

    def __init__(self, path: Path, where: str, data: Any, allowed: set[str]) -> None:
        self.path, self.where = path, where
        if not isinstance(data, Mapping):
            self.fail("", f"must be a mapping, got {type(data).__name__}")
        self.data = data
        for key in data:
            if key not in allowed:
                key = key if isinstance(key, str) else describe(key)
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
                self.fail(key, f"unknown field{hint}")

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> None:
        where = self.name(key) if key else (self.where or "the file")
        raise MoshifaceError(f"{self.path}: {where}: {problem}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def required(self, key: str) -> Any:
        if self.data.get(key) is None:
            self.fail(key, "missing (required)")
        return self.data[key]

    def number(self, key: str, default: float | None = None, positive: bool = False, minimum: float | None = None) -> float:
        value = self.data.get(key, default) if default is not None else self.required(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"must be a finite number, got {describe(value)}")
        if positive and value <= 0:
            self.fail(key, f"must be positive, got {describe(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum:g}, got {describe(value)}")
        return float(value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default) if default is not None else self.required(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a non-empty string, got {describe(value)}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, got {describe(value)}")
        return value

    def path_value(self, key: str) -> Path | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"must be a file path, got {describe(value)}")
        resolved = Path(value) if Path(value).is_absolute() else self.path.parent / value
        return resolved

    def mapping(self, key: str, allowed: set[str]) -> _Fields:
        return _Fields(self.path, self.name(key), self.data.get(key) or {}, allowed)


def load_head(path: Path | str) -> HeadConfig:
    """Reads and checks a head file."""
    path = Path(path)
    data = load_file(path, "head file")
    return parse_head(data, path)


def parse_head(data: Any, path: Path) -> HeadConfig:
    top = _Fields(path, "", data, _TOP_KEYS)
    name = top.string("name")
    topology = _topology(top)
    shapes = top.mapping("blendshapes", {"source", "rig", "names", "solver", "features"})
    source = shapes.string("source", "features")
    if source not in ("features", "rig"):
        shapes.fail("source", f"must be 'features' or 'rig', got {describe(source)}")
    rig: Path | str | None = None
    if source == "rig":
        raw = shapes.required("rig")
        rig = SYNTHETIC if raw == SYNTHETIC else shapes.path_value("rig")
    elif shapes.has("rig"):
        shapes.fail("rig", "is only used with source: rig (this head's source is features)")
    names = _names(shapes, source, rig)
    config = HeadConfig(name, path, topology, source, rig, names,
                        solver=_solver(shapes.mapping("solver", {"l1", "l2", "temporal", "symmetry", "region_weights",
                                                                 "exclusive_pairs"})),
                        features=_features(shapes.mapping("features", {"vertices", "ranges", "scales"})),
                        fallback=_fallback(top.mapping("fallback", set(FallbackConfig.__dataclass_fields__))))
    live = top.mapping("livelink", {"subject", "device_id"})
    config.livelink_subject = live.string("subject", "MoshiFace")
    config.livelink_device_id = live.string("device_id", "moshiface_ros")
    config.actuators = _actuators(top, names)
    return config


def _topology(top: _Fields) -> Topology:
    raw = top.data.get("topology", SYNTHETIC)
    if raw == SYNTHETIC:
        return Topology(True)
    if not isinstance(raw, Mapping):
        top.fail("topology", f"must be 'synthetic' or a mapping with neutral and regions, got {describe(raw)}")
    fields = top.mapping("topology", {"neutral", "regions"})
    return Topology(False, fields.path_value("neutral"), fields.path_value("regions"))


def _names(shapes: _Fields, source: str, rig: Path | str | None) -> list[str]:
    raw = shapes.data.get("names", "arkit52")
    if source == "rig":
        if "names" in shapes.data:
            shapes.fail("names", "comes from the rig file with source: rig; remove it")
        return list(ARKIT_52) if rig == SYNTHETIC else []  # filled in when the rig is loaded
    if raw == "arkit52":
        return list(ARKIT_52)
    if not isinstance(raw, list) or not raw or not all(isinstance(n, str) and n for n in raw):
        shapes.fail("names", f"must be 'arkit52' or a list of blendshape names, got {describe(raw)}")
    if len(set(raw)) != len(raw):
        shapes.fail("names", "has duplicate names")
    return list(raw)


def _solver(fields: _Fields) -> SolverConfig:
    default = SolverConfig()
    config = SolverConfig(
        l1=fields.number("l1", default.l1, minimum=0.0), l2=fields.number("l2", default.l2, minimum=0.0),
        temporal=fields.number("temporal", default.temporal, minimum=0.0),
        symmetry=fields.number("symmetry", default.symmetry, minimum=0.0))
    if "region_weights" in fields.data:
        weights = fields.mapping("region_weights", set(map(str, fields.data["region_weights"] or {})))
        config.region_weights = {k: weights.number(k, positive=True) for k in weights.data}
    if "exclusive_pairs" in fields.data:
        pairs = fields.data["exclusive_pairs"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p)
                                                  for p in pairs):
            fields.fail("exclusive_pairs", "must be a list of [name, name] pairs")
        config.exclusive_pairs = [(a, b) for a, b in pairs]
    return config


def _features(fields: _Fields) -> FeatureConfig:
    config = FeatureConfig()
    vertices = fields.mapping("vertices", set(VERTEX_SETS))
    for key, value in vertices.data.items():
        if not isinstance(value, list) or not value or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            vertices.fail(key, "must be a non-empty list of vertex indices")
        config.vertices[key] = list(value)
    ranges = fields.data.get("ranges") or []
    if not isinstance(ranges, list):
        fields.fail("ranges", "must be a list of [feature, blendshape, value at 0, value at 1]")
    replaced = {}
    for i, entry in enumerate(ranges):
        where = f"ranges[{i}]"
        if not (isinstance(entry, list) and len(entry) == 4 and all(isinstance(e, str) for e in entry[:2])
                and all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in entry[2:])):
            fields.fail(where, f"must be [feature, blendshape, value at 0, value at 1], got {describe(entry)}")
        feature, shape, at0, at1 = entry
        if feature not in FEATURE_NAMES:
            fields.fail(where, f"unknown feature {describe(feature)} (features: {', '.join(FEATURE_NAMES)})")
        if at0 == at1:
            fields.fail(where, f"value at 0 and value at 1 are both {at0}: the range is empty")
        replaced[(feature, shape)] = (feature, shape, float(at0), float(at1))
    merged = {(f, b): (f, b, lo, hi) for f, b, lo, hi in DEFAULT_RANGES}
    merged.update(replaced)
    config.ranges = list(merged.values())
    scales = fields.mapping("scales", set(FEATURE_NAMES))
    config.scales = dict(DEFAULT_SCALES)
    for key in scales.data:
        config.scales[key] = scales.number(key, positive=True)
    return config


def _fallback(fields: _Fields) -> FallbackConfig:
    d = FallbackConfig()
    config = FallbackConfig(
        jaw_gain=fields.number("jaw_gain", d.jaw_gain, minimum=0.0),
        floor_db=fields.number("floor_db", d.floor_db), ceiling_db=fields.number("ceiling_db", d.ceiling_db),
        attack_ms=fields.number("attack_ms", d.attack_ms, positive=True),
        release_ms=fields.number("release_ms", d.release_ms, positive=True),
        timeout_ms=fields.number("timeout_ms", d.timeout_ms, positive=True))
    if config.ceiling_db <= config.floor_db:
        fields.fail("ceiling_db", f"({config.ceiling_db:g}) must be above floor_db ({config.floor_db:g})")
    return config


def _actuators(top: _Fields, names: list[str]) -> list[ActuatorSpec]:
    raw = top.data.get("actuators") or []
    if not isinstance(raw, list):
        top.fail("actuators", "must be a list of actuators")
    known = set(names) | set(FEATURE_NAMES) | set(FALLBACK_NAMES)
    specs, seen = [], set()
    for i, entry in enumerate(raw):
        a = _Fields(top.path, f"actuators[{i}]", entry, _ACTUATOR_KEYS)
        name = a.string("name")
        if name in seen:
            a.fail("name", f"{describe(name)} is used by another actuator")
        seen.add(name)
        spec = ActuatorSpec(
            name=name, units=a.string("units"), min=a.number("min"), neutral=a.number("neutral"),
            max=a.number("max"), invert=a.boolean("invert", False),
            max_velocity=a.number("max_velocity", positive=True),
            max_acceleration=a.number("max_acceleration", positive=True),
            latency_ms=a.number("latency_ms", 0.0, minimum=0.0), drive=_drive(a, known, bool(names)))
        if spec.min >= spec.max:
            a.fail("min", f"({spec.min:g}) must be below max ({spec.max:g})")
        if not spec.min <= spec.neutral <= spec.max:
            a.fail("neutral", f"({spec.neutral:g}) must lie between min ({spec.min:g}) and max ({spec.max:g})")
        specs.append(spec)
    return specs


def _drive(a: _Fields, known: set[str], names_known: bool) -> dict[str, float]:
    raw = a.required("drive")
    if not isinstance(raw, Mapping) or not raw:
        a.fail("drive", "must map blendshape or feature names to coefficients, e.g. {jawOpen: 1.0}")
    drive = _Fields(a.path, a.name("drive"), raw, set(map(str, raw)))
    out = {}
    for key in raw:
        key = str(key)
        if names_known and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            drive.fail(key, f"is neither a blendshape of this head nor a feature{hint}")
        out[key] = drive.number(key)
    return out


def check_drive_names(config: HeadConfig) -> None:
    """Re-checks the drives once a rig file has supplied the blendshape names."""
    known = set(config.names) | set(FEATURE_NAMES) | set(FALLBACK_NAMES)
    for i, spec in enumerate(config.actuators):
        for key in spec.drive:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise MoshifaceError(f"{config.path}: actuators[{i}].drive.{key}: is neither a blendshape of "
                                     f"this head's rig nor a feature{hint}")

"""``HeadRetargeter``: one head's whole retargeting behind a two-call step API.

``step_face(frame)`` turns one robot face frame into the head's blendshape weights
(rig solve or features), its feature values and head/eye rotations, and limited,
latency-compensated actuator commands. ``step_audio(chunk)`` feeds the robot's own
audio to the speech fallback, which produces the same outputs whenever no face frame
has arrived for ``fallback.timeout_ms`` (audio-only weights, a late face model), so the
mouth always moves with the voice. The ROS node, the embedded runner and the preview
renderer all use this class; it returns core objects only (``messages.standard`` turns an
output into ROS messages, for the runner's bag and the nodes alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import PRESENTATION_DELAY_MS
from ..errors import MoshifaceError
from ..messages.types import AudioChunk, BlendshapeWeights, FaceFrame
from ..regions import DEFAULT_REGIONS_FILE, Regions, load_regions
from .actuators import ActuatorBank, ActuatorCommand
from .fallback import SpeechFallback
from .features import (
    ANGLE_FEATURES,
    FEATURE_NAMES,
    FeatureExtractor,
    FeatureMapping,
    euler_from_matrix,
    rodrigues,
)
from .head import SYNTHETIC, HeadConfig, check_drive_names, load_head
from .livelink import LiveLinkFrame, make_frame
from .rig import Rig, load_mesh, load_rig
from .solver import BlendshapeSolver, region_vertex_weights


@dataclass
class RetargetOutput:
    """What one face frame (or one fallback frame) becomes."""

    stamp_ns: int
    source: str  # "face", "fallback" or "none" (no usable face: nothing to present)
    blendshapes: BlendshapeWeights | None = None
    features: dict[str, float] = field(default_factory=dict)
    head_rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)  # yaw, pitch, roll (rad)
    eye_rotations: tuple[float, ...] = (0.0,) * 6  # left yaw, pitch, roll, right yaw, pitch, roll
    actuators: ActuatorCommand | None = None
    vertices: np.ndarray | None = None  # the frame's absolute vertices (face source only)


@dataclass
class _FaceModel:
    """Everything that depends on the topology's vertex count."""

    neutral: np.ndarray
    faces: np.ndarray | None
    extractor: FeatureExtractor
    solver: BlendshapeSolver | None
    mapping: FeatureMapping | None


class HeadRetargeter:
    def __init__(self, config: HeadConfig, *, regions: Path | None = None,
                 presentation_delay_ms: float = PRESENTATION_DELAY_MS) -> None:
        self.config = config
        self.presentation_delay_ms = float(presentation_delay_ms)
        self._regions_path = regions
        for i, spec in enumerate(config.actuators):
            if spec.latency_ms > self.presentation_delay_ms:
                raise MoshifaceError(
                    f"{config.path}: actuators[{i}].latency_ms ({spec.latency_ms:g}) exceeds the presentation delay "
                    f"({self.presentation_delay_ms:g} ms): its commands would be due before the face exists; "
                    "lower the latency or raise presentation_delay_ms")
        self._models: dict[int, _FaceModel] = {}
        self._rig: Rig | None = None
        if config.source == "rig" and config.rig != SYNTHETIC:
            self._rig = load_rig(config.rig)
            config.names = list(self._rig.names)
            check_drive_names(config)
        if not config.topology.synthetic:
            self._model(self._file_vertices())  # load and check the files now, not on the first frame
        self.names = list(config.names)
        self.bank = ActuatorBank(config.actuators)
        self.fallback = SpeechFallback(config.fallback)
        self._last_face_ns: int | None = None
        self.bad_frames = 0
        self.empty_frames = 0
        self.last_problem = ""

    @classmethod
    def from_file(cls, head_file: Path | str, *, regions: Path | None = None,
                  presentation_delay_ms: float = PRESENTATION_DELAY_MS) -> HeadRetargeter:
        """A retargeter for the head file (``regions`` overrides the file's regions)."""
        return cls(load_head(head_file), regions=regions, presentation_delay_ms=presentation_delay_ms)

    # -- topology --------------------------------------------------------------------------

    def _file_vertices(self) -> int:
        topology = self.config.topology
        if topology.neutral is not None:
            neutral, _ = load_mesh(topology.neutral)
            return len(neutral)
        if self._rig is not None:
            return self._rig.vertices
        raise MoshifaceError(f"{self.config.path}: topology.neutral: missing: give the neutral mesh the face "
                             "frames are displacements from (.npy V x 3, or .npz with 'neutral' [+ 'faces'])")

    def _load_regions(self) -> tuple[Regions, str]:
        path = self._regions_path or self.config.topology.regions or DEFAULT_REGIONS_FILE
        return load_regions(path), str(path)

    def _model(self, vertices: int) -> _FaceModel:
        model = self._models.get(vertices)
        if model is None:
            model = self._build_model(vertices)
            self._models[vertices] = model
        return model

    def _build_model(self, vertices: int) -> _FaceModel:
        config = self.config
        if config.topology.synthetic:
            from .synthetic import FLAME_TEETH_VERTICES, FLAME_VERTICES, synthetic_face

            if vertices not in (FLAME_VERTICES, FLAME_TEETH_VERTICES):
                raise ValueError(f"the synthetic topology (the synthetic head) has {FLAME_VERTICES} or "
                                 f"{FLAME_TEETH_VERTICES} vertices, the frame {vertices}")
            face = synthetic_face(vertices)
            neutral, faces, regions, where = face.neutral, face.faces, face.regions, "the synthetic head"
            rig = face.rig if config.rig == SYNTHETIC else self._rig
        else:
            rig = self._rig if config.rig != SYNTHETIC else None
            if config.topology.neutral is not None:
                neutral, faces = load_mesh(config.topology.neutral)
            elif rig is not None and rig.neutral is not None:
                neutral, faces = rig.neutral, rig.faces
            else:
                raise MoshifaceError(f"{config.path}: topology.neutral: missing, and the rig has no 'neutral'")
            if len(neutral) != vertices:
                raise ValueError(f"the head's topology has {len(neutral)} vertices, the frame {vertices}")
            if config.rig == SYNTHETIC:
                raise MoshifaceError(f"{config.path}: blendshapes.rig: 'synthetic' needs topology: synthetic")
            regions, where = self._load_regions()
            if faces is None and rig is not None:
                faces = rig.faces
        if rig is not None and rig.vertices != vertices:
            raise MoshifaceError(f"{config.path}: blendshapes.rig: the rig has {rig.vertices} vertices, "
                                 f"the topology {vertices}")
        extractor = FeatureExtractor.from_regions(neutral, regions, config.features.vertices, where)
        solver = mapping = None
        if rig is not None:
            weights = region_vertex_weights(vertices, regions, config.solver.region_weights, where)
            solver = BlendshapeSolver(rig, config.solver, weights)
        else:
            mapping = FeatureMapping(config.features.ranges, config.names)
        return _FaceModel(np.asarray(neutral, np.float64), faces, extractor, solver, mapping)

    def mesh(self, vertices: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(neutral, faces) of the topology for ``vertices``-vertex frames."""
        model = self._model(vertices)
        return model.neutral, model.faces

    # -- steps -----------------------------------------------------------------------------

    def _reject(self, frame: FaceFrame, problem: str | None) -> RetargetOutput:
        if problem is None:
            self.empty_frames += 1
        else:
            self.bad_frames += 1
            self.last_problem = problem
        return RetargetOutput(int(frame.stamp_ns), "none")

    def step_face(self, frame: FaceFrame) -> RetargetOutput:
        """One robot face frame -> blendshapes, features, rotations, actuator command.

        A frame with no face (``face_present`` false, no vertices) or a broken one (NaN,
        a vertex count the head does not know) gives ``source == "none"`` and moves
        nothing: the fallback takes over after ``fallback.timeout_ms``; ``bad_frames`` and
        ``last_problem`` say what was wrong."""
        vertices = np.asarray(frame.vertices, np.float64).reshape(-1, 3)
        if not frame.face_present or vertices.size == 0:
            return self._reject(frame, None)
        if not np.isfinite(vertices).all():
            return self._reject(frame, "face frame has NaN or infinite vertices")
        try:
            model = self._model(len(vertices))
        except ValueError as exc:
            return self._reject(frame, str(exc))
        displacement = vertices if frame.is_displacement else vertices - model.neutral
        if not np.isfinite(displacement).all() or np.abs(displacement).max() > 1.0:
            return self._reject(frame, "face frame moves a vertex by more than 1 m")
        local, rotation = model.extractor.expression_displacement(displacement)
        features = model.extractor.measure_local(local, rotation, frame.global_pose, frame.eye_pose)
        if model.solver is not None:
            weights = model.solver.solve(local)
        else:
            weights = model.mapping.weights(features)
        self._last_face_ns = int(frame.stamp_ns)
        output = self._output(int(frame.stamp_ns), "face", weights, features, frame.frame_id)
        output.vertices = (model.neutral + displacement).astype(np.float32)
        if frame.eye_pose.size == 6 and np.isfinite(frame.eye_pose).all():  # a bad pose leaves the eyes still
            output.eye_rotations = tuple(float(a) for i in (0, 3) for a in euler_from_matrix(rodrigues(frame.eye_pose[i: i + 3])))
        return output

    def step_audio(self, chunk: AudioChunk) -> list[RetargetOutput]:
        """The robot's audio -> fallback outputs for the 40 ms frames in which no face
        frame is live (none yet, or none for ``fallback.timeout_ms``)."""
        outputs = []
        timeout_ns = int(self.config.fallback.timeout_ms * 1e6)
        lookup = {name.lower(): i for i, name in enumerate(self.names)}
        for stamp, values in self.fallback.push(chunk):
            if self._last_face_ns is not None and stamp - self._last_face_ns <= timeout_ns:
                continue
            weights = np.zeros(len(self.names), np.float32)
            for name, value in values.items():
                if name.lower() in lookup:
                    weights[lookup[name.lower()]] = value
            features = np.zeros(len(FEATURE_NAMES))
            features[FEATURE_NAMES.index("jaw_open")] = values["jawOpen"] * self.config.features.scales["jaw_open"]
            outputs.append(self._output(stamp, "fallback", weights, features, chunk.frame_id, values))
        return outputs

    def _output(self, stamp: int, source: str, weights: np.ndarray, features: np.ndarray, frame_id: str,
                extra: dict[str, float] | None = None) -> RetargetOutput:
        named = dict(zip(FEATURE_NAMES, (float(f) for f in features)))
        values: dict[str, float] = dict(extra or {})
        values.update(zip(self.names, (float(w) for w in weights)))
        scales = self.config.features.scales
        for name, value in named.items():
            values[name] = float(np.clip(value / scales[name], -1.0, 1.0))
        command = None
        if self.bank.specs:
            targets = self.bank.targets(self.bank.drive_levels(values))
            command = self.bank.command(self.bank.update(targets, stamp), stamp, self.presentation_delay_ms)
        head = tuple(named[n] for n in ANGLE_FEATURES[:3])
        return RetargetOutput(stamp, source, BlendshapeWeights(stamp, list(self.names), weights, frame_id),
                              named, head, actuators=command)

    # -- outputs for the world ---------------------------------------------------------------

    def livelink_frame(self, output: RetargetOutput) -> LiveLinkFrame | None:
        if output.blendshapes is None:
            return None
        weights = dict(zip(output.blendshapes.names, output.blendshapes.weights.tolist()))
        return make_frame(output.stamp_ns, weights, output.head_rotation, output.eye_rotations,
                          self.config.livelink_subject, self.config.livelink_device_id)

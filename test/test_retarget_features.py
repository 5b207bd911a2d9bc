"""Features measured on the mesh: head pose removed first, each feature reads its own
muscle, and the calibrated ranges give ARKit weights."""

import numpy as np
import pytest

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.regions import Regions
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.features import (
    DEFAULT_RANGES,
    FEATURE_NAMES,
    VERTEX_SETS,
    FeatureExtractor,
    FeatureMapping,
    euler_from_matrix,
    matrix_from_euler,
    rodrigues,
)
from moshiface_ros.retarget.marker import decimate_faces, triangle_list
from moshiface_ros.retarget.synthetic import synthetic_face


@pytest.fixture(scope="module")
def face():
    return synthetic_face(5023)


@pytest.fixture(scope="module")
def extractor(face):
    return FeatureExtractor.from_regions(face.neutral, face.regions)


def _features(extractor, displacement, **kw):
    return dict(zip(FEATURE_NAMES, extractor.measure(displacement, **kw)))


def _shape(face, name, weight=1.0):
    return face.rig.deltas[ARKIT_52.index(name)] * weight


def test_euler_round_trip():
    for angles in [(0.3, -0.2, 0.1), (-0.5, 0.4, -0.3), (0.0, 0.0, 0.0)]:
        assert euler_from_matrix(matrix_from_euler(*angles)) == pytest.approx(angles, abs=1e-12)
    assert np.allclose(rodrigues([0.0, 0.4, 0.0]), matrix_from_euler(0.4, 0.0, 0.0))


def test_each_feature_reads_its_own_shape(extractor, face):
    jaw = _features(extractor, _shape(face, "jawOpen", 0.5))
    assert jaw["jaw_open"] == pytest.approx(0.0066, rel=0.1)
    smile = _features(extractor, _shape(face, "mouthSmileLeft"))
    assert smile["lip_corner_raise_left"] > 0.002 and abs(smile["lip_corner_raise_right"]) < 0.0005
    blink = _features(extractor, _shape(face, "eyeBlinkRight"))
    assert blink["eyelid_closure_right"] > 0.004 and abs(blink["eyelid_closure_left"]) < 0.0003
    brow = _features(extractor, _shape(face, "browOuterUpLeft"))
    assert brow["brow_raise_left"] > 0.0015 and abs(brow["brow_raise_right"]) < 0.0005
    pucker = _features(extractor, _shape(face, "mouthPucker"))
    assert pucker["lip_pucker"] > 0.0015 and pucker["mouth_width"] < -0.004
    for name, value in _features(extractor, np.zeros_like(face.neutral)).items():
        assert value == 0.0, name


def test_head_rotation_is_measured_and_removed(extractor, face):
    truth = (0.25, -0.15, 0.1)
    expression = _shape(face, "jawOpen", 0.8) + _shape(face, "mouthSmileLeft")
    r = matrix_from_euler(*truth)
    moved = (face.neutral + expression) @ r.T + np.array([0.01, -0.02, 0.005])
    rotated = _features(extractor, moved - face.neutral)
    still = _features(extractor, expression)
    assert (rotated["head_yaw"], rotated["head_pitch"], rotated["head_roll"]) == pytest.approx(truth, abs=2e-3)
    for name in ("jaw_open", "lip_corner_raise_left", "eyelid_closure_left"):
        assert rotated[name] == pytest.approx(still[name], abs=2e-4), name
    # FLAME's own global pose wins over the mesh's when the frame carries it
    given = _features(extractor, moved - face.neutral, global_pose=np.array([0.0, 0.5, 0.0]))
    assert given["head_yaw"] == pytest.approx(0.5)


def test_eye_pose_gives_gaze_angles(extractor, face):
    pose = np.array([0.0, 0.3, 0.0, 0.2, 0.0, 0.0])  # left eye yaw 0.3, right eye pitch 0.2
    got = _features(extractor, np.zeros_like(face.neutral), eye_pose=pose)
    assert got["eye_yaw_left"] == pytest.approx(0.3) and got["eye_pitch_right"] == pytest.approx(0.2)


def test_mapping_gives_calibrated_weights(extractor, face):
    mapping = FeatureMapping(list(DEFAULT_RANGES), list(ARKIT_52))
    for name, weight in (("jawOpen", 0.5), ("mouthSmileLeft", 0.8), ("eyeBlinkLeft", 1.0), ("browInnerUp", 0.7)):
        w = dict(zip(ARKIT_52, mapping.weights(extractor.measure(_shape(face, name, weight)))))
        assert w[name] == pytest.approx(weight, abs=0.25), name
    w = mapping.weights(extractor.measure(_shape(face, "jawOpen", 5.0)))
    assert w.max() <= 1.0 and w.min() >= 0.0
    assert w[ARKIT_52.index("jawOpen")] == 1.0


def test_vertex_sets_from_configuration(face):
    explicit = {name: [i, i + 1] for i, name in enumerate(VERTEX_SETS)}
    extractor = FeatureExtractor.from_regions(face.neutral, Regions(len(face.neutral)), explicit)
    assert extractor.sets["chin"].tolist() == [VERTEX_SETS.index("chin"), VERTEX_SETS.index("chin") + 1]
    with pytest.raises(MoshifaceError, match="features.vertices.chin"):
        FeatureExtractor.from_regions(face.neutral, face.regions, {"chin": [10**6]})
    with pytest.raises(MoshifaceError, match="region 'lips'"):
        FeatureExtractor.from_regions(face.neutral, Regions(len(face.neutral)))


def test_marker_triangle_list(face):
    points = triangle_list(face.neutral, face.faces)
    assert points.shape == (3 * len(face.faces), 3)
    assert np.array_equal(points[3:6], face.neutral[face.faces[1]])
    assert len(decimate_faces(face.faces, 1000)) == 1000 and len(decimate_faces(face.faces, 0)) == len(face.faces)
    with pytest.raises(ValueError):
        triangle_list(face.neutral[:10], face.faces)

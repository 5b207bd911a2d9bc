"""The FLAME fit on landmarks projected from the synthetic model with known parameters, the
landmark embedding, identity calibration, the One-Euro filter and the tracker's output.

Tolerances (noise-free landmarks, 640 x 480 pinhole camera, face 0.6 m away, 50 or 100
expression components): reprojection < 0.2 px, head rotation < 1 degree, translation
< 5 mm (mostly depth), jaw < 0.01 rad, landmark positions in 3D < 1 mm. With 0.5 px landmark noise:
rotation < 1.5 degrees, translation < 10 mm, jaw < 0.05 rad, landmarks < 1.5 mm.
"""

from __future__ import annotations

import numpy as np
import pytest

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.flame.lbs import rodrigues, rotation_to_axis_angle
from moshiface_ros.flame.model import FlameParams
from moshiface_ros.flame.synthetic import build_synthetic_flame
from moshiface_ros.tracking.embedding import INNER_LIP_LOWER, INNER_LIP_UPPER, LandmarkEmbedding, build_embedding
from moshiface_ros.tracking.fit import FLIP, Camera, FaceFitter, FitConfig
from moshiface_ros.tracking.landmark_model import LandmarkModel
from moshiface_ros.tracking.landmarks import Landmarks
from moshiface_ros.tracking.one_euro import OneEuroFilter
from moshiface_ros.tracking.reference import load_reference
from moshiface_ros.tracking.tracker import FaceTracker, TrackerConfig

CAMERA = Camera.for_image(640, 480)


@pytest.fixture(scope="module")
def flame():
    return build_synthetic_flame(0)


@pytest.fixture(scope="module")
def embedding(flame):
    return build_embedding(flame)


def project(fitter: FaceFitter, beta, psi, jaw, rotation, translation, noise_px=0.0, seed=0):
    """MediaPipe-shaped (478, 2) landmarks of the synthetic head: rotation is FLAME's global
    pose in the OpenGL camera frame, translation of the landmarks' frame in metres."""
    points = fitter.model.points(np.asarray(beta, float), np.asarray(psi, float), np.asarray(jaw, float))
    R = FLIP @ rodrigues(np.asarray(rotation, float))
    X = points @ R.T + np.asarray(translation, float)
    out = np.zeros((478, 2))
    out[fitter.model.landmark_ids] = CAMERA.project(X) + np.random.default_rng(seed).normal(size=(len(X), 2)) * noise_px
    return out, R


# -- embedding ------------------------------------------------------------------------------


def test_embedding_places_the_reference_face_on_the_model(flame, embedding):
    reference, _ = load_reference()
    assert len(embedding) == 468 and embedding.num_vertices == 5023
    np.testing.assert_allclose(embedding.barycentric.sum(1), 1.0, atol=1e-9)
    assert (embedding.barycentric >= -1e-9).all()
    points = embedding.points(flame, flame.v_template)
    error = np.linalg.norm(points - reference[:468], axis=1)
    # the reference's lips are parted, the head's meet at rest: the inner-lip landmarks go to the lips' rim
    inner = np.isin(np.arange(468), INNER_LIP_UPPER + INNER_LIP_LOWER)
    assert error[~inner].mean() < 1e-3 and error[~inner].max() < 4e-3  # metres
    assert np.linalg.norm(points[13] - points[14]) < 1e-3 and error[inner].max() < 8e-3
    # no landmark lands on an eyeball
    assert (flame.weights[embedding.vertex_ids(flame).reshape(-1), 3:5] < 0.5).all()


def test_embedding_file_round_trip_and_errors(flame, embedding, tmp_path):
    path = embedding.save(tmp_path / "embedding.npz")
    loaded = LandmarkEmbedding.load(path)
    np.testing.assert_array_equal(loaded.triangles, embedding.triangles)
    np.testing.assert_allclose(loaded.barycentric, embedding.barycentric)
    assert loaded.num_vertices == 5023 and "synthetic" in loaded.source
    with pytest.raises(MoshifaceError, match="does not exist.*moshiface flame embedding"):
        LandmarkEmbedding.load(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(MoshifaceError, match="not a landmark embedding"):
        LandmarkEmbedding.load(tmp_path / "text.npz")
    bad = LandmarkEmbedding(embedding.landmark_ids, embedding.triangles, embedding.barycentric, 5143)
    with pytest.raises(MoshifaceError, match="5143-vertex"):
        bad.check(flame)


def test_landmark_model_equals_full_flame(flame, embedding):
    model = LandmarkModel(flame, embedding, 300, 100)
    rng = np.random.default_rng(1)
    beta, psi, jaw = rng.normal(size=300), rng.normal(size=100), np.array([0.3, 0.05, -0.02])
    full = flame.forward(FlameParams(shape=beta, expression=psi, jaw_pose=jaw))
    np.testing.assert_allclose(model.points(beta, psi, jaw), embedding.points(flame, full), atol=1e-8)


# -- the per-frame fit ----------------------------------------------------------------------


@pytest.mark.parametrize("num_expression", [50, 100])
def test_fit_recovers_known_parameters(flame, embedding, num_expression):
    fitter = FaceFitter(flame, embedding, FitConfig(num_expression=num_expression, num_shape=100))
    rng = np.random.default_rng(3)
    psi = rng.normal(size=num_expression) * 0.7
    jaw, rotation, translation = np.array([0.2, 0.0, 0.0]), np.array([0.1, 0.25, 0.05]), np.array([0.02, -0.01, 0.6])
    obs, R = project(fitter, np.zeros(100), psi, jaw, rotation, translation)
    result = fitter.fit(obs, CAMERA, iterations=10)  # cold start: PnP, then Gauss-Newton
    s = result.state
    assert result.rms_px < 0.2
    assert np.degrees(np.linalg.norm(rotation_to_axis_angle(s.rotation @ R.T))) < 1.0
    assert np.linalg.norm(s.translation - translation) < 5e-3
    assert np.linalg.norm(s.jaw - jaw) < 0.01
    truth = fitter.model.points(np.zeros(100), psi, jaw)
    assert np.linalg.norm(fitter.model.points(np.zeros(100), s.expression, s.jaw) - truth, axis=1).mean() < 1e-3
    global_pose, _ = fitter.flame_pose(s)
    np.testing.assert_allclose(global_pose, rotation, atol=0.01)


def test_fit_with_noisy_landmarks_and_warm_start(flame, embedding):
    fitter = FaceFitter(flame, embedding, FitConfig(num_expression=50))
    rng = np.random.default_rng(4)
    previous = None
    for k in range(6):  # a head turning while the mouth opens
        psi = np.sin(k / 3 + np.arange(50)) * 0.5
        jaw, rotation = np.array([0.03 * k, 0, 0]), np.array([0.05, 0.04 * k, 0.0])
        translation = np.array([0.0, 0.0, 0.6 + 0.01 * k])
        obs, R = project(fitter, np.zeros(100), psi, jaw, rotation, translation, noise_px=0.5, seed=k)
        result = fitter.fit(obs, CAMERA, previous)
        previous = result.state
        s = result.state
        assert np.degrees(np.linalg.norm(rotation_to_axis_angle(s.rotation @ R.T))) < 1.5
        assert np.linalg.norm(s.translation - translation) < 0.01
        assert np.linalg.norm(s.jaw - jaw) < 0.05
        truth = fitter.model.points(np.zeros(100), psi, jaw)
        assert np.linalg.norm(fitter.model.points(np.zeros(100), s.expression, s.jaw) - truth, axis=1).mean() < 1.5e-3
    assert rng is not None


def test_identity_calibration_recovers_the_neutral_face(flame, embedding):
    fitter = FaceFitter(flame, embedding, FitConfig(num_expression=50, num_shape=100))
    rng = np.random.default_rng(5)
    beta = rng.normal(size=100) * 0.8
    frames = []
    for _ in range(5):
        frames.append(project(fitter, beta, rng.normal(size=50) * 0.4, [rng.uniform(0, 0.2), 0, 0],
                              rng.normal(size=3) * 0.15, [0, 0, 0.6] + rng.normal(size=3) * 0.02)[0])
    shape, results = fitter.calibrate(frames, CAMERA)
    assert max(r.rms_px for r in results) < 0.5
    face = embedding.vertex_ids(flame).reshape(-1)
    truth = flame.neutral(beta)[face]
    error = np.linalg.norm(flame.neutral(shape)[face] - truth, axis=1).mean()
    error_without = np.linalg.norm(flame.neutral()[face] - truth, axis=1).mean()
    assert error < 0.5 * error_without, (error, error_without)
    np.testing.assert_array_equal(fitter.shape, shape)


# -- One-Euro filter ------------------------------------------------------------------------


def test_one_euro_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(100) / 25.0
    still = 1.0 + rng.normal(size=100) * 0.05
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(still, t)])
    assert out[20:].std() < 0.5 * still[20:].std()
    f.reset()
    ramp = 2.0 * t  # 2 units per second
    out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(ramp, t)])
    assert np.abs(out[25:] - ramp[25:]).max() < 0.2  # lag below 0.1 s at speed
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)


# -- the tracker on landmarks ---------------------------------------------------------------


def test_tracker_outputs_displacement_and_face_absent_frames(flame, embedding):
    tracker = FaceTracker(flame, embedding, TrackerConfig(calibration_frames=1))
    fitter = tracker.fitter
    obs, _ = project(fitter, np.zeros(100), np.zeros(50), [0.15, 0, 0], [0, 0.1, 0], [0, 0, 0.6])
    frames = []
    for k in range(3):
        frames.append(tracker.track(Landmarks(np.c_[obs, np.zeros(478)], 640, 480), k * 40_000_000).frame)
    frame = frames[-1]
    assert frame.face_present and frame.is_displacement and frame.vertices.shape == (5023, 3)
    assert frame.expression.shape == (50,) and frame.eye_pose.shape == (6,) and frame.frame_id == "user_camera"
    np.testing.assert_allclose(frame.jaw_pose, [0.15, 0, 0], atol=0.02)
    # the displacement is the jaw opening: large under the mouth, nothing on the skull
    moving = np.linalg.norm(frame.vertices, axis=1)
    assert moving[flame.weights[:, 2] > 0.9].mean() > 3e-3
    assert moving[flame.weights[:, 2] == 0].max() < 2e-3
    absent = tracker.track(None, 3 * 40_000_000).frame
    assert not absent.face_present and absent.stamp_ns == 120_000_000
    assert not absent.vertices.any() and absent.vertices.shape == (5023, 3) and not absent.expression.any()
    # after a gap, the face is fitted afresh (no warm start from before the gap)
    assert tracker._previous is None

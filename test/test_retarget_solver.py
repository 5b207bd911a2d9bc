"""The blendshape solver recovers a rig's own weights and always stays in bounds."""

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.retarget.arkit import ARKIT_52
from moshiface_ros.retarget.rig import Rig, load_rig, save_rig
from moshiface_ros.retarget.solver import (
    BlendshapeSolver,
    SolverConfig,
    box_qp,
    region_vertex_weights,
)
from moshiface_ros.retarget.synthetic import (
    FLAME_TEETH_VERTICES,
    FLAME_VERTICES,
    synthetic_face,
)

NO_REGULARISATION = SolverConfig(l1=0.0, l2=0.0, temporal=0.0, symmetry=0.0)


@pytest.fixture(scope="module")
def face():
    return synthetic_face(FLAME_TEETH_VERTICES)


def _exclusive_weights(rng, solver, density=0.4):
    """Random weights in [0, 1] that respect the rig's mutually exclusive pairs."""
    w = rng.uniform(0.0, 1.0, len(solver.names)) * (rng.uniform(size=len(solver.names)) < density)
    for a, b in solver.exclusive_pairs:
        if w[a] > 0 and w[b] > 0:
            w[b] = 0.0
    return w


def test_synthetic_face_has_flame_vertex_counts_and_regions():
    for count in (FLAME_VERTICES, FLAME_TEETH_VERTICES):
        face = synthetic_face(count)
        assert face.neutral.shape == (count, 3) and face.rig.deltas.shape == (52, count, 3)
        assert face.rig.names == list(ARKIT_52)
        for name in ("lips", "left_eye_region", "right_eye_region", "forehead", "nose", "eye_region", "face"):
            assert face.regions.get(name).size > 10
        assert face.faces.max() < count


def test_rig_is_derived_from_the_synthetic_head(face):
    """jawOpen is the head's jaw joint opening, eyeBlinkLeft its left blink, mouthSmileLeft its smile
    on the face's left half only: the virtual head moves as the head every other stage uses."""
    from moshiface_ros.flame.model import FlameParams
    from moshiface_ros.flame.motion_head import motion_head
    from moshiface_ros.flame.synthetic_expressions import EXPRESSION

    head = motion_head(FLAME_TEETH_VERTICES)
    np.testing.assert_allclose(face.neutral, head.neutral, atol=1e-6)
    deltas = dict(zip(ARKIT_52, face.rig.deltas.astype(np.float64)))
    cosine = lambda a, b: float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    jaw = head.pose(FlameParams(jaw_pose=[0.2, 0.0, 0.0])) - head.neutral
    assert cosine(deltas["jawOpen"], jaw) > 0.97
    blink = head.model.exprdirs[:, :, EXPRESSION["blink_left"]].astype(np.float64)
    assert cosine(deltas["eyeBlinkLeft"], blink) > 0.97
    assert np.abs(deltas["eyeBlinkLeft"][face.regions.get("eye_right")]).max() < 1e-4
    smile = np.linalg.norm(deltas["mouthSmileLeft"], axis=1)
    x = head.neutral[:, 0]
    assert smile[x > 0.01].max() > 0.002 and smile[x < -0.01].max() < 0.1 * smile[x > 0.01].max()
    assert np.abs(deltas["jawOpen"][face.regions.get("teeth")]).max() > 0.003  # the lower teeth follow the jaw


def test_noiseless_weights_are_recovered(face):
    weights = region_vertex_weights(face.rig.vertices, face.regions, {"lips": 4.0, "eye_region": 3.0})
    solver = BlendshapeSolver(face.rig, NO_REGULARISATION, weights)
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = _exclusive_weights(rng, solver)
        solved = solver.solve(face.rig.synthesise(truth))
        assert solved.dtype == np.float32 and solved.shape == (52,)
        assert np.abs(solved - truth).max() <= 1e-3


def test_default_regularisation_stays_close_on_smooth_motion(face):
    solver = BlendshapeSolver(face.rig, SolverConfig(symmetry=0.0))
    rng = np.random.default_rng(1)
    start, end = _exclusive_weights(rng, solver), _exclusive_weights(rng, solver)
    errors = []
    for t in np.linspace(0.0, 1.0, 10):
        truth = (1 - t) * start + t * end
        for a, b in solver.exclusive_pairs:  # the blend of two exclusive sets may not be
            if truth[a] > 0 and truth[b] > 0:
                truth[a if truth[a] < truth[b] else b] = 0.0
        errors.append(np.abs(solver.solve(face.rig.synthesise(truth)) - truth).max())
    assert max(errors) < 0.05


def test_solution_is_the_optimum_of_the_stated_problem(face):
    """Against scipy's bounded least squares on the same (regularised) objective."""
    config = SolverConfig(l1=0.0, l2=1e-3, temporal=0.0, symmetry=0.0, exclusive_pairs=[])
    solver = BlendshapeSolver(face.rig, config)
    rng = np.random.default_rng(2)
    y = face.rig.synthesise(rng.uniform(0, 1, 52)) + rng.normal(0, 5e-4, (face.rig.vertices, 3)).astype(np.float32)
    ours = solver.solve(y)
    d = face.rig.deltas.reshape(52, -1).T.astype(np.float64) / np.sqrt(solver.scale)
    energy = np.sqrt(config.l2 * np.sum(d * d, axis=0))
    a = np.vstack([d, np.diag(energy)])
    b = np.concatenate([y.reshape(-1) / np.sqrt(solver.scale), np.zeros(52)])
    theirs = lsq_linear(a, b, bounds=(0, 1), tol=1e-12).x
    assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize("case", ["huge", "negative", "noise", "zeros", "inf-free extreme"])
def test_weights_always_in_bounds(face, case):
    solver = BlendshapeSolver(face.rig)
    rng = np.random.default_rng(3)
    y = {"huge": face.rig.synthesise(rng.uniform(0, 50, 52)),
         "negative": -face.rig.synthesise(rng.uniform(0, 3, 52)),
         "noise": rng.normal(0, 0.05, (face.rig.vertices, 3)),
         "zeros": np.zeros((face.rig.vertices, 3)),
         "inf-free extreme": np.full((face.rig.vertices, 3), 1e6)}[case]
    for _ in range(3):
        w = solver.solve(y)
        assert np.isfinite(w).all() and (w >= 0).all() and (w <= 1).all()


def test_exclusive_pairs_are_never_both_active(face):
    solver = BlendshapeSolver(face.rig, NO_REGULARISATION)
    smile, frown = ARKIT_52.index("mouthSmileLeft"), ARKIT_52.index("mouthFrownLeft")
    both = np.zeros(52)
    both[smile], both[frown] = 0.8, 0.3
    w = solver.solve(face.rig.synthesise(both))
    assert w[frown] == 0.0 and w[smile] > 0.3
    for i, j in solver.exclusive_pairs:
        assert min(w[i], w[j]) == 0.0


def test_symmetry_term_pulls_left_and_right_together(face):
    left, right = ARKIT_52.index("eyeBlinkLeft"), ARKIT_52.index("eyeBlinkRight")
    truth = np.zeros(52)
    truth[left] = 0.8
    y = face.rig.synthesise(truth)
    free = BlendshapeSolver(face.rig, NO_REGULARISATION).solve(y)
    tied = BlendshapeSolver(face.rig, SolverConfig(l1=0, l2=0, temporal=0, symmetry=1.0)).solve(y)
    assert abs(tied[left] - tied[right]) < abs(free[left] - free[right]) - 0.2


def test_temporal_term_smooths_a_jump(face):
    jaw = ARKIT_52.index("jawOpen")
    truth = np.zeros(52)
    truth[jaw] = 1.0
    solver = BlendshapeSolver(face.rig, SolverConfig(l1=0, l2=0, temporal=1.0, symmetry=0))
    solver.solve(np.zeros((face.rig.vertices, 3)))
    first = solver.solve(face.rig.synthesise(truth))[jaw]
    assert 0.2 < first < 0.8  # half way: data and previous frame weigh alike
    solver.reset()
    assert solver.solve(face.rig.synthesise(truth))[jaw] > 0.99


def test_box_qp_matches_brute_force_on_a_tiny_problem():
    rng = np.random.default_rng(4)
    m = rng.normal(size=(3, 3))
    h = m @ m.T + 0.1 * np.eye(3)
    q = rng.normal(size=3) * 3
    w, _ = box_qp(h, q, np.ones(3), np.zeros(3))
    grid = np.stack(np.meshgrid(*[np.linspace(0, 1, 101)] * 3), -1).reshape(-1, 3)
    values = 0.5 * np.einsum("ni,ij,nj->n", grid, h, grid) - grid @ q
    assert 0.5 * w @ h @ w - q @ w <= values.min() + 1e-9


def test_rig_file_round_trip_and_errors(tmp_path, face):
    path = save_rig(face.rig, tmp_path / "rig.npz")
    rig = load_rig(path)
    assert rig.names == face.rig.names and np.array_equal(rig.deltas, face.rig.deltas)
    assert rig.faces is not None and rig.neutral is not None
    np.savez(tmp_path / "bad.npz", names=np.array(["a", "b"]), deltas=np.zeros((3, 10, 3)))
    with pytest.raises(MoshifaceError, match="deltas"):
        load_rig(tmp_path / "bad.npz")
    np.savez(tmp_path / "nonames.npz", deltas=np.zeros((3, 10, 3)))
    with pytest.raises(MoshifaceError, match="names"):
        load_rig(tmp_path / "nonames.npz")
    with pytest.raises(MoshifaceError, match="does not exist"):
        load_rig(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(MoshifaceError, match="text.npz"):
        load_rig(tmp_path / "text.npz")
    assert isinstance(Rig(["a"], np.zeros((1, 4, 3), np.float32)).synthesise([1.0]), np.ndarray)

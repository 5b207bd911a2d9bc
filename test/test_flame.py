"""FLAME: the restricted unpickler, loading FLAME-format pickles, skinning (numpy and torch),
the teeth extension and the synthetic model every other test stands on."""

from __future__ import annotations

import io
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.flame import lbs
from moshiface_ros.flame.model import FlameModel, FlameParams
from moshiface_ros.flame.pickle_loader import load_pickle, restricted_load
from moshiface_ros.flame.synthetic import (
    build_synthetic_flame,
    synthetic_masks,
    write_flame_pickle,
)
from moshiface_ros.flame.teeth import TEETH_FACES, TEETH_VERTICES, add_teeth


@pytest.fixture(scope="module")
def flame() -> FlameModel:
    return build_synthetic_flame(0)


@pytest.fixture(scope="module")
def flame_with_teeth(flame):
    from moshiface_ros.tracking.embedding import build_embedding, teeth_anchors

    return add_teeth(flame, teeth_anchors(flame, build_embedding(flame)))


# -- the synthetic model --------------------------------------------------------------------


def test_synthetic_model_has_flames_dimensions(flame):
    assert flame.v_template.shape == (5023, 3)
    assert flame.faces.shape == (9864, 3)  # FLAME has 9,976; the synthetic head's own layout has 9,864
    assert flame.shapedirs.shape == (5023, 3, 300) and flame.exprdirs.shape == (5023, 3, 100)
    assert flame.posedirs.shape == (5023, 3, 36)
    assert flame.J_regressor.shape == (5, 5023) and flame.weights.shape == (5023, 5)
    assert list(flame.parents) == [-1, 0, 1, 1, 1]
    np.testing.assert_allclose(flame.weights.sum(1), 1.0, atol=1e-9)
    np.testing.assert_allclose(flame.J_regressor.sum(1), 1.0, atol=1e-9)
    # a closed surface except the neck opening (72 edges), the mouth slit (16 edges on each lip), the
    # eye slits (8 on each lid) and the mouth lining's border (2 x (12 + 8)): every other edge has two triangles
    f = flame.faces
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert set(counts) == {1, 2} and (counts == 1).sum() == 72 + 2 * 16 + 2 * 2 * 8 + 2 * (12 + 8)
    assert len(np.unique(f)) == 5023


def test_synthetic_bases_are_spatially_smooth(flame):
    """Neighbouring vertices move alike: a random basis would differ as much as its size."""
    f = flame.faces[:8712]  # the skin's triangles
    a, b = f[:, 0], f[:, 1]
    for dirs in (flame.shapedirs[:, :, :20], flame.exprdirs[:, :, :20]):
        diff = np.linalg.norm(dirs[a] - dirs[b], axis=1).mean()
        size = (np.linalg.norm(dirs[a], axis=1) + np.linalg.norm(dirs[b], axis=1)).mean() / 2
        assert diff < 0.5 * size  # independent random vectors: about 1.4


def test_synthetic_model_is_reproducible_and_seeded():
    a, b, c = build_synthetic_flame(0), build_synthetic_flame(0), build_synthetic_flame(1)
    np.testing.assert_array_equal(a.shapedirs, b.shapedirs)
    assert not np.allclose(a.shapedirs, c.shapedirs)


# -- loading pickles ------------------------------------------------------------------------


def test_pickle_round_trip_in_flames_format(flame, tmp_path):
    path = write_flame_pickle(flame, tmp_path / "generic_model.pkl")
    with open(path, "rb") as f:  # FLAME's layout: a dict, J_regressor a scipy sparse matrix
        raw = pickle.load(f)
    assert scipy.sparse.issparse(raw["J_regressor"]) and raw["shapedirs"].shape == (5023, 3, 400)
    loaded = FlameModel.load(path)
    for name in ("v_template", "faces", "shapedirs", "exprdirs", "posedirs", "J_regressor", "weights", "parents"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(flame, name), rtol=1e-6, err_msg=name)
    params = FlameParams(shape=np.ones(10), expression=np.ones(5), jaw_pose=[0.2, 0, 0])
    np.testing.assert_allclose(loaded.forward(params), flame.forward(params), atol=1e-6)
    assert not list(tmp_path.glob("*.tmp"))


def _chumpy_style_pickle(flame: FlameModel) -> bytes:
    """Bytes shaped like FLAME 2020's file: chumpy ``Ch`` objects (state dict with the value in
    'x' and bookkeeping sets), numpy arrays, a scipy CSC J_regressor, protocol 2."""
    module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = {"x"}
            self._itr = None

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    module.Ch = Ch
    package = types.ModuleType("chumpy")
    package.ch = module
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        arrays = flame.to_arrays()
        data = {key: (Ch(value) if key in ("v_template", "shapedirs", "posedirs") else value)
                for key, value in arrays.items()}
        data["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        data["bs_style"] = "lbs"
        return pickle.dumps(data, protocol=2)
    finally:
        del sys.modules["chumpy.ch"], sys.modules["chumpy"]


def test_chumpy_arrays_load_as_numpy_without_chumpy(flame, tmp_path):
    blob = _chumpy_style_pickle(flame)
    assert b"chumpy.ch" in blob
    path = tmp_path / "flame2020.pkl"
    path.write_bytes(blob)
    loaded = FlameModel.load(path)
    assert "chumpy" not in sys.modules
    np.testing.assert_allclose(loaded.v_template, flame.v_template)
    np.testing.assert_allclose(loaded.exprdirs, flame.exprdirs)


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("payload,named", [
    (lambda marker: _Evil(f"touch {marker}"), "os.system" if sys.platform != "win32" else "nt.system"),
    (lambda marker: {"v_template": _Reduce(eval, (f"open({str(marker)!r}, 'w')",))}, "builtins.eval"),
    (lambda marker: {"x": _Reduce(np.load, (str(marker),))}, "numpy.load"),
    (lambda marker: _Reduce(__import__("subprocess").call, (["touch", str(marker)],)), "subprocess.call"),
])
def test_malicious_pickle_is_refused_naming_the_global(tmp_path, payload, named):
    marker = tmp_path / "pwned"
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(MoshifaceError) as err:
        FlameModel.load(path)
    message = str(err.value)
    assert named.split(".")[-1] in message and "refusing" in message and "\n" not in message
    assert not marker.exists()


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_reconstructor_cannot_build_other_classes():
    """copyreg._reconstructor is allowed for ndarray/chumpy objects only, never for a class
    smuggled in through another allowed name."""
    blob = b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nobject\nNtR."
    with pytest.raises(MoshifaceError, match="not allowed"):
        restricted_load(io.BytesIO(blob))


@pytest.mark.parametrize("content,words", [
    (b"", "not a readable pickle"),
    (b"this is text", "not a readable pickle"),
    (pickle.dumps([1, 2, 3], protocol=2), "not a FLAME model"),
    (pickle.dumps({"v_template": np.zeros((10, 3))}, protocol=2), "missing"),
])
def test_bad_flame_files_give_one_line_errors(tmp_path, content, words):
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(MoshifaceError, match=words) as err:
        FlameModel.load(path)
    assert "\n" not in str(err.value)


def test_missing_file_and_wrong_dimensions(flame, tmp_path):
    with pytest.raises(MoshifaceError, match="does not exist"):
        load_pickle(tmp_path / "nope.pkl")
    arrays = flame.to_arrays()
    arrays["posedirs"] = arrays["posedirs"][:, :, :30]
    with pytest.raises(MoshifaceError, match="posedirs"):
        FlameModel.from_arrays(arrays)
    arrays = flame.to_arrays()
    arrays["shapedirs"] = arrays["shapedirs"][:, :, :300]  # identity only, no expression
    with pytest.raises(MoshifaceError, match="shapedirs"):
        FlameModel.from_arrays(arrays)


# -- skinning -------------------------------------------------------------------------------


def test_rodrigues_and_its_inverse():
    rng = np.random.default_rng(0)
    for r in [np.zeros(3), np.array([1e-9, 0, 0]), rng.normal(size=3), np.array([0, np.pi - 1e-6, 0])]:
        R = lbs.rodrigues(r)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
        np.testing.assert_allclose(lbs.rodrigues(lbs.rotation_to_axis_angle(R)), R, atol=1e-6)


def test_each_joint_moves_only_its_part(flame):
    rest = flame.forward(FlameParams())
    np.testing.assert_allclose(rest, flame.v_template, atol=1e-12)
    eye = flame.weights[:, 3] > 0.5
    moved = np.linalg.norm(flame.forward(FlameParams(eye_pose=[0, 0.3, 0, 0, 0, 0])) - rest, axis=1)
    assert moved[eye].min() > 1e-4 and moved[~eye].max() == 0
    jaw = flame.forward(FlameParams(jaw_pose=[0.3, 0, 0]))
    moved = np.linalg.norm(jaw - rest, axis=1)
    assert moved[flame.weights[:, 2] > 0.5].min() > 1e-3 and moved[flame.weights[:, 2] == 0].max() < 1e-2
    # jaw opening (positive x rotation) moves the chin down
    chin = np.argmax(flame.weights[:, 2] * -flame.v_template[:, 1])
    assert jaw[chin, 1] < rest[chin, 1]
    # global pose rotates everything rigidly about the root joint, then translates
    R = lbs.rodrigues(np.array([0.1, 0.5, -0.2]))
    J0 = flame.joints(flame.v_template)[0]
    posed = flame.forward(FlameParams(global_pose=[0.1, 0.5, -0.2], translation=[0.1, 0.2, 0.3]))
    np.testing.assert_allclose(posed, (flame.v_template - J0) @ R.T + J0 + [0.1, 0.2, 0.3], atol=1e-9)


def test_numpy_and_torch_skinning_agree(flame):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(2)
    params = [FlameParams(shape=rng.normal(size=300), expression=rng.normal(size=100),
                          global_pose=rng.normal(size=3) * 0.3, neck_pose=rng.normal(size=3) * 0.2,
                          jaw_pose=[0.25, 0.02, 0.01], eye_pose=rng.normal(size=6) * 0.2,
                          translation=rng.normal(size=3) * 0.1) for _ in range(2)]
    from moshiface_ros.flame.torch_layer import FlameLayer

    layer = FlameLayer(flame)
    batch = {name: torch.tensor(np.stack([getattr(p, name) for p in params]), dtype=torch.float32)
             for name in ("shape", "expression", "global_pose", "neck_pose", "jaw_pose", "eye_pose", "translation")}
    out = layer(**batch).detach().numpy()
    for i, p in enumerate(params):
        np.testing.assert_allclose(out[i], flame.forward(p), atol=2e-5)
    # differentiable: gradients reach the expression
    expression = batch["expression"].clone().requires_grad_(True)
    layer(expression=expression).sum().backward()
    assert torch.isfinite(expression.grad).all() and expression.grad.abs().sum() > 0


# -- teeth ----------------------------------------------------------------------------------


def test_teeth_extension_matches_vhaps_layout(flame, flame_with_teeth):
    model = flame_with_teeth
    assert model.num_vertices == 5023 + TEETH_VERTICES == 5143
    assert len(model.faces) == 9864 + TEETH_FACES == 10032
    assert model.faces[9864:].min() >= 5023
    upper, lower = np.arange(5023, 5083), np.arange(5083, 5143)
    assert (model.weights[upper, 1] == 1).all() and (model.weights[lower, 2] == 1).all()
    rest = model.forward(FlameParams())
    # expression does not move the teeth
    expr = model.forward(FlameParams(expression=np.ones(100)))
    np.testing.assert_allclose(expr[5023:], rest[5023:], atol=1e-12)
    # the jaw moves the lower row only, the neck both
    jaw = model.forward(FlameParams(jaw_pose=[0.3, 0, 0]))
    assert np.abs(jaw[upper] - rest[upper]).max() < 1e-12
    assert np.linalg.norm(jaw[lower] - rest[lower], axis=1).min() > 1e-3
    neck = model.forward(FlameParams(neck_pose=[0, 0.3, 0]))
    assert np.linalg.norm(neck[upper] - rest[upper], axis=1).min() > 1e-3
    # the teeth sit inside the mouth, behind the lips
    masks = synthetic_masks(flame)
    lips = flame.v_template[masks["lips"]]
    teeth = model.v_template[5023:]
    assert teeth[:, 2].max() < lips[:, 2].max()
    assert lips[:, 1].min() - 0.01 < teeth[:, 1].min() and teeth[:, 1].max() < lips[:, 1].max() + 0.01
    with pytest.raises(MoshifaceError, match="already"):
        from moshiface_ros.flame.teeth import TeethAnchors

        add_teeth(model, TeethAnchors(*([np.zeros(3)] * 4)))

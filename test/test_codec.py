"""The face codec: shapes, streaming equality, checkpoints, training, metrics, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.face_codec.checkpoint import load_codec, save_codec
from moshiface_ros.face_codec.config import PRESETS, config_from_name
from moshiface_ros.face_codec.data import FaceDataset, Windows, split_names
from moshiface_ros.face_codec.metrics import lve, mve, perplexity, token_histogram
from moshiface_ros.face_codec.model import FaceCodec
from moshiface_ros.face_codec.synthetic import SyntheticFace, write_dataset
from moshiface_ros.face_codec.train import TrainOptions, train_codec

MOSHIFACE = Path(sys.executable).with_name("moshiface")


pytestmark = pytest.mark.usefixtures("one_thread")


def small(vertices: int = 50, causal: bool = False) -> FaceCodec:
    torch.manual_seed(0)
    return FaceCodec(config_from_name("small-causal" if causal else "small", vertices=vertices)).eval()


def motion(frames: int, vertices: int = 50, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, vertices, 3) * 0.01


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("vertices", [5143, 5023, 40])
def test_shapes_and_dtypes_of_every_configuration(name, vertices):
    if vertices > 1000 and name.startswith("paper"):
        config = config_from_name(name, vertices=vertices)
        assert (config.n_tokens, config.codebook_size, config.latent_dim, config.downsample) == (8, 256, 128, 2)
    codec = FaceCodec(config_from_name(name, vertices=vertices)).eval()
    x = motion(6, vertices, batch=2)
    tokens = codec.encode(x)
    assert tokens.shape == (2, 3, 8) and tokens.dtype == torch.int64
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 256
    y = codec.decode(tokens)
    assert y.shape == (2, 6, vertices, 3) and y.dtype == torch.float32
    out = codec(x)
    assert out.reconstruction.shape == x.shape and torch.equal(out.tokens, tokens)


def test_streaming_equals_the_whole_causal_sequence():
    codec = small(causal=True)
    x = motion(2 * 40)  # 40 steps: longer than the attention span of the small-causal preset
    assert codec.config.context < 40
    whole_tokens, whole_frames = codec.encode(x), codec.decode(codec.encode(x))
    with codec.streaming(1):
        tokens = [codec.encode_step(x[:, i:i + 2]) for i in range(0, x.shape[1], 2)]
        frames = [codec.decode_step(t) for t in tokens]
    assert all(t.shape == (1, 1, 8) for t in tokens) and all(f.shape == (1, 2, 50, 3) for f in frames)
    assert torch.equal(torch.cat(tokens, 1), whole_tokens)
    torch.testing.assert_close(torch.cat(frames, 1), whole_frames, rtol=0, atol=1e-5)


def test_streaming_a_batch_keeps_each_item_apart_through_masks_and_resets():
    """Two conversations streamed together (the batched path of the step modules): each
    equals its whole sequence; a masked step leaves an item untouched and a reset of one
    item starts it afresh without moving the other."""
    codec = small(causal=True)
    x = motion(2 * 40, batch=2)
    whole = codec.decode(codec.encode(x))
    with codec.streaming(2):
        frames = [codec.decode_step(codec.encode_step(x[:, i:i + 2])) for i in range(0, 40, 2)]
        codec.set_exec_mask(torch.tensor([True, False]))  # item 1 idles for one step
        codec.decode_step(codec.encode_step(x[:, 40:42]))
        codec.set_exec_mask(torch.tensor([True, True]))
        codec.reset_streaming(torch.tensor([True, False]))  # item 0 starts a new conversation
        again = codec.decode_step(codec.encode_step(torch.stack([x[0, :2], x[1, 40:42]])))
    torch.testing.assert_close(torch.cat(frames, 1), whole[:, :40], rtol=0, atol=1e-5)
    torch.testing.assert_close(again[0], whole[0, :2], rtol=0, atol=1e-5)
    torch.testing.assert_close(again[1], whole[1, 40:42], rtol=0, atol=1e-5)


def test_streaming_state_resets_and_needs_a_causal_codec():
    codec = small(causal=True)
    x = motion(4)
    with codec.streaming(1):
        first = [codec.encode_step(x[:, i:i + 2]) for i in (0, 2)]
        codec.reset_streaming()
        again = [codec.encode_step(x[:, i:i + 2]) for i in (0, 2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(MoshifaceError, match="inside `with codec.streaming"):
        codec.encode_step(x[:, :2])
    with pytest.raises(MoshifaceError, match="needs a causal codec"):
        small(causal=False).decode_step(torch.zeros(1, 1, 8, dtype=torch.long))


def test_face_path_keeps_autograd_switched_on_for_its_thread():
    """The face path switches gradients off around its own steps only: a thread that
    holds one (the runner, the node, an evaluation) can still train with autograd."""
    from moshiface_ros.face_codec.stream import FacePath, tiny_codec
    from moshiface_ros.messages.types import FaceFrame

    assert torch.is_grad_enabled()
    with FacePath(tiny_codec()) as path:
        assert torch.is_grad_enabled()
        path.push_user(FaceFrame(0, np.zeros((path.vertices, 3), np.float32)))
        path.push_user(FaceFrame(40_000_000, np.zeros((path.vertices, 3), np.float32)))
        user = path.user_tokens(0, 0)
        tokens, frames = path.robot_frames(0, 0, user.tokens)
        assert torch.is_grad_enabled()
        assert tokens is not None and len(frames) == 2 and frames[0].vertices.shape == (path.vertices, 3)
        x = torch.ones(2, requires_grad=True)
        (x * 3).sum().backward()
        assert x.grad.tolist() == [3.0, 3.0]
    assert torch.is_grad_enabled()


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    codec = small(causal=True)
    codec.scale.fill_(0.02)
    x = motion(10)
    save_codec(codec, tmp_path / "ckpt")
    loaded = load_codec(tmp_path / "ckpt")
    assert loaded.config == codec.config
    assert torch.equal(loaded.encode(x), codec.encode(x))
    assert torch.equal(loaded.decode(codec.encode(x)), codec.decode(codec.encode(x)))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]


def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(MoshifaceError, match="is not a codec checkpoint"):
        load_codec(tmp_path)
    save_codec(small(), tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**config, "vertices": 51}))
    with pytest.raises(MoshifaceError, match="does not match"):
        load_codec(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({**config, "colour": 1}))
    with pytest.raises(MoshifaceError, match="unknown codec config field"):
        load_codec(tmp_path / "a")


@pytest.mark.parametrize("x, match", [
    (torch.zeros(1, 4, 49, 3), "49 vertices, the codec expects 50"),
    (torch.full((1, 4, 50, 3), float("nan")), "NaN or infinite"),
    (torch.zeros(1, 1, 50, 3), "shorter than one step"),
    (torch.zeros(1, 5, 50, 3), "not a whole number of 2-frame steps"),
    (torch.zeros(4, 50, 3), r"\(batch, frames, vertices, 3\)"),
    (torch.zeros(1, 4, 50, 3, dtype=torch.int64), "floating point"),
])
def test_bad_motion_is_a_clear_error(x, match):
    with pytest.raises(MoshifaceError, match=match):
        small().encode(x)


@pytest.mark.parametrize("tokens, match", [
    (torch.full((1, 2, 8), 256), r"0\.\.255"),
    (torch.zeros(1, 2, 7, dtype=torch.long), r"\(batch, steps, 8\)"),
    (torch.zeros(1, 2, 8), "integers"),
    (torch.zeros(1, 0, 8, dtype=torch.long), "no step"),
])
def test_bad_tokens_are_a_clear_error(tokens, match):
    with pytest.raises(MoshifaceError, match=match):
        small().decode(tokens)


def test_metrics_follow_their_definitions():
    target = torch.zeros(2, 3, 3)  # 2 frames, 3 vertices
    pred = target.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0, 0.0])  # distance 5 on frame 0, vertex 0
    pred[1, 2] = torch.tensor([0.0, 0.0, 2.0])  # distance 2 on frame 1, vertex 2
    assert float(mve(pred, target)) == pytest.approx((5 + 2) / 6)
    assert float(lve(pred, target, [0, 1])) == pytest.approx((25 + 0) / 2)  # max squared, per frame
    assert float(lve(pred, target, [0, 2])) == pytest.approx((25 + 4) / 2)
    assert perplexity(token_histogram(np.arange(256), 256)) == pytest.approx(1.0)
    assert perplexity(token_histogram(np.zeros(100, int), 256)) == pytest.approx(1 / 256)


def test_split_is_8_1_1_by_sequence_and_reproducible():
    names = [f"s{i:02d}" for i in range(20)]
    split = split_names(names, seed=3)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [16, 2, 2]
    assert sorted(sum(split.values(), [])) == names
    assert split == split_names(list(reversed(names)), seed=3)
    assert split != split_names(names, seed=4)


def test_synthetic_motion_is_smooth_face_like_and_has_lips():
    face = SyntheticFace(vertices=5143)
    m = face.motion(100, seed=1)
    assert m.shape == (100, 5143, 3) and m.dtype == np.float32
    speed = np.linalg.norm(np.diff(m, axis=0), axis=-1).mean()
    assert speed < 0.5 * np.linalg.norm(m, axis=-1).mean()  # frame to frame changes are small
    lips = np.linalg.norm(m[:, face.lips], axis=-1).mean()
    forehead = np.argsort(-face.template[:, 1])[:100]
    assert lips > np.linalg.norm(m[:, forehead] - m[:, forehead].mean(0), axis=-1).mean()  # the jaw moves the lips
    # The motion is the synthetic head talking: the mouth opens where its voice is loud.
    voice = face.voice(100, seed=1)
    window = len(voice) // 100
    loud = np.sqrt((voice[: 100 * window].reshape(100, window).astype(np.float64) ** 2).mean(1))
    chin = face.regions().get("lower_lip")
    drop = -(m[:, chin, 1].mean(1) - m[:, face.regions().get("upper_lip"), 1].mean(1))
    assert np.corrcoef(drop, loud)[0, 1] > 0.5
    assert {"lips", "upper_lip", "lower_lip"} <= set(face.regions().sets)


def test_small_synthetic_faces_are_subsets_of_the_head_with_lips():
    small_face, full = SyntheticFace(vertices=60), SyntheticFace(vertices=5143)
    np.testing.assert_allclose(small_face.template, full.template[small_face.rows])
    assert len(small_face.lips) == 15 and small_face.regions().vertices == 60
    np.testing.assert_allclose(small_face.motion(10, seed=2), full.motion(10, seed=2)[:, small_face.rows], atol=1e-6)
    with pytest.raises(MoshifaceError, match="5023 or 5143"):
        SyntheticFace(vertices=6000)


def test_a_synthetic_face_can_say_a_given_voice():
    """``speaking``: the face saying the caller's audio (the soak benchmark's user), mouth with the voice."""
    from moshiface_ros.audio.synth import synthetic_speech

    face, voice = SyntheticFace(vertices=5023), synthetic_speech(4.0, 16000, seed=8)
    m = face.speaking(voice, 16000, seed=1)
    assert m.shape == (100, 5023, 3) and m.dtype == np.float32
    loud = np.sqrt((voice.reshape(100, 640).astype(np.float64) ** 2).mean(1))
    drop = m[:, face.regions().get("upper_lip"), 1].mean(1) - m[:, face.regions().get("lower_lip"), 1].mean(1)
    assert np.corrcoef(drop, loud)[0, 1] > 0.5


def test_dataset_subtracts_neutral_and_rejects_bad_files(tmp_path):
    write_dataset(tmp_path / "d", vertices=30, speakers=1, sequences=3, frames=20)
    dataset = FaceDataset(tmp_path / "d")
    seq = dataset.sequences["speaker0_000"]
    expected = SyntheticFace(vertices=30).motion(20, seed=0, speaker=0)
    np.testing.assert_allclose(seq.load(), expected, atol=1e-6)
    assert len(Windows(dataset.split("train"), 8)) > 0
    np.save(tmp_path / "d" / "sequences" / "speaker0_001.npy", np.zeros((20, 31, 3), np.float32))
    with pytest.raises(MoshifaceError, match=r"speaker0_001\.npy: a sequence must be \(frames, 30, 3\)"):
        FaceDataset(tmp_path / "d")
    bad = np.zeros((20, 30, 3), np.float32)
    bad[5] = np.nan
    np.save(tmp_path / "d" / "sequences" / "speaker0_001.npy", bad)
    with pytest.raises(MoshifaceError, match="NaN"):
        FaceDataset(tmp_path / "d").sequences["speaker0_001"].load()
    with pytest.raises(MoshifaceError, match="window"):
        Windows(dataset.split("train"), 7)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short CPU run on synthetic motion (a few hundred optimizer steps), shared."""
    root = tmp_path_factory.mktemp("codec")
    write_dataset(root / "data", vertices=400, speakers=2, sequences=10, frames=200, rank=4)
    torch.set_num_threads(1)
    options = TrainOptions(epochs=36, lr=3e-3, batch_size=8, progress=False)
    last = train_codec(root / "data", root / "codec", "small", options)
    return root, last


def test_short_training_beats_the_zero_motion_baseline_without_collapse(trained):
    root, last = trained
    val = last["validation"]
    assert val["mve"] < 0.25 * val["zero_motion_mve"], val
    assert val["perplexity"] > 0.3, val
    assert val["lve"] < val["zero_motion_lve"]
    history = json.loads((root / "codec" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 37))
    assert (root / "codec" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_tokens_frames_tokens_is_stable(trained):
    root, _ = trained
    codec = load_codec(root / "codec")
    dataset = FaceDataset(root / "data")
    x = torch.from_numpy(dataset.split("test")[0].load())[None]
    tokens = codec.encode(x)
    frames = codec.decode(tokens)
    again = codec.encode(frames)
    # A decoded face re-encodes mostly to its own tokens (chance would be 1/256), and the
    # round trip moves the face less than the codec's own reconstruction error does.
    assert float((again == tokens).float().mean()) > 0.3
    assert float(mve(codec.decode(again), frames)) < float(mve(frames, x))


def test_resume_continues_where_training_stopped(tmp_path):
    write_dataset(tmp_path / "data", vertices=40, speakers=1, sequences=4, frames=40)
    options = TrainOptions(epochs=1, lr=1e-3, batch_size=4, window=16, progress=False)
    train_codec(tmp_path / "data", tmp_path / "codec", "small", options)
    with pytest.raises(MoshifaceError, match="already holds a codec checkpoint"):
        train_codec(tmp_path / "data", tmp_path / "codec", "small", options)
    options.epochs = 2
    last = train_codec(tmp_path / "data", tmp_path / "codec", "small", options, resume=True)
    assert last["epoch"] == 2
    with pytest.raises(MoshifaceError, match="already trained for 2 epochs"):
        train_codec(tmp_path / "data", tmp_path / "codec", "small", options, resume=True)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MOSHIFACE), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not MOSHIFACE.exists(), reason="no moshiface console script")
def test_codec_commands_end_to_end(tmp_path):
    assert run_cli("codec", "synth", "--out", "d", "--vertices", "60", "--sequences", "5", "--frames", "40",
                   cwd=tmp_path).returncode == 0
    train = run_cli("codec", "train", "--data", "d", "--out", "c", "--config", "small-causal", "--epochs", "1",
                    "--quiet", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    evaluate = run_cli("codec", "eval", "--checkpoint", "c", "--data", "d", "--split", "all", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    result = json.loads((tmp_path / "c" / "eval-all.json").read_text())
    assert result["frames"] == 10 * 40 and {"mve", "lve", "perplexity"} <= set(result)
    # The synthetic head's lips are defined, so LVE is measured, and both figures read in mm.
    assert result["lip_vertices"] == 15 and result["lve"] > 0 and result["zero_motion_lve"] > 0
    assert re.search(r"MVE \d+\.\d+ mm, LVE \d+\.\d+ x1e-3 m\^2 \(\d+\.\d+ mm on 15 lip vertices\)", evaluate.stdout), \
        evaluate.stdout
    tokenize = run_cli("codec", "tokenize", "--checkpoint", "c", "--input", "d/sequences/speaker0_000.npy",
                       "--neutral", "d/speakers/speaker0.npy", "--out", "t.npy", cwd=tmp_path)
    assert tokenize.returncode == 0, tokenize.stderr
    tokens = np.load(tmp_path / "t.npy")
    assert tokens.shape == (20, 8)
    assert run_cli("codec", "decode", "--checkpoint", "c", "--tokens", "t.npy", "--out", "m.npy",
                   cwd=tmp_path).returncode == 0
    assert np.load(tmp_path / "m.npy").shape == (40, 60, 3)
    np.save(tmp_path / "odd.npy", np.zeros((3, 60, 3), np.float32))
    bad = run_cli("codec", "tokenize", "--checkpoint", "c", "--input", "odd.npy", "--out", "x.npy", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "whole number of 2-frame steps" in bad.stderr
    assert not (tmp_path / "x.npy").exists()


def test_codec_benchmark_prints_every_figure():
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "codec.py"
    result = subprocess.run([sys.executable, str(script), "--steps", "3", "--train-batches", "1", "--vertices", "300",
                             "--no-gpu"], capture_output=True, text=True, timeout=300, check=True)
    for name in ("cpu streaming encode:", "cpu streaming decode:", "cpu streaming encode + decode:",
                 "cpu non-causal encode + decode", "cpu training throughput:"):
        assert sum(line.startswith(name) for line in result.stdout.splitlines()) == 1, (name, result.stdout)

"""Moshi-Face model, streaming generator and weights, on tiny configurations of real moshi code."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import json

import numpy as np
import pytest
import torch
from moshi.models import loaders
from safetensors.torch import save_file

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.constants import FRAME_SIZE
from moshiface_ros.face_lm.config import FaceConfig
from moshiface_ros.face_lm.generate import FaceLMGen
from moshiface_ros.face_lm.model import FaceLMModel, build_face_lm
from moshiface_ros.face_lm.tiny import tiny_face_config, tiny_lm_kwargs
from moshiface_ros.face_lm.weights import extend_lm, load_moshi_state_into, save_face_only
from moshiface_ros.speech.engine import SpeechEngine
from moshiface_ros.speech.models import ModelSpec, build_tiny, load_speech_models, save_checkpoint_dir

STEPS = 10


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_face_lm(tiny_lm_kwargs(), tiny_face_config())


def user_streams(seed=0, steps=STEPS):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (steps, 8), generator=g), torch.randint(0, 256, (steps, 8), generator=g)


def stream(model, user_audio, user_face, **gen_kwargs):
    """Runs the generator; returns its outputs and the logits it computed at every step."""
    gen = FaceLMGen(model, **gen_kwargs)
    text_logits, face_logits, audio_logits = [], [], []
    gen.on_text_logits_hook = lambda logits: text_logits.append(logits[0, 0, 0].clone())
    plain = model.forward_depformer

    def spy(index, sequence, transformer_out):  # the real depth transformer, its logits kept
        logits = plain(index, sequence, transformer_out)
        audio_logits.append(logits[0, 0, 0].clone())
        return logits

    model.forward_depformer = spy
    outputs = []
    try:
        with gen.streaming(1):
            for s in range(len(user_audio)):
                face = None if user_face is None else user_face[s].view(1, -1, 1)
                outputs.append(gen.step(user_audio[s].view(1, 8, 1), face))
                face_logits.append(gen._streaming_state.face.logits[0].clone())
    finally:
        del model.forward_depformer
    audio = torch.stack(audio_logits).view(len(user_audio), model.dep_q, -1)
    return outputs, torch.stack(text_logits), torch.stack(face_logits), audio


def sequence_from(outputs, user_audio, user_face, face_lag=0):
    """The token sequence a streamed conversation amounts to, in training layout: the
    output of step s and the user's input at step s are frame s - 1, except the robot's
    face, which is frame s - 1 - ``face_lag``."""
    frames = len(outputs) - 1 - face_lag
    codes = torch.zeros(1, 17, frames, dtype=torch.long)
    face = torch.zeros(1, 16, frames, dtype=torch.long)
    for t in range(frames):
        out = outputs[t + 1][0, :, 0]
        codes[0, :9, t], codes[0, 9:, t] = out[:9], user_audio[t + 1]
        face[0, :8, t], face[0, 8:, t] = outputs[t + 1 + face_lag][0, 9:, 0], user_face[t + 1]
    return codes, face


def test_streaming_logits_equal_training_forward(model):
    user_audio, user_face = user_streams()
    outputs, text, face, audio = stream(model, user_audio, user_face)
    assert outputs[0] is None and all(o.shape == (1, 1 + 8 + 8, 1) for o in outputs[1:])
    assert all(((o[0, 9:] >= 0) & (o[0, 9:] < 256)).all() for o in outputs[1:])
    codes, face_codes = sequence_from(outputs, user_audio, user_face)
    with torch.no_grad():
        out = model(codes, face_codes)
    last = STEPS - 2  # step s computes frame s (text, semantic audio) and s - 1 (face, acoustic audio)
    torch.testing.assert_close(text[:last + 1], out.text_logits[0, 0, :last + 1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(face[1:last + 1], out.face_logits[0, :, :last].permute(1, 0, 2), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio[:last + 1, 0], out.logits[0, 0, :last + 1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio[1:last + 1, 1:], out.logits[0, 1:, :last].permute(1, 0, 2), atol=1e-4, rtol=1e-4)
    assert out.face_mask[0, :, :last].all() and torch.isfinite(out.face_logits[0, :, :last]).all()


def test_teacher_forced_streaming_equals_training_forward(model):
    """The evaluation's path: text and robot audio given, only the face generated."""
    user_audio, user_face = user_streams(1)
    g = torch.Generator().manual_seed(7)
    codes = torch.cat([torch.randint(0, 1000, (1, 1, STEPS), generator=g),
                       torch.randint(0, 1024, (1, 16, STEPS), generator=g)], dim=1)
    codes[0, 9:] = user_audio.T
    from moshi.models.lm_utils import _delay_sequence

    initial = model._get_initial_token()
    delayed = _delay_sequence(model.delays, codes, initial)  # what the model emits at each step
    gen = FaceLMGen(model, teacher_forcing=True)
    faces, logits = [], []
    with gen.streaming(1):
        for s in range(STEPS):
            out = gen.step(user_audio[s].view(1, 8, 1), user_face[s].view(1, 8, 1), delayed[:, :9, s:s + 1])
            logits.append(gen._streaming_state.face.logits[0].clone())
            faces.append(None if out is None else out[0, 9:, 0])
            if out is not None:  # the forced frame comes back, aligned
                assert torch.equal(out[0, :9, 0], codes[0, :9, s - 1])
    face_codes = torch.cat([torch.stack(faces[1:], dim=1), user_face[1:].T], dim=0)[None]
    shifted = torch.cat([codes[:, :9, :-1], user_audio[1:].T[None]], dim=1)
    with torch.no_grad():
        out = model(shifted, face_codes)
    got = torch.stack(logits[1:-1])  # steps 1 .. STEPS-2 -> frames 0 .. STEPS-3
    torch.testing.assert_close(got, out.face_logits[0, :, :STEPS - 2].permute(1, 0, 2), atol=1e-4, rtol=1e-4)


def test_user_face_changes_the_next_text_logits(model):
    user_audio, user_face = user_streams(2, steps=4)
    other_face = (user_face + 17) % 256
    _, text_a, _, _ = stream(model, user_audio, user_face, use_sampling=False)
    _, text_b, _, _ = stream(model, user_audio, other_face, use_sampling=False)
    _, text_none, _, _ = stream(model, user_audio, None, use_sampling=False)
    # the user's face at step s enters the input at step s + 1 (one step of delay)
    assert torch.equal(text_a[:2], text_b[:2])
    assert (text_a[2] - text_b[2]).abs().max() > 1e-3
    assert (text_a[2] - text_none[2]).abs().max() > 1e-3


def test_zero_initialised_face_inputs_keep_moshi_outputs():
    """Extending real-format Moshi weights changes nothing until training: the new face
    embeddings start at zero, so text and audio logits are Moshi's own."""
    torch.manual_seed(0)
    plain = loaders.get_moshi_lm(None, lm_kwargs=tiny_lm_kwargs(), device="cpu", dtype=torch.float32).eval()
    extended, new = extend_lm(plain, tiny_lm_kwargs(), FaceConfig(dim=64, num_heads=4, num_layers=1, dim_feedforward=64))
    assert new == sorted(extended.face_parameter_names())
    g = torch.Generator().manual_seed(3)
    codes = torch.cat([torch.randint(0, 1000, (2, 1, 12), generator=g), torch.randint(0, 1024, (2, 16, 12), generator=g)], 1)
    face = torch.randint(0, 256, (2, 16, 12), generator=g)
    with torch.no_grad():
        ours, theirs = extended(codes, face), plain(codes)
    torch.testing.assert_close(ours.text_logits, theirs.text_logits, equal_nan=True)
    torch.testing.assert_close(ours.logits, theirs.logits, equal_nan=True)


def test_moshi_weights_load_with_exactly_the_face_parameters_new(tmp_path):
    torch.manual_seed(1)
    plain = loaders.get_moshi_lm(None, lm_kwargs=tiny_lm_kwargs(), device="cpu", dtype=torch.float32)
    path = tmp_path / "moshi.safetensors"
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(path))
    extended = build_face_lm(tiny_lm_kwargs(), tiny_face_config())
    before = {k: v.clone() for k, v in extended.state_dict().items()}
    from safetensors.torch import load_file

    new = load_moshi_state_into(extended, load_file(str(path)))
    face_names = sorted(n for n, _ in extended.named_parameters() if n.startswith(("face_emb.", "face_transformer.")))
    assert new == face_names and len(new) > 0
    assert set(new) | set(plain.state_dict()) == set(extended.state_dict())
    for name, value in extended.state_dict().items():
        expected = before[name] if name in new else plain.state_dict()[name]
        assert torch.equal(value, expected), name
    broken = load_file(str(path))
    broken["text_linear.weight"] = broken["text_linear.weight"][:10]
    with pytest.raises(MoshifaceError, match="text_linear.weight") as info:
        load_moshi_state_into(extended, broken)
    assert "\n" not in str(info.value)
    del broken["text_linear.weight"]
    with pytest.raises(MoshifaceError, match="missing .*text_linear"):
        load_moshi_state_into(extended, broken)


def test_prev_token_ablation_streams_like_it_trains():
    torch.manual_seed(2)
    face = FaceConfig(dim=32, num_heads=2, num_layers=1, dim_feedforward=64, use_prev_tokens=False, input_init="normal")
    model = build_face_lm(tiny_lm_kwargs(), face)
    assert model.face_transformer.prev_emb is None
    user_audio, user_face = user_streams(4, steps=6)
    outputs, _, face_logits, _ = stream(model, user_audio, user_face)
    codes, face_codes = sequence_from(outputs, user_audio, user_face)
    with torch.no_grad():
        out = model(codes, face_codes)
    torch.testing.assert_close(face_logits[1:5], out.face_logits[0, :, :4].permute(1, 0, 2), atol=1e-4, rtol=1e-4)


def test_audio_lookup_streams_like_it_trains_and_reads_the_steps_own_audio():
    """``audio_lookup``: the Face Transformer reads the step's robot audio tokens through its
    own tables; streaming and training agree, and frame t's face changes with frame t's
    acoustic audio but not with a later frame's."""
    torch.manual_seed(3)
    face = FaceConfig(dim=32, num_heads=2, num_layers=1, dim_feedforward=64, audio_lookup=True, input_init="normal")
    model = build_face_lm(tiny_lm_kwargs(), face)
    assert model.face_transformer.audio_emb.num_embeddings == 8 * (1024 + 1)
    user_audio, user_face = user_streams(5, steps=6)
    outputs, _, face_logits, _ = stream(model, user_audio, user_face)
    codes, face_codes = sequence_from(outputs, user_audio, user_face)
    with torch.no_grad():
        out = model(codes, face_codes)
        torch.testing.assert_close(face_logits[1:5], out.face_logits[0, :, :4].permute(1, 0, 2), atol=1e-4, rtol=1e-4)
        changed = codes.clone()
        changed[0, 2, 2] = (changed[0, 2, 2] + 1) % 1024  # an acoustic token of frame 2
        other = model(changed, face_codes).face_logits[0]
    assert torch.equal(other[:, :2], out.face_logits[0, :, :2])  # earlier frames cannot see it
    assert not torch.allclose(other[:, 2], out.face_logits[0, :, 2])  # frame 2's face reads it


def test_face_delay_two_streams_like_it_trains_and_reads_the_next_frames_audio():
    """``delay=2``: the face of frame t is sampled with the audio of frame t + 1 (one frame
    after that audio is returned); streaming and training agree, and frame t's face reads
    frame t + 1's acoustic audio but not frame t + 2's."""
    torch.manual_seed(3)
    face = FaceConfig(dim=32, num_heads=2, num_layers=1, dim_feedforward=64, audio_lookup=True,
                      input_init="normal", delay=2)
    model = build_face_lm(tiny_lm_kwargs(), face)
    assert FaceLMGen(model).face_lag == 1
    user_audio, user_face = user_streams(5, steps=7)
    outputs, _, face_logits, _ = stream(model, user_audio, user_face)
    codes, face_codes = sequence_from(outputs, user_audio, user_face, face_lag=1)
    assert codes.shape[2] == 5
    with torch.no_grad():
        out = model(codes, face_codes)
        # the last two frames' faces lie beyond the training window (NaN there)
        torch.testing.assert_close(face_logits[2:5], out.face_logits[0, :, :3].permute(1, 0, 2), atol=1e-4, rtol=1e-4)
        faces = []
        for frame in (3, 4):
            changed = codes.clone()
            changed[0, 2, frame] = (changed[0, 2, frame] + 1) % 1024  # an acoustic token
            faces.append(model(changed, face_codes).face_logits[0])
    assert torch.equal(faces[0][:, :2], out.face_logits[0, :, :2])  # frames 0 and 1 cannot see frame 3
    assert not torch.allclose(faces[0][:, 2], out.face_logits[0, :, 2])  # frame 2's face reads frame 3
    assert torch.equal(faces[1][:, :3], out.face_logits[0, :, :3])  # ... and nothing later


def test_a_face_trained_behind_its_audio_comes_out_with_its_own_frames_voice():
    """Delay 2: the generator returns frame t's face one step after frame t's audio, so the
    engines hold each step's voice and text one step: every output's audio, text and face
    are one frame's (the raw timing shifted), alone and in a batch slot that joins late."""
    from dataclasses import replace

    from moshiface_ros.speech.batch import BatchedEngine
    from moshiface_ros.speech.engine import LagAligner, Sampling

    greedy = Sampling(temperature=0.0, text_temperature=0.0, face_temperature=0.0)
    models = build_tiny()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        models.lm = build_face_lm(tiny_lm_kwargs(), replace(tiny_face_config(), delay=2)).eval()
    faces = np.random.default_rng(1).integers(0, 256, (8, 8))
    aligned = speech_steps(SpeechEngine(models, greedy), steps=8, faces=faces)
    engine = SpeechEngine(models, greedy)
    engine._aligner = LagAligner(0)  # the generator's own timing, for reference
    raw = speech_steps(engine, steps=8, faces=faces)
    assert raw[1].face_tokens is not None and aligned[1].face_tokens is None and aligned[1].text_token is None
    assert not aligned[1].pcm.any()  # the first produced step's voice waits for its face
    for now, before, same in zip(aligned[2:], raw[1:], raw[2:]):
        assert now.text_token == before.text_token and np.array_equal(now.audio_tokens, before.audio_tokens)
        np.testing.assert_array_equal(now.pcm, before.pcm)
        assert np.array_equal(now.face_tokens, same.face_tokens)
    from moshiface_ros.audio.synth import synthetic_speech

    pcm = synthetic_speech(8 * FRAME_SIZE / 24000, 24000, seed=3).reshape(8, FRAME_SIZE)
    with BatchedEngine(models, 2, greedy, slot_seeds=[0, 0]) as batched:
        late = [batched.step({0: np.zeros(FRAME_SIZE, np.float32)})[0] for _ in range(3)]
        slot = [batched.step({0: np.zeros(FRAME_SIZE, np.float32), 1: pcm[t]}, {1: faces[t]})[1] for t in range(8)]
    assert len(late) == 3
    for mine, alone in zip(slot, aligned):
        assert mine.text_token == alone.text_token
        assert (mine.face_tokens is None) == (alone.face_tokens is None)
        assert mine.face_tokens is None or np.array_equal(mine.face_tokens, alone.face_tokens)


def test_face_delay_below_the_audios_is_refused():
    with pytest.raises(ValueError, match="face delay 0 must be at least"):
        FaceLMGen(build_face_lm(tiny_lm_kwargs(), FaceConfig(dim=32, num_heads=2, num_layers=1,
                                                             dim_feedforward=64, delay=0)))


# -- checkpoints and the engine ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def speech_steps(engine, steps=6, faces=None):
    from moshiface_ros.audio.synth import synthetic_speech

    pcm = synthetic_speech(steps * FRAME_SIZE / 24000, 24000, seed=3)
    out = [engine.step(pcm[i * FRAME_SIZE:(i + 1) * FRAME_SIZE], None if faces is None else faces[i])
           for i in range(steps)]
    engine.close()
    return out


def test_engine_face_path(tiny):
    faces = np.random.default_rng(0).integers(0, 256, (6, 8))
    with SpeechEngine(tiny, seed=0) as engine:
        assert engine.has_face and engine.face_tokens_per_step == 8
    out = speech_steps(SpeechEngine(tiny, seed=0), faces=faces)
    assert out[0].face_tokens is None
    assert all(o.face_tokens.shape == (8,) and o.face_tokens.dtype == np.int64 for o in out[1:])
    assert all(((o.face_tokens >= 0) & (o.face_tokens < 256)).all() for o in out[1:])
    again = speech_steps(SpeechEngine(tiny, seed=0), faces=faces)
    assert all(np.array_equal(a.face_tokens, b.face_tokens) for a, b in zip(out[1:], again[1:]))
    unseen = speech_steps(SpeechEngine(tiny, seed=0), faces=None)
    assert any(a.text_token != b.text_token for a, b in zip(out[2:], unseen[2:]))
    audio_only = build_tiny(face=False)
    plain = speech_steps(SpeechEngine(audio_only, seed=0), faces=faces)  # tokens ignored
    assert all(o.face_tokens is None for o in plain)
    with SpeechEngine(audio_only) as engine:
        assert not engine.has_face and engine.face_tokens_per_step == 0


@pytest.mark.parametrize("bad, words", [
    (np.zeros(7, np.int64), "8 integers"),
    (np.zeros(8, np.float32), "8 integers"),
    (np.full(8, 256), r"\[0, 256\)"),
    (np.full(8, -1), r"\[0, 256\)"),
])
def test_engine_refuses_bad_user_face_tokens(tiny, bad, words):
    with SpeechEngine(tiny) as engine:
        with pytest.raises(ValueError, match=words):
            engine.step(np.zeros(FRAME_SIZE, np.float32), bad)


def test_face_checkpoints_full_and_face_only(tiny, tmp_path):
    faces = np.random.default_rng(1).integers(0, 256, (6, 8))
    expected = speech_steps(SpeechEngine(tiny, seed=4), faces=faces)
    full = save_checkpoint_dir(tiny, tmp_path / "full")
    config = json.loads((full / "config.json").read_text())
    assert config["moshi_face"]["weights"] == "full" and config["moshi_face"]["face"]["n_tokens"] == 8
    loaded = load_speech_models(ModelSpec.parse(str(full)), "cpu", torch.float32)
    assert isinstance(loaded.lm, FaceLMModel)
    got = speech_steps(SpeechEngine(loaded, seed=4), faces=faces)
    assert all(np.array_equal(a.face_tokens, b.face_tokens) and a.text_token == b.text_token
               for a, b in zip(expected[1:], got[1:]))
    face_only = save_face_only(tiny.lm, tmp_path / "face", "tiny", tiny.lm_config)
    from safetensors.torch import load_file

    assert set(load_file(str(face_only / "model.safetensors"))) == set(tiny.lm.face_parameter_names())
    loaded = load_speech_models(ModelSpec.parse(str(face_only)), "cpu", torch.float32)
    got = speech_steps(SpeechEngine(loaded, seed=4), faces=faces)
    assert all(np.array_equal(a.face_tokens, b.face_tokens) for a, b in zip(expected[1:], got[1:]))


def test_broken_face_checkpoints_give_one_clear_error(tiny, tmp_path):
    def load(directory):
        with pytest.raises(MoshifaceError) as info:
            load_speech_models(ModelSpec.parse(str(directory)), "cpu", torch.float32)
        assert "\n" not in str(info.value)
        return str(info.value)

    face_only = save_face_only(tiny.lm, tmp_path / "face", "tiny", tiny.lm_config)
    (face_only / "model.safetensors").unlink()
    assert "has no model.safetensors" in load(face_only)
    other = save_face_only(tiny.lm, tmp_path / "other", "tiny", tiny.lm_config)
    config = json.loads((other / "config.json").read_text())
    config["moshi_face"]["face"]["dim"] = 32
    (other / "config.json").write_text(json.dumps(config))
    assert "shape" in load(other)
    config["moshi_face"]["face"]["colour"] = 1
    (other / "config.json").write_text(json.dumps(config))
    assert "unknown field" in load(other)
    del config["moshi_face"]["base"]
    config["moshi_face"]["face"].pop("colour")
    (other / "config.json").write_text(json.dumps(config))
    assert "must name its 'base'" in load(other)
    full = save_checkpoint_dir(tiny, tmp_path / "full")
    config = json.loads((full / "config.json").read_text())
    config["moshi_face"]["face"]["n_tokens"] = 4
    (full / "config.json").write_text(json.dumps(config))
    assert "does not match config.json" in load(full)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("graphs", [True, False])
def test_cuda_bf16_face_path_with_and_without_graphs(graphs):
    models = build_tiny("cuda", torch.bfloat16)
    engine = SpeechEngine(models, seed=0, cuda_graphs=graphs)
    engine.warmup()
    faces = np.random.default_rng(0).integers(0, 256, (8, 8))
    out = speech_steps(engine, 8, faces)
    assert all(o.face_tokens.shape == (8,) for o in out[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graphed_streaming_matches_eager():
    """With greedy sampling the graphed and eager paths give the same tokens."""
    torch.manual_seed(0)
    model = build_face_lm(tiny_lm_kwargs(), tiny_face_config(), device="cuda", dtype=torch.float32)
    user_audio, user_face = user_streams(5)
    runs = []
    for graphs in (True, False):
        from moshi.utils.compile import no_cuda_graph
        import contextlib

        gen = FaceLMGen(model, use_sampling=False)
        context = contextlib.nullcontext() if graphs else no_cuda_graph()
        with context, gen.streaming(1):
            runs.append([gen.step(user_audio[s].view(1, 8, 1).cuda(), user_face[s].view(1, 8, 1).cuda())
                         for s in range(STEPS)])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1:], runs[1][1:]))

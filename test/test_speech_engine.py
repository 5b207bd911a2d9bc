"""The streaming speech engine on real moshi code with the tiny random configuration."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import pytest
import sentencepiece
import torch

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FRAME_SIZE
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.speech.engine import SpeechEngine
from moshiface_ros.speech.models import (
    ModelSpec,
    build_tiny,
    load_speech_models,
    resolve_device,
    resolve_dtype,
    save_checkpoint_dir,
)

STEPS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


@pytest.fixture(scope="module")
def speech():
    return synthetic_speech(STEPS * FRAME_SIZE / 24000, 24000, seed=1)


def run(engine, pcm, close=True):
    """Steps the engine over pcm; closes it so the same models can serve the next one."""
    outputs = [engine.step(pcm[i * FRAME_SIZE:(i + 1) * FRAME_SIZE]) for i in range(len(pcm) // FRAME_SIZE)]
    if close:
        engine.close()
    return outputs


def test_step_shapes_and_warm_up(tiny, speech):
    outputs = run(SpeechEngine(tiny, seed=0), speech)
    assert [o.step for o in outputs] == list(range(STEPS))
    for o in outputs:
        assert o.pcm.shape == (FRAME_SIZE,) and o.pcm.dtype == np.float32
        assert np.all(np.abs(o.pcm) <= 1.0)
        assert o.user_tokens.shape == (8,) and np.all((o.user_tokens >= 0) & (o.user_tokens < 1024))
    # the audio streams lag the text by one step: nothing comes out of the first step
    assert outputs[0].text_token is None and outputs[0].audio_tokens is None
    assert not outputs[0].pcm.any()
    later = outputs[1:]
    assert all(o.text_token is not None and o.audio_tokens.shape == (8,) for o in later)
    assert any(np.abs(o.pcm).max() > 1e-3 for o in later), "the decoder produced only silence"


def test_user_audio_reaches_the_model(tiny, speech):
    """Different user audio -> different Mimi tokens -> a different conversation."""
    a = run(SpeechEngine(tiny, seed=0), speech)
    b = run(SpeechEngine(tiny, seed=0), speech[::-1].copy())
    assert any(not np.array_equal(x.user_tokens, y.user_tokens) for x, y in zip(a, b))
    assert any(x.text_token != y.text_token for x, y in zip(a[1:], b[1:]))


def test_same_seed_same_output_and_reset_restarts(tiny, speech):
    engine = SpeechEngine(tiny, seed=5)
    first = run(engine, speech, close=False)
    engine.reset()
    again = run(engine, speech)
    other = run(SpeechEngine(tiny, seed=6), speech)
    assert all(np.array_equal(x.pcm, y.pcm) and x.text_token == y.text_token for x, y in zip(first, again))
    assert any(not np.array_equal(x.pcm, y.pcm) for x, y in zip(first, other))


def test_wrong_frame_is_refused(tiny):
    with SpeechEngine(tiny) as engine:
        with pytest.raises(ValueError, match="1920 mono samples"):
            engine.step(np.zeros(1000, np.float32))
        with pytest.raises(ValueError, match="1920 mono samples"):
            engine.step(np.zeros((FRAME_SIZE, 2), np.float32))


def test_models_serve_one_engine_at_a_time(tiny):
    with SpeechEngine(tiny):
        with pytest.raises(RuntimeError, match="another SpeechEngine"):
            SpeechEngine(tiny)
    SpeechEngine(tiny).close()


def test_tiny_weights_are_fixed(tiny):
    again = build_tiny()
    for (name, a), b in zip(tiny.lm.state_dict().items(), again.lm.state_dict().values()):
        assert torch.equal(a, b), name


def _train_tokenizer(path):
    words = "hello robot how are you today I am fine thank you the weather is nice".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 8)) for _ in range(300)]
    with open(path, "wb") as f:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=f, vocab_size=30, model_type="unigram",
            minloglevel=2)
    return path


def test_checkpoint_directory_loads_through_moshi(tiny, speech, tmp_path):
    """The real loading path (moshi's CheckpointInfo, safetensors) on a directory we write."""
    tokenizer = _train_tokenizer(tmp_path / "spm.model")
    directory = save_checkpoint_dir(tiny, tmp_path / "ckpt", tokenizer_file=tokenizer)
    assert {p.name for p in directory.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer-e351c8d8-checkpoint125.safetensors",
        "mimi_config.json", "tokenizer_spm_32k_3.model"}
    loaded = load_speech_models(ModelSpec.parse(str(directory)), "cpu", torch.float32)
    assert loaded.tokenizer is not None and loaded.tokenizer.vocab_size() == 30
    expected = run(SpeechEngine(tiny, seed=3), speech)
    got = run(SpeechEngine(loaded, seed=3), speech)
    assert all(np.array_equal(x.pcm, y.pcm) and x.text_token == y.text_token for x, y in zip(expected, got))
    engine = SpeechEngine(loaded)
    engine.close()
    known = [t for t in range(4, 30) if engine.piece(t) is not None]
    assert known and all(not engine.piece(t).startswith("<") for t in known)
    assert engine.piece(999) == "<999>"
    assert engine.piece(loaded.lm.text_padding_token_id) is None


def test_broken_checkpoint_directories(tiny, tmp_path):
    directory = save_checkpoint_dir(tiny, tmp_path / "ckpt")
    (directory / "model.safetensors").unlink()
    with pytest.raises(MoshifaceError, match="has no model.safetensors"):
        load_speech_models(ModelSpec.parse(str(directory)), "cpu", torch.float32)
    other = save_checkpoint_dir(tiny, tmp_path / "other")
    config = (other / "config.json").read_text().replace('"dim": 256', '"dim": 128')
    (other / "config.json").write_text(config)
    with pytest.raises(MoshifaceError, match="cannot load") as info:
        load_speech_models(ModelSpec.parse(str(other)), "cpu", torch.float32)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, words", [
    ("hf:nobody", "expected hf:OWNER/NAME"),
    ("/no/such/checkpoint", "neither 'tiny'"),
])
def test_bad_model_specs(text, words):
    with pytest.raises(MoshifaceError, match=words):
        ModelSpec.parse(text)


def test_model_specs():
    assert ModelSpec.parse("tiny") == ModelSpec("tiny")
    assert ModelSpec.parse("hf:kyutai/moshiko-pytorch-bf16") == ModelSpec("hf", "kyutai/moshiko-pytorch-bf16")


def test_device_and_dtype_choices():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu, ModelSpec("tiny")) == torch.float32
    assert resolve_dtype("auto", cpu, ModelSpec("hf", "a/b")) == torch.bfloat16
    assert resolve_dtype("float32", cpu, ModelSpec("hf", "a/b")) == torch.float32
    with pytest.raises(MoshifaceError, match="--dtype"):
        resolve_dtype("int8", cpu, ModelSpec("tiny"))
    with pytest.raises(MoshifaceError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(MoshifaceError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("graphs", [True, False])
def test_cuda_bf16_with_and_without_graphs(speech, graphs):
    models = build_tiny("cuda", torch.bfloat16)
    engine = SpeechEngine(models, seed=0, cuda_graphs=graphs)
    engine.warmup()
    outputs = run(engine, speech)
    assert all(o.pcm.shape == (FRAME_SIZE,) for o in outputs)
    assert all(o.text_token is not None for o in outputs[1:])

"""Training stages on the tiny Moshi-Face model and a small tokenized dataset."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moshiface_ros.errors import MoshifaceError
from moshiface_ros.training.config import TrainConfig
from moshiface_ros.training.dataset import CropSampler, load_split
from moshiface_ros.training.distributed import Dist
from moshiface_ros.training.model_setup import group_of, make_optimizer, set_trainable
from moshiface_ros.training.train import run_training, train_step
from moshiface_ros.speech.models import (
    SMALL_MODEL_BYTES,
    ModelSpec,
    build_tiny,
    is_small,
    load_speech_models,
    resolve_dtype,
    save_checkpoint_dir,
)
from moshiface_ros.speech.session import SessionOptions, load_models
from moshiface_ros.training.tokenizer import save_tokenizer, train_tokenizer

REPO = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


def write_token_dataset(root: Path, dialogues: int = 4, steps: int = 40, seed: int = 0) -> Path:
    """Tokenized dialogues in the layout ``moshiface data prepare`` writes. The face
    tokens follow the audio (a learnable relation), so the face loss can fall."""
    rng = np.random.default_rng(seed)
    (root / "tokens").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(dialogues):
        audio = rng.integers(0, 1024, (2, 8, steps))
        text = np.where(rng.random((2, steps)) < 0.3, rng.integers(4, 1000, (2, steps)), 3)
        face = (audio[:, :8] * 7 + 3) % 256
        face[1, :, -5:] = -1  # a speaker whose face was lost for a moment
        name = f"dialogue-{i:02d}"
        np.savez(root / "tokens" / f"{name}.npz", text=text.astype(np.int32), audio=audio.astype(np.int16),
                 face=face.astype(np.int16), speakers=np.array(["a", "b"]))
        names.append(name)
    (root / "splits.json").write_text(json.dumps({"train": names[:-1], "valid": names[-1:], "test": names[-1:]}))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_token_dataset(tmp_path_factory.mktemp("tokens"))
    save_tokenizer(train_tokenizer(["hello robot how are you", "fine thank you"]), root / "tokenizer.model")
    return root


def rq_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("face_transformer.")}


def test_a_few_steps_halve_the_face_loss_on_a_fixed_batch(data):
    torch.manual_seed(0)
    model = build_tiny().lm.train()
    config = TrainConfig(stage=1, data=data, out=data, lr_face=3e-3).resolved()
    set_trainable(model, 1)
    optimizer = make_optimizer(model, config)
    batch = CropSampler(load_split(data, "train"), 24, seed=0).batch(2)
    losses = [train_step(model, optimizer, [batch], config, Dist())["face"] for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_stage_groups_and_freezing():
    model = build_tiny().lm
    counts = set_trainable(model, 1)
    assert counts["temporal"] == counts["depth"] == 0 and counts["face"] > 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("face_emb."))
    counts = set_trainable(model, 1, stage1_face_inputs=True)
    assert counts["face"] == sum(p.numel() for n, p in model.named_parameters() if n.startswith(("face_",)))
    counts = set_trainable(model, 2)
    assert all(counts[g] > 0 for g in ("temporal", "depth", "face"))
    assert group_of("depformer.layers.0.gating.linear_in.weight") == "depth"
    assert group_of("linears.3.weight") == "depth"
    assert group_of("transformer.layers.1.self_attn.in_projs.0.weight") == "temporal"
    assert group_of("text_emb.weight") == "temporal"
    assert group_of("face_emb.weight") == "face"
    config = TrainConfig(stage=2, data=Path("."), out=Path(".")).resolved()
    lrs = {g["name"]: g["lr"] for g in make_optimizer(model, config).param_groups}
    assert lrs == {"temporal": 2e-6, "depth": 4e-6, "face": 1e-5}
    stage1 = TrainConfig(stage=1, data=Path("."), out=Path(".")).resolved()
    assert (stage1.steps, stage1.batch_size, stage1.lr_face) == (500, 32, 5e-4)
    assert (config.steps, config.batch_size) == (1200, 16)


def small(stage, data, out, **overrides):
    values = dict(stage=stage, data=data, out=out, steps=4, batch_size=4, micro_batch=2, seq_len=16,
                  eval_every=2, eval_batches=1, save_every=2, progress=False, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def test_stage1_trains_only_the_face_transformer_then_stage2_everything(data, tmp_path):
    base = build_tiny().lm
    summary = run_training(small(1, data, tmp_path / "s1"))
    out = tmp_path / "s1"
    assert summary["trainable_parameters"]["temporal"] == 0 and summary["steps"] == 4
    assert (out / "loss.png").stat().st_size > 1000
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h["split"] == "train"] == [1, 2, 3, 4]
    assert [h["step"] for h in history if h["split"] == "valid"] == [2, 4]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["moshi_face"]["weights"] == "face" and config["moshi_face"]["base"] == "tiny"
    stage1 = load_speech_models(ModelSpec.parse(str(out / "final")), "cpu", torch.float32).lm
    before, after = rq_state(base), rq_state(stage1)
    assert all(torch.equal(before[k], after[k]) for k in before), "stage 1 changed an RQ-Transformer weight"
    changed = [k for k, v in stage1.state_dict().items()
               if k.startswith("face_transformer.") and not torch.equal(v, base.state_dict()[k])]
    assert changed

    run_training(small(2, data, tmp_path / "s2", model=str(out / "final"), steps=2, save_every=2))
    full = tmp_path / "s2" / "final"
    config = json.loads((full / "config.json").read_text())
    assert config["moshi_face"]["weights"] == "full"
    stage2 = load_speech_models(ModelSpec.parse(str(full)), "cpu", torch.float32).lm
    moved = {group_of(k) for k, v in stage2.state_dict().items() if not torch.equal(v, stage1.state_dict()[k])}
    assert moved == {"temporal", "depth", "face"}
    # both stages' checkpoints carry the data's tokenizer, and loading one brings it back
    words = (data / "tokenizer.model").read_bytes()
    for final in (out / "final", full):
        assert (final / "tokenizer_spm_32k_3.model").read_bytes() == words
        tokenizer = load_speech_models(ModelSpec.parse(str(final)), "cpu", torch.float32).tokenizer
        assert tokenizer is not None and tokenizer.serialized_model_proto() == words


def test_small_checkpoints_default_to_float32_and_one_thread_on_the_cpu(tmp_path):
    small_dir = save_checkpoint_dir(build_tiny(), tmp_path / "small")
    cpu = torch.device("cpu")
    assert is_small(ModelSpec.parse(str(small_dir)))
    assert resolve_dtype("auto", cpu, ModelSpec.parse(str(small_dir))) == torch.float32
    assert resolve_dtype("bfloat16", cpu, ModelSpec.parse(str(small_dir))) == torch.bfloat16  # asked: it wins
    large = tmp_path / "large"
    large.mkdir()
    (large / "model.safetensors").touch()
    os.truncate(large / "model.safetensors", SMALL_MODEL_BYTES + 1)  # sparse: no disk used
    assert not is_small(ModelSpec.parse(str(large)))
    assert resolve_dtype("auto", cpu, ModelSpec.parse(str(large))) == torch.bfloat16
    assert not is_small(ModelSpec("hf", "kyutai/moshiko-pytorch-bf16"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        models = load_models(SessionOptions(model=str(small_dir), device="cpu"))
        assert torch.get_num_threads() == 1 and next(models.lm.parameters()).dtype == torch.float32
        assert models.description.endswith("; float32, 1 CPU thread (a small model's CPU defaults)")
        models = load_models(SessionOptions(model=str(small_dir), device="cpu", dtype="bfloat16", threads=2))
        assert torch.get_num_threads() == 2 and next(models.lm.parameters()).dtype == torch.bfloat16
        assert models.description.endswith("; bfloat16, 2 CPU threads")
    finally:
        torch.set_num_threads(before)


def test_resume_continues_where_it_stopped(data, tmp_path):
    straight = run_training(small(1, data, tmp_path / "straight", steps=4, save_every=2))
    run_training(small(1, data, tmp_path / "resumed", steps=2, save_every=2))
    with pytest.raises(MoshifaceError, match="--resume"):
        run_training(small(1, data, tmp_path / "resumed", steps=4, save_every=2))
    resumed = run_training(small(1, data, tmp_path / "resumed", steps=4, save_every=2, resume=True))
    assert resumed["last_loss"] == straight["last_loss"]
    history = [json.loads(line) for line in (tmp_path / "resumed" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history if h["split"] == "train"] == [1, 2, 3, 4]


def test_bad_training_inputs(data, tmp_path):
    with pytest.raises(MoshifaceError, match="--stage"):
        small(3, data, tmp_path).resolved()
    with pytest.raises(MoshifaceError, match="--steps"):
        small(1, data, tmp_path, steps=0).resolved()
    with pytest.raises(MoshifaceError, match="data prepare"):
        run_training(small(1, tmp_path / "nothing", tmp_path / "o"))


def test_a_face_delay_below_the_audios_is_one_clear_line(tmp_path, capsys):
    from moshiface_ros.cli import main

    assert main(["train", "--stage", "1", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--face-delay", "0"]) != 0
    err = capsys.readouterr().err
    assert "--face-delay must be 1 (the paper's) or more, got 0" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_two_process_fsdp_stage2_step_on_cpu(data, tmp_path):
    """torchrun + FSDP2 (fully_shard) over gloo: two processes, one tiny stage-2 step."""
    script = tmp_path / "fsdp_step.py"
    script.write_text(
        "import os, sys, json, torch\n"
        "os.environ.setdefault('NO_TORCH_COMPILE', '1')\n"
        "torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from moshiface_ros.training.config import TrainConfig\n"
        "from moshiface_ros.training.train import run_training\n"
        f"c = TrainConfig(stage=2, data=Path({str(data)!r}), out=Path({str(tmp_path / 'fsdp')!r}), steps=1,"
        " batch_size=2, micro_batch=1, seq_len=8, eval_batches=1, save_every=1, progress=False, device='cpu')\n"
        "s = run_training(c)\n"
        "torch.distributed.destroy_process_group()\n"
        "sys.stdout.write('SUMMARY ' + json.dumps(s) + '\\n')\n")  # one write: the ranks share stdout
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    result = subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-port", "29571", str(script)],
                            capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(line[8:]) for line in result.stdout.splitlines() if line.startswith("SUMMARY")]
    assert len(summaries) == 2  # rank 0 writes the summary, rank 1 returns an empty one
    summary = max(summaries, key=len)
    assert summary["processes"] == 2
    full = tmp_path / "fsdp" / "final"
    loaded = load_speech_models(ModelSpec.parse(str(full)), "cpu", torch.float32).lm
    base = build_tiny().lm
    assert any(not torch.equal(v, base.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert (tmp_path / "fsdp" / "checkpoints" / "step-000001" / "sharded").is_dir()

"""Data preparation, evaluation and the three commands, end to end on tiny models."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import json

import numpy as np
import pytest
import sentencepiece
import torch

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.audio.wav import write_wav
from moshiface_ros.cli import main
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.face_codec.checkpoint import save_codec
from moshiface_ros.face_codec.config import CodecConfig
from moshiface_ros.face_codec.model import FaceCodec
from moshiface_ros.face_codec.synthetic import SyntheticFace
from moshiface_ros.training.data import Word, align_text, read_dialogue, split_dialogues
from moshiface_ros.training.tokenizer import train_tokenizer
from moshiface_ros.training.probe import fit_probe
from moshiface_ros.training.sync import av_sync, lag_correlation, recovered
from moshiface_ros.regions import save_regions
from moshiface_ros.speech.engine import token_piece
from moshiface_ros.speech.models import ModelSpec, load_speech_models

VERTICES = 120
WORDS = "hello robot how are you today I am fine thank you the weather is nice".split()


pytestmark = pytest.mark.usefixtures("one_thread")


def test_text_is_aligned_like_the_inner_monologue():
    pieces = {"hello": [10, 11], "robot": [12], "you": [13]}
    words = [Word("a", "hello", 0.40, 0.7), Word("a", "robot", 0.45, 0.9), Word("a", "you", 2.0, 2.2)]
    text = align_text(words, 30, lambda w: pieces[w])
    assert text[5:8].tolist() == [10, 11, 12]  # 0.40 s -> step 5; "robot" waits for the step after "hello"
    assert text[25] == 13 and text[4] == 0 and text[24] == 0  # end-of-padding just before each word
    assert set(np.delete(text, [4, 5, 6, 7, 24, 25]).tolist()) == {3}


def test_a_tokenizer_trained_on_transcripts_keeps_moshis_special_ids():
    tokenizer = train_tokenizer([" ".join(WORDS), "hello robot", "thank you"], max_pieces=1000)
    assert [tokenizer.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert 8 <= tokenizer.vocab_size() <= 1000
    pieces = [p for w in WORDS for p in tokenizer.encode(w)]
    assert min(pieces) > 3  # words never become padding (3) or end-of-padding (0)
    assert "".join(tokenizer.decode(tokenizer.encode(w)) for w in WORDS) == "".join(WORDS)
    with pytest.raises(MoshifaceError, match="no words"):
        train_tokenizer(["", "  "])


def test_energy_probe_reads_loudness_from_tokens_and_the_gap_share():
    rng = np.random.default_rng(0)

    def conversation(steps=400):  # codebook 0 carries the loudness, the others are noise
        tokens = rng.integers(0, 64, (8, steps))
        return tokens, np.log(1 + tokens[0] / 8.0) + 0.05 * rng.standard_normal(steps)

    train, valid, test = ([conversation() for _ in range(n)] for n in (4, 2, 2))
    unzip = lambda items: ([t for t, _ in items], [e for _, e in items])  # noqa: E731
    probe, valid_corr = fit_probe(unzip(train), unzip(valid), card=64)
    assert valid_corr > 0.95 and probe.score(*unzip(test)) > 0.95
    shuffled = [(t, rng.permutation(e)) for t, e in test]
    assert abs(probe.score(*unzip(shuffled))) < 0.1  # no relation, no score
    with pytest.raises(MoshifaceError, match="outside"):
        probe.predict(np.full((8, 3), 64))
    assert recovered(0.5, 0.0, 0.55) == pytest.approx(0.5 / 0.55)
    assert recovered(8.76, 11.7, 8.53) == pytest.approx(0.927, abs=1e-3)  # the paper's LSE-D, teacher-forced
    assert recovered(0.1, 0.2, 0.2) is None and recovered(None, 0.0, 1.0) is None


def test_split_holds_out_test_then_nine_to_one():
    names = [f"d{i:03d}" for i in range(60)]
    splits = split_dialogues(names, test=["d001", "d002"])
    assert splits["test"] == ["d001", "d002"]
    assert len(splits["valid"]) == 6 and len(splits["train"]) == 52
    assert not set(splits["train"]) & set(splits["valid"]) and "d001" not in splits["train"]
    assert split_dialogues(names, test_count=5, seed=1) == split_dialogues(names, test_count=5, seed=1)
    with pytest.raises(MoshifaceError, match="not there"):
        split_dialogues(names, test=["nope"])


def test_sync_measure_finds_the_lag_and_tells_random_apart():
    rng = np.random.default_rng(0)
    frames, lips = 500, np.arange(4)
    opening = np.clip(np.convolve(rng.random(frames + 20), np.ones(5) / 5, "same")[:frames] - 0.45, 0, None)
    pcm = (rng.standard_normal(frames * 960) * np.repeat(opening + 1e-3, 960)).astype(np.float32)
    face = np.zeros((frames, 6, 3), np.float32)
    delayed = np.roll(opening, 3)  # the lips follow the voice by 3 frames (120 ms)
    face[:, 0, 1], face[:, 1, 1] = delayed * 0.01, -delayed * 0.01
    scores, curve = av_sync(pcm, face, lips)
    assert scores["lag_ms"] == 120.0 and scores["corr_peak"] > 0.6
    shuffled = face[rng.permutation(frames)]
    assert av_sync(pcm, shuffled, lips)[0]["corr_peak"] < 0.3
    assert len(lag_correlation(np.zeros(50), np.ones(50))) == 21


def _tokenizer(path):
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, 8)) for _ in range(300)]
    with open(path, "wb") as f:
        sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=f, vocab_size=30,
                                                 model_type="unigram", minloglevel=2)
    return path


def _dialogue(root, name, seed, seconds=3.0, with_faces=True):
    directory = root / name
    directory.mkdir(parents=True)
    face = SyntheticFace(vertices=VERTICES, seed=0)
    words = []
    for speaker, rate in (("alice", 16000, ), ("bob", 24000)):
        write_wav(directory / f"{speaker}.wav", synthetic_speech(seconds, rate, seed=seed + rate), rate)
        if with_faces or speaker == "alice":
            index = 0 if speaker == "alice" else 1
            motion = face.motion(int(seconds * 25), seed=seed, speaker=index)
            np.save(directory / f"{speaker}.npy", motion + face.neutral(index)[None])
            np.save(directory / f"{speaker}.neutral.npy", face.neutral(index))
        for k in range(4):
            words.append({"speaker": speaker, "word": WORDS[(seed + k) % len(WORDS)],
                          "start": 0.3 + 0.6 * k + (0.2 if speaker == "bob" else 0), "end": 0.5 + 0.6 * k})
    (directory / "transcript.json").write_text(json.dumps({"words": words}))
    return directory


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i in range(4):
        _dialogue(root / "dialogues", f"talk{i}", seed=i, with_faces=i != 2)
    torch.manual_seed(0)
    codec = FaceCodec(CodecConfig(vertices=VERTICES, vertex_dim=16, width=32, heads=2, ff_dim=64, latent_dim=16))
    save_codec(codec, root / "codec")
    save_regions(SyntheticFace(vertices=VERTICES, seed=0).regions(), root / "regions.yaml")
    _tokenizer(root / "spm.model")
    (root / "test.txt").write_text("talk3\n")
    return root


def test_prepare_train_evaluate_from_the_command_line(corpus, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "prepare", "--dialogues", str(corpus / "dialogues"), "--out", str(data),
                 "--codec", str(corpus / "codec"), "--tokenizer", str(corpus / "spm.model"),
                 "--test-list", str(corpus / "test.txt"), "--device", "cpu", "--quiet"]) == 0
    splits = json.loads((data / "splits.json").read_text())
    assert splits["test"] == ["talk3"] and len(splits["train"]) + len(splits["valid"]) == 3
    tokens = np.load(data / "tokens" / "talk0.npz")
    steps = tokens["text"].shape[1]
    assert steps == 38  # 3 s at 12.5 Hz, rounded up
    assert tokens["audio"].shape == (2, 8, steps) and tokens["face"].shape == (2, 8, steps)
    assert (tokens["face"][:, :, :37] >= 0).all() and (tokens["face"] < 256).all()
    assert ((tokens["text"] != 3) & (tokens["text"] != 0)).sum() >= 8  # 4 words per speaker
    assert (np.load(data / "tokens" / "talk2.npz")["face"][1] == -1).all()  # bob had no face there
    # an interrupted run resumes: done dialogues are kept as they are
    before = (data / "tokens" / "talk0.npz").stat().st_mtime_ns
    assert main(["data", "prepare", "--dialogues", str(corpus / "dialogues"), "--out", str(data),
                 "--codec", str(corpus / "codec"), "--tokenizer", str(corpus / "spm.model"),
                 "--test-list", str(corpus / "test.txt"), "--device", "cpu", "--quiet"]) == 0
    assert (data / "tokens" / "talk0.npz").stat().st_mtime_ns == before

    out = tmp_path / "stage1"
    assert main(["train", "--stage", "1", "--data", str(data), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--micro-batch", "1", "--seq-len", "12", "--eval-every", "2",
                 "--save-every", "2", "--device", "cpu", "--quiet"]) == 0
    assert (out / "final" / "model.safetensors").is_file() and (out / "loss.png").is_file()
    # the checkpoint carries the data's tokenizer, and loading it brings the words back
    given = sentencepiece.SentencePieceProcessor(model_file=str(corpus / "spm.model"))
    assert (out / "final" / "tokenizer_spm_32k_3.model").read_bytes() == given.serialized_model_proto()
    loaded = load_speech_models(ModelSpec.parse(str(out / "final")), "cpu", torch.float32)
    assert loaded.tokenizer is not None and loaded.tokenizer.id_to_piece(5) == given.id_to_piece(5)
    assert token_piece(loaded, 5) == given.id_to_piece(5).replace("\u2581", " ")

    results_dir = tmp_path / "eval"
    capsys.readouterr()
    assert main(["eval", "--data", str(data), "--model", str(out / "final"), "--codec", str(corpus / "codec"),
                 "--regions", str(corpus / "regions.yaml"), "--out", str(results_dir), "--max-steps", "20",
                 "--free-runs", "1", "--free-run-steps", "12", "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "teacher-forced (2 conversations)" in printed and "free-run (1 conversations)" in printed
    results = json.loads((results_dir / "results.json").read_text())
    tf = results["teacher_forced"]
    assert tf["conversations"] == 2 and tf["mve_x1e-3"] > 0 and tf["lve_x1e-3"] > 0
    assert set(tf["sync"]) == {"generated", "reconstructed", "random", "mismatched"}
    assert tf["speech"] == ["original waveform"]  # not the untrained Mimi's decoding
    assert 0 < tf["lve_max_l2_mm"] <= (tf["lve_x1e-3"] * 1e3) ** 0.5 + 1e-9  # mean of roots <= root of mean
    assert "recovered" in tf and "recovered" in results["free_run"]
    assert results["free_run"]["sides"] == 2 and set(results["free_run"]["sync"]) == set(tf["sync"])
    assert results["free_run"]["probe"]["valid_corr"] is not None
    rows = {(r["mode"], r["condition"]): r for r in results["table"]}
    assert len(rows) == 8 and rows[("teacher-forced", "generated")]["mve_x1e-3"] == tf["mve_x1e-3"]
    for mode in ("teacher-forced", "free-run"):
        for condition in ("generated", "reconstructed", "random", "mismatched"):
            assert f"{mode:<15}{condition:<15}" in printed
        assert f"{mode:<15}{'recovered':<15}" in printed
    assert (results_dir / "eval.png").stat().st_size > 1000
    assert results["face_sampling"] == {"temperature": 0.3, "top_k": 100}  # what `moshiface run` samples with
    assert "face tokens sampled at temperature 0.3, top-k 100" in printed
    assert main(["eval", "--data", str(data), "--model", str(out / "final"), "--codec", str(corpus / "codec"),
                 "--regions", str(corpus / "regions.yaml"), "--out", str(tmp_path / "greedy"), "--max-steps", "20",
                 "--mode", "teacher-forced", "--face-temperature", "0", "--device", "cpu", "--quiet"]) == 0
    greedy = json.loads((tmp_path / "greedy" / "results.json").read_text())
    assert greedy["face_sampling"]["temperature"] == 0.0
    assert greedy["teacher_forced"]["sync"]["generated"] != tf["sync"]["generated"]
    assert greedy["teacher_forced"]["sync"]["reconstructed"] == tf["sync"]["reconstructed"]


def test_bad_dialogues_and_commands(corpus, tmp_path, capsys):
    three = _dialogue(tmp_path, "three", seed=9)
    write_wav(three / "carol.wav", synthetic_speech(1.0, 24000), 24000)
    with pytest.raises(MoshifaceError, match="two in all"):
        read_dialogue(three)
    broken = _dialogue(tmp_path / "b", "broken", seed=9)
    (broken / "transcript.json").write_text('{"words": [{"speaker": "zed", "word": "x", "start": 0, "end": 1}]}')
    with pytest.raises(MoshifaceError, match="zed"):
        read_dialogue(broken)
    (tmp_path / "junk.model").write_bytes(b"not a tokenizer")
    assert main(["data", "prepare", "--dialogues", str(corpus / "dialogues"), "--out", str(tmp_path / "d"),
                 "--codec", str(corpus / "codec"), "--tokenizer", str(tmp_path / "junk.model"), "--device", "cpu",
                 "--quiet"]) == 1
    assert "junk.model is not a SentencePiece model" in capsys.readouterr().err
    assert main(["data", "prepare", "--dialogues", str(tmp_path / "none"), "--out", str(tmp_path / "d"),
                 "--codec", str(corpus / "codec"), "--device", "cpu"]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--model", "tiny", "--codec", str(corpus / "codec"),
                 "--out", str(tmp_path / "e"), "--mode", "sideways", "--device", "cpu"]) == 1
    assert "--mode" in capsys.readouterr().err

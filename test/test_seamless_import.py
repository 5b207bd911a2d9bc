"""`moshiface data import-seamless` on a tiny recording in Meta's Seamless Interaction layout,
written here: per participant ``V<vendor>_S<session>_I<interaction>_P<participant>`` .wav
(48 kHz), .mp4 (a real face, 30 and 29.97 fps) and .json with the dataset's field names
(``id``, ``metadata:transcript`` segments with timed ``words``, ``metadata:vad``). Then the
imported dialogue goes through ``data prepare`` (the tiny model has no tokenizer: one is
trained on the transcripts) and ``train --stage 1``, and the checkpoint carries the tokenizer.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("mediapipe")

from test_data_track import write_face_video  # noqa: E402

from moshiface_ros.audio.synth import synthetic_speech  # noqa: E402
from moshiface_ros.audio.wav import write_wav  # noqa: E402
from moshiface_ros.cli import main  # noqa: E402
from moshiface_ros.errors import MoshifaceError  # noqa: E402
from moshiface_ros.face_codec.checkpoint import save_codec  # noqa: E402
from moshiface_ros.face_codec.config import CodecConfig  # noqa: E402
from moshiface_ros.face_codec.model import FaceCodec  # noqa: E402
from moshiface_ros.training.seamless import find_interactions, read_transcript  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SECONDS = 2.4
LINES = {"P0001": [("Hello there, how", 0.2), ("are you today?", 1.3)],
         "P0002A": [("I am fine", 0.6), ("thank you.", 1.7)]}


def seamless_json(file_id: str, lines: list[tuple[str, float]]) -> dict:
    segments = []
    for text, start in lines:
        words = [{"word": w, "start": round(start + 0.25 * i, 3), "end": round(start + 0.25 * i + 0.2, 3),
                  "score": 0.9} for i, w in enumerate(text.split())]
        segments.append({"words": words, "start": words[0]["start"], "end": words[-1]["end"], "transcript": text})
    return {"id": file_id, "metadata:transcript": segments,
            "metadata:vad": [{"start": s["start"], "end": s["end"]} for s in segments]}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seamless") / "improvised" / "dev"
    root.mkdir(parents=True)
    for i, (person, lines) in enumerate(LINES.items()):
        file_id = f"V00_S0809_I00000582_{person}"
        write_wav(root / f"{file_id}.wav", synthetic_speech(SECONDS, 48000, seed=i), 48000)
        write_face_video(root / f"{file_id}.mp4", int(SECONDS * (30 if i == 0 else 29.97)), 30.0 if i == 0 else 29.97)
        (root / f"{file_id}.json").write_text(json.dumps(seamless_json(file_id, lines)))
        # the raw layout's annotation files share the name: they must not hide the recording
        (root / "1P-IS").mkdir(exist_ok=True)
        (root / "1P-IS" / f"{file_id}.json").write_text(json.dumps({"annotations": ["calm"]}))
    # an interaction of which only one participant was downloaded: reported, not imported
    lonely = "V00_S0809_I00000583_P0001"
    write_wav(root / f"{lonely}.wav", synthetic_speech(1.0, 48000, seed=5), 48000)
    (root / f"{lonely}.json").write_text(json.dumps(seamless_json(lonely, [("alone", 0.1)])))
    return root.parent.parent


def test_the_layout_is_read_and_paired(recording):
    found, skipped = find_interactions(recording)
    assert [i.key for i in found] == ["V00_S0809_I00000582"]
    assert [p.name for p in found[0].participants] == ["P0001", "P0002A"]
    assert all(p.mp4 is not None and p.json.parent.name == "dev" for p in found[0].participants)
    assert len(skipped) == 1 and "I00000583" in skipped[0]
    words = read_transcript(found[0].participants[0].json, "P0001")
    assert [w["word"] for w in words] == "Hello there, how are you today?".split()
    assert words[3] == {"speaker": "P0001", "word": "are", "start": 1.3, "end": 1.5}


def test_segments_without_words_are_spread_over_their_span(tmp_path):
    path = tmp_path / "V01_S0001_I00000001_P0001.json"
    path.write_text(json.dumps({"id": path.stem, "metadata:transcript": [{"start": 1.0, "end": 2.0, "text": "a b"}]}))
    assert [(w["word"], w["start"], w["end"]) for w in read_transcript(path, "P0001")] == [
        ("a", 1.0, 1.5), ("b", 1.5, 2.0)]
    path.write_text(json.dumps({"id": path.stem, "metadata:vad": []}))
    with pytest.raises(MoshifaceError, match="metadata:transcript"):
        read_transcript(path, "P0001")


def test_import_prepare_and_train_stage_1(recording, tmp_path, capsys):
    dialogues = tmp_path / "dialogues"
    assert main(["data", "import-seamless", str(recording), "--out", str(dialogues), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 imported" in printed and "skipped V00_S0809_I00000583" in printed
    dialogue = dialogues / "V00_S0809_I00000582"
    assert sorted(p.name for p in dialogue.iterdir()) == [
        "P0001.npy", "P0001.track.json", "P0001.wav", "P0002A.npy", "P0002A.track.json", "P0002A.wav",
        "transcript.json"]
    for person in ("P0001", "P0002A"):
        motion = np.load(dialogue / f"{person}.npy")
        assert motion.shape == (60, 5023, 3) and np.abs(motion).max() > 1e-3  # 2.4 s at 25 fps, moving
    words = json.loads((dialogue / "transcript.json").read_text())["words"]
    assert len(words) == 11 and {w["speaker"] for w in words} == {"P0001", "P0002A"}

    torch.manual_seed(0)
    save_codec(FaceCodec(CodecConfig(vertices=5023, vertex_dim=8, width=32, heads=2, ff_dim=64, latent_dim=16)),
               tmp_path / "codec")
    data = tmp_path / "data"
    assert main(["data", "prepare", "--dialogues", str(dialogues), "--out", str(data), "--codec",
                 str(tmp_path / "codec"), "--model", "tiny", "--device", "cpu", "--quiet"]) == 0
    assert "trained one of" in capsys.readouterr().out
    tokens = np.load(data / "tokens" / "V00_S0809_I00000582.npz")
    assert tokens["face"].shape == (2, 8, 30) and (tokens["face"][:, :, :29] >= 0).all()
    assert ((tokens["text"] != 3) & (tokens["text"] != 0)).sum() >= 11
    assert (data / "tokenizer.model").is_file()

    (data / "splits.json").write_text(json.dumps({"train": [dialogue.name], "valid": [dialogue.name],
                                                  "test": [dialogue.name]}))
    out = tmp_path / "stage1"
    assert main(["train", "--stage", "1", "--data", str(data), "--out", str(out), "--steps", "2", "--batch-size",
                 "2", "--micro-batch", "1", "--seq-len", "12", "--eval-every", "2", "--save-every", "2",
                 "--device", "cpu", "--quiet"]) == 0
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "final" / "tokenizer_spm_32k_3.model").read_bytes() == (data / "tokenizer.model").read_bytes()


def test_bad_recordings_are_one_clear_line(tmp_path, capsys):
    assert main(["data", "import-seamless", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 1
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "import-seamless", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "V<vendor>_S<session>" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    for person in ("P1", "P2"):
        write_wav(bad / f"V1_S1_I1_{person}.wav", synthetic_speech(0.5, 48000), 48000)
        (bad / f"V1_S1_I1_{person}.json").write_text('{"id": "x", "metadata:transcript": [{"words": [{"word": "x"}]}]}')
    assert main(["data", "import-seamless", str(bad), "--out", str(tmp_path / "o"), "--no-faces", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "metadata:transcript" in err and len(err.strip().splitlines()) == 1
    assert not any((tmp_path / "o").glob("V1_S1_I1*"))  # nothing half-written

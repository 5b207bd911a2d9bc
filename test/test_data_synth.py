"""``moshiface data synth``: real espeak-ng words, faces that follow their own voice and
answer the other's smiles, in the layout ``data prepare`` and ``codec train`` read."""

import json
import shutil

import numpy as np
import pytest

from moshiface_ros.cli import main
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.face_codec.data import FaceDataset
from moshiface_ros.flame.synthetic_expressions import EXPRESSION
from moshiface_ros.regions import load_regions
from moshiface_ros.training.corpus import SynthConfig, write_corpus
from moshiface_ros.training.corpus_faces import ConversationFaces, SocialConfig, social_smiles
from moshiface_ros.training.corpus_script import plan_conversation, render_tracks
from moshiface_ros.training.corpus_speech import VOICES, Speaker
from moshiface_ros.training.data import audio_24k, find_dialogues, load_motion
from moshiface_ros.training.expression_probe import ExpressionProbe, reply_strength
from moshiface_ros.training.sync import av_sync, energy_envelope

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                reason="espeak-ng is a system package (scripts/install_system_packages.sh)")
VERTICES = 96


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    assert main(["data", "synth", "--out", str(out), "--dialogues", "3", "--seconds", "8", "--vertices",
                 str(VERTICES), "--test-count", "1", "--seed", "3", "--quiet"]) == 0
    return out


def test_layout_is_what_prepare_and_the_codec_read(corpus):
    dialogues = find_dialogues(corpus / "dialogues")
    assert [d.name for d in dialogues] == ["conv0000", "conv0001", "conv0002"]
    test = (corpus / "test.txt").read_text().split()
    assert len(test) == 1 and test[0] in {d.name for d in dialogues}
    for d in dialogues:
        assert d.speakers == ["A", "B"]
        assert {w.speaker for w in d.words} == {"A", "B"}
        for s in d.speakers:
            assert load_motion(d.directory, s, VERTICES).shape == (200, VERTICES, 3)
            assert len(audio_24k(d.directory / f"{s}.wav")) == 8 * 24000
    codec_data = FaceDataset(corpus)
    names = set(codec_data.sequences)
    assert len(names) == 4 and not any(n.startswith(test[0]) for n in names)  # the held-out faces stay unseen
    assert load_regions(corpus / "regions.yaml").get("lips").size > 0


def test_word_timing_is_exact_and_each_track_holds_only_its_speaker(corpus):
    d = find_dialogues(corpus / "dialogues")[0]
    for s in d.speakers:
        pcm = audio_24k(d.directory / f"{s}.wav")
        spoken = np.zeros(len(pcm), bool)
        for w in (w for w in d.words if w.speaker == s):
            first, last = int(w.start * 24000), int(w.end * 24000)
            assert np.abs(pcm[first: first + 240]).max() > 0.02, w  # the word starts where the transcript says
            assert np.abs(pcm[last - 240: last]).max() > 0.005, w
            spoken[max(0, first - 4): last + 4] = True  # the transcript rounds to 0.1 ms
        assert np.abs(pcm[~spoken]).max() < 1e-6  # silence between words: nothing of the other voice


def test_conversation_has_turns_overlaps_and_backchannels():
    speakers = (Speaker(VOICES[0]), Speaker(VOICES[1]))
    words = [w for k in range(6) for w in plan_conversation(speakers, 20.0, np.random.default_rng(k))]
    assert {w.word for w in words} & {"yeah", "mhm", "right", "okay", "wow", "sure", "really"}
    changes = sum(1 for a, b in zip(words, words[1:]) if a.speaker != b.speaker)
    assert changes >= 12
    overlaps = sum(1 for a in words for b in words if a.speaker != b.speaker and a.start < b.start < a.end)
    assert overlaps >= 3
    assert all(w.end <= 20.0 for w in words)
    a, b = speakers[0].clip("hello").samples, speakers[1].clip("hello").samples
    assert abs(len(a) - len(b)) > 240 or not np.allclose(a[:1000], b[:1000])  # two distinct voices


def test_each_face_follows_its_own_voice(corpus):
    lips = load_regions(corpus / "regions.yaml").get("lips")
    own, other = [], []
    for d in find_dialogues(corpus / "dialogues"):
        pcm = {s: audio_24k(d.directory / f"{s}.wav") for s in d.speakers}
        for s, o in (("A", "B"), ("B", "A")):
            face = load_motion(d.directory, s, VERTICES)
            own.append(av_sync(pcm[s], face, lips)[0]["corr_zero"])
            other.append(av_sync(pcm[o], face, lips)[0]["corr_zero"])
    assert min(own) > 0.7, own
    assert np.mean(own) - np.mean(other) > 0.6, (own, other)


def test_the_listener_smiles_back_and_nods_while_the_other_talks():
    config = SocialConfig()
    rng = np.random.default_rng(0)
    lead, no_lead = [], []
    for _ in range(20):
        smiles, replies = social_smiles(rng, 1500, config)
        d = config.reply_delay_frames
        lead.append(np.corrcoef(smiles[0, :-d], smiles[1, d:])[0, 1] + np.corrcoef(smiles[1, :-d], smiles[0, d:])[0, 1])
        other, _ = social_smiles(rng, 1500, config)
        no_lead.append(np.corrcoef(smiles[0, :-d], other[1, d:])[0, 1])
    assert np.mean(lead) > 0.6 and abs(np.mean(no_lead)) < 0.15, (lead, no_lead)  # replies, not coincidence
    speakers = (Speaker(VOICES[0]), Speaker(VOICES[1]))
    faces = ConversationFaces(VERTICES, seed=1)
    listening, alone = [], []
    for k in range(4):
        tracks, phonemes = render_tracks(plan_conversation(speakers, 30.0, np.random.default_rng(k)), 30.0)
        params = faces.params(tracks, phonemes, k)
        assert np.allclose(params[0].expression[:, EXPRESSION["cheek_raise"]],
                           0.5 * params[0].expression[:, EXPRESSION["smile"]])
        for s in range(2):
            own, them = energy_envelope(tracks[s], 750) > -6, energy_envelope(tracks[1 - s], 750) > -6
            pitch = params[s].neck_pose[:, 0]
            listening.append(pitch[~own & them].mean())
            alone.append(pitch[~own & ~them].mean())
    assert np.mean(listening) > np.mean(alone) + 0.002, (listening, alone)


def test_the_expression_probe_reads_the_smile_through_jaw_lips_and_pose(corpus, tmp_path):
    """The demixed smile follows the smile the corpus put on the face, although the jaw, the
    lips and the head's pose move the same vertices far more; and the smile-back measure
    tells a conversation's two faces from two unrelated ones."""
    probe = ExpressionProbe.for_corpus(corpus)
    assert probe.vertices == VERTICES
    speakers = (Speaker(VOICES[0]), Speaker(VOICES[1]))
    faces = ConversationFaces(VERTICES, seed=3)
    smiles, paired, unrelated = [], [], []
    for k in range(3):
        tracks, phonemes = render_tracks(plan_conversation(speakers, 30.0, np.random.default_rng(k)), 30.0)
        params, motion = faces.params(tracks, phonemes, k), faces.motion(tracks, phonemes, k)
        for s in range(2):
            truth, read = params[s].coefficient("smile"), probe.smile(motion[s])
            assert np.corrcoef(truth, read)[0, 1] > 0.95
            smiles.append(read)
        paired.append(reply_strength(smiles[-2], smiles[-1]))
    for k in range(3):
        unrelated.append(reply_strength(smiles[2 * k], smiles[(2 * k + 3) % 6]))
    assert np.mean(paired) > np.mean(unrelated) + 0.2, (paired, unrelated)
    with pytest.raises(MoshifaceError, match="not a corpus written by"):
        ExpressionProbe.for_corpus(tmp_path)
    with pytest.raises(MoshifaceError, match="motion must be"):
        probe.smile(np.zeros((4, VERTICES + 1, 3)))


def test_same_seed_same_corpus_and_a_run_resumes(tmp_path):
    runs = []
    for name in ("a", "b"):
        write_corpus(SynthConfig(out=tmp_path / name, dialogues=2, seconds=4, vertices=32, test_count=1, seed=5,
                                 progress=False))
        d = tmp_path / name / "dialogues" / "conv0001"
        runs.append(((d / "A.wav").read_bytes(), np.load(d / "B.npy"), (d / "transcript.json").read_text()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1]) and runs[0][2] == runs[1][2]
    again = write_corpus(SynthConfig(out=tmp_path / "a", dialogues=2, seconds=4, vertices=32, test_count=1, seed=5,
                                     progress=False))
    assert again["written"] == 0 and again["kept"] == 2
    assert json.loads((tmp_path / "a" / "corpus.json").read_text())["settings"]["seed"] == 5


def test_bad_settings_and_a_missing_espeak_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--dialogues", "1"]) == 1
    assert "--dialogues must be at least 2" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--dialogues", "3", "--test-count", "3"]) == 1
    assert "--test-count" in capsys.readouterr().err
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--dialogues", "2"]) == 1
    assert "--dialogues must be at least 4" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--face-delay", "0"]) == 1
    assert "--face-delay must be 1 (the paper's) or more" in capsys.readouterr().err and not (tmp_path / "q").exists()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MoshifaceError, match="espeak-ng, which is not installed"):
        write_corpus(SynthConfig(out=tmp_path / "y", dialogues=2, seconds=4, vertices=32, test_count=1))
    assert not (tmp_path / "y").exists()


def test_the_quick_start_runs_the_whole_path_at_toy_sizes_and_resumes(tmp_path, capsys):
    """``moshiface quickstart`` at toy sizes: corpus, codec, tokens, both stages with the
    quick-start's face (audio lookup, delay 2, its own width), the table with its controls,
    and a ``run`` of the trained model whose voice waits for its face; a second call finds
    every step done."""
    from moshiface_ros.training.quickstart import QuickstartConfig, run_quickstart

    def config() -> QuickstartConfig:
        return QuickstartConfig(out=tmp_path / "q", dialogues=5, seconds=4, vertices=32, test_count=2,
                                codec_epochs=2, stage1_steps=4, stage2_steps=2, batch_size=2, seq_len=20,
                                face_dim=32, progress=False)

    summary = run_quickstart(config())
    rows = {(row["mode"], row["condition"]) for row in summary["results"]["stage2"]["table"]}
    for mode in ("teacher-forced", "free-run"):
        assert {(mode, c) for c in ("generated", "reconstructed", "random", "mismatched")} <= rows
    final = tmp_path / "q" / "stage2" / "final"
    face = json.loads((final / "config.json").read_text())["moshi_face"]["face"]
    assert (face["delay"], face["dim"], face["dim_feedforward"], face["audio_lookup"]) == (2, 32, 64, True)
    assert any(final.glob("tokenizer*.model"))  # the checkpoint carries its tokenizer
    run = json.loads((tmp_path / "q" / "run" / "summary.json").read_text())
    assert run["complete"] and run["steps"] == 50 and run["messages"]["/moshiface/robot/face"] == 100
    assert run["messages"]["/moshiface/robot/face_tokens"] == 48  # 50 - the warm-up step - the held one
    assert set(summary["timings"]) >= {"corpus", "codec", "prepare", "stage 1", "stage 2", "run", "total"}
    capsys.readouterr()
    again = run_quickstart(config())
    assert set(again["timings"]) == {"total"} and "[stage 1] already done" in capsys.readouterr().out

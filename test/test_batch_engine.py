"""Batched sessions on real moshi code (tiny random Moshi-Face): B conversations stepped in
one forward pass give, with greedy sampling, exactly what each gives stepped alone."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import pytest
import torch

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FACE_CARD, FACE_TOKENS, FRAME_SIZE
from moshiface_ros.speech.batch import BatchedEngine
from moshiface_ros.speech.engine import Sampling, SpeechEngine
from moshiface_ros.speech.models import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

GREEDY = Sampling(temperature=0.0, text_temperature=0.0, face_temperature=0.0)
STEPS = 10


@pytest.fixture(scope="module")
def tiny():
    return build_tiny()


def conversation(seed: int, steps: int = STEPS) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """A user's audio frames and face tokens (unseen every third step)."""
    pcm = synthetic_speech(steps * FRAME_SIZE / 24000, 24000, seed=seed)
    faces = np.random.default_rng(seed).integers(0, FACE_CARD, (steps, FACE_TOKENS))
    return ([pcm[i * FRAME_SIZE:(i + 1) * FRAME_SIZE] for i in range(steps)],
            [None if i % 3 == 2 else faces[i] for i in range(steps)])


def alone(models, audio, faces):
    with SpeechEngine(models, GREEDY, seed=0) as engine:
        return [engine.step(a, f) for a, f in zip(audio, faces)]


def assert_same(batched, single, label):
    assert len(batched) == len(single), label
    for i, (b, s) in enumerate(zip(batched, single)):
        where = f"{label}, step {i}"
        assert b.step == s.step, where
        assert np.array_equal(b.user_tokens, s.user_tokens), where
        assert b.text_token == s.text_token and b.text_piece == s.text_piece, where
        for mine, theirs in ((b.audio_tokens, s.audio_tokens), (b.face_tokens, s.face_tokens)):
            assert (mine is None) == (theirs is None), where
            assert mine is None or np.array_equal(mine, theirs), where
        np.testing.assert_allclose(b.pcm, s.pcm, atol=1e-4, err_msg=where)


def test_batched_equals_alone_with_a_late_join_and_a_reset(tiny):
    a, late, before, after = conversation(1), conversation(2), conversation(3, 4), conversation(4)
    expected = {"a": alone(tiny, *a), "late": alone(tiny, *late), "before": alone(tiny, *before),
                "after": alone(tiny, *after)}
    got = {name: [] for name in expected}
    join, reset = 3, 4
    with BatchedEngine(tiny, 4, GREEDY, seed=0) as engine:  # slot 3 stays idle throughout
        for t in range(reset + STEPS):
            pcm, faces, names = {}, {}, {}
            if t < STEPS:
                pcm[0], faces[0], names[0] = a[0][t], a[1][t], "a"
            if join <= t < join + STEPS:
                pcm[1], faces[1], names[1] = late[0][t - join], late[1][t - join], "late"
            if t == reset:
                engine.reset(2)
            if t < reset:
                pcm[2], faces[2], names[2] = before[0][t], before[1][t], "before"
            elif t < reset + STEPS:
                pcm[2], faces[2], names[2] = after[0][t - reset], after[1][t - reset], "after"
            out = engine.step(pcm, faces)
            assert sorted(out) == sorted(pcm)
            for slot, name in names.items():
                got[name].append(out[slot])
        assert engine.steps == [STEPS, STEPS, STEPS, 0]
    for name in expected:
        assert_same(got[name], expected[name], name)
    # the conversations really differ, so equality above is not trivial
    assert [o.text_token for o in got["a"]] != [o.text_token for o in got["late"]]


def test_a_slot_that_idles_mid_conversation_continues_as_if_it_had_not(tiny):
    """Slot 0 sits out steps while slot 1 talks alone (a robot waiting for its audio while
    another's step runs): its tokens, face tokens included, are those it gets never idling."""
    a, b = conversation(7), conversation(8)
    expected = alone(tiny, *a)
    got = []
    with BatchedEngine(tiny, 2, GREEDY, seed=0) as engine:
        for t in range(STEPS):
            if t in (2, 5, 6):  # slot 0 idles: slot 1 steps alone
                engine.step({1: b[0][t]}, {1: b[1][t]})
            got.append(engine.step({0: a[0][t], 1: b[0][t]}, {0: a[1][t], 1: b[1][t]})[0])
    assert_same(got, expected, "idling slot")


def test_batched_sessions_stay_apart(tiny):
    """Two slots fed the same input give the same output; a third, different input does not."""
    audio, faces = conversation(5)
    other = conversation(6)
    with BatchedEngine(tiny, 3, GREEDY) as engine:
        outs = [engine.step({0: audio[t], 1: audio[t], 2: other[0][t]}, {0: faces[t], 1: faces[t]})
                for t in range(STEPS)]
    assert all(o[0].text_token == o[1].text_token and np.array_equal(o[0].pcm, o[1].pcm) for o in outs)
    assert any(not np.array_equal(o[0].user_tokens, o[2].user_tokens) for o in outs)


def test_bad_slots_and_frames_are_refused(tiny):
    with BatchedEngine(tiny, 2, GREEDY) as engine:
        with pytest.raises(ValueError, match="slot 2 is outside 0..1"):
            engine.step({2: np.zeros(FRAME_SIZE, np.float32)})
        with pytest.raises(ValueError, match="slot 0: a step takes 1920"):
            engine.step({0: np.zeros(10, np.float32)})
        with pytest.raises(ValueError, match="user face tokens must be 8 integers"):
            engine.step({0: np.zeros(FRAME_SIZE, np.float32)}, {0: np.zeros(3, np.int64)})
    with pytest.raises(ValueError, match="at least one slot"):
        BatchedEngine(tiny, 0)


SAMPLED = Sampling(temperature=1.0, text_temperature=1.0, face_temperature=1.0, top_k=50, text_top_k=50,
                   face_top_k=50)


def sampled_alone(models, seed, audio, faces):
    with BatchedEngine(models, 1, SAMPLED, slot_seeds=[seed]) as engine:
        return [engine.step({0: a}, {0: f})[0] for a, f in zip(audio, faces)]


def test_each_slot_samples_from_its_own_generator(tiny):
    """With a temperature, slot 1 (seed 11) in a batch of 3 -- neighbours sampling beside it,
    one joining late, itself idling one step and a neighbour resetting -- samples exactly what
    it samples stepped alone with seed 11; the global generator plays no part."""
    talks = [conversation(20), conversation(21), conversation(22)]
    expected = sampled_alone(tiny, 11, *talks[1])
    got = []
    with BatchedEngine(tiny, 3, SAMPLED, slot_seeds=[10, 11, 12]) as engine:
        for t in range(STEPS + 1):
            if t == 4:
                engine.reset(2)
            active = [slot for slot in (0, 1, 2) if not (slot == 2 and t < 2)]
            moment = {slot: t - (slot == 1 and t > 5) for slot in active}  # slot 1 idles at step 5
            torch.manual_seed(t)  # the global generator moving must not matter
            pcm = {s: talks[s][0][m] for s, m in moment.items() if m < STEPS and not (s == 1 and t == 5)}
            out = engine.step(pcm, {s: talks[s][1][moment[s]] for s in pcm})
            if 1 in out:
                got.append(out[1])
        engine.reset(1)  # a new conversation in slot 1 starts its generator over
        again = [engine.step({1: a}, {1: f})[1] for a, f in zip(talks[1][0][:3], talks[1][1][:3])]
    assert_same(got, expected, "sampled slot")
    assert_same(again, expected[:3], "sampled slot after its reset")
    # sampling really is on and the seed really matters: greedy and another seed differ
    greedy = alone(tiny, *talks[1])
    other = sampled_alone(tiny, 12, *talks[1])
    tokens = lambda outs: [(o.text_token, None if o.audio_tokens is None else o.audio_tokens.tolist(),
                            None if o.face_tokens is None else o.face_tokens.tolist()) for o in outs]
    assert tokens(expected) != tokens(greedy) and tokens(expected) != tokens(other)


def test_an_audio_only_model_samples_per_slot_too():
    """moshi's own LM (no face streams): slot 0 of a batch of 2 samples what it samples alone."""
    models = build_tiny(face=False)
    talks = [conversation(30, 6), conversation(31, 6)]
    expected = sampled_alone(models, 5, *talks[0])
    with BatchedEngine(models, 2, SAMPLED, slot_seeds=[5, 6]) as engine:
        got = [engine.step({0: talks[0][0][t], 1: talks[1][0][t]})[0] for t in range(6)]
    assert_same(got, expected, "audio-only sampled slot")
    assert all(o.face_tokens is None for o in got)

"""Motion from a voice on the synthetic head: the mouth follows the speech, the speaker blinks
and moves, and the same voice and seed always give the same motion."""

from __future__ import annotations

import numpy as np
import pytest

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FACE_FPS, FLAME_VERTICES, SAMPLE_RATE, VHAP_VERTICES
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.flame.motion_head import LipGauge, motion_head
from moshiface_ros.flame.voice_motion import VoiceMotion, motion_vertices
from moshiface_ros.flame.voice_visemes import Phoneme

RATE = SAMPLE_RATE
WINDOW = RATE // FACE_FPS


def _rms_envelope(samples: np.ndarray, frames: int) -> np.ndarray:
    """The voice's loudness per 40 ms frame, measured here independently of the generator."""
    padded = np.concatenate([samples, np.zeros(frames * WINDOW - samples.size, np.float32)])
    return np.sqrt(np.mean(padded.reshape(frames, WINDOW).astype(np.float64) ** 2, axis=1))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthetic_speech(10.0, RATE, seed=3)


@pytest.fixture(scope="module")
def head():
    return motion_head(VHAP_VERTICES)


def test_lip_aperture_on_the_mesh_follows_the_speech_envelope(speech, head):
    motion = VoiceMotion(seed=1).generate(speech, RATE)
    assert motion.frames == 250
    aperture = LipGauge(head.neutral, head.regions)(motion_vertices(head, motion))
    envelope = _rms_envelope(speech, motion.frames)
    r = np.corrcoef(aperture, envelope)[0, 1]
    shuffled = np.corrcoef(np.random.default_rng(0).permutation(aperture), envelope)[0, 1]
    assert r > 0.6, f"aperture vs envelope correlation {r:.2f}"
    assert abs(shuffled) < 0.2, f"a shuffled control correlates too ({shuffled:.2f})"
    voiced, silent = envelope > 0.3 * envelope.max(), envelope < 1e-4
    rest = LipGauge(head.neutral, head.regions)(head.neutral)
    assert np.median(aperture[voiced]) > rest + 0.004  # the mouth opens at least 4 mm more on voiced frames
    assert np.median(aperture[silent]) < np.median(aperture[voiced]) - 0.003


def test_blinks_at_a_plausible_rate_and_both_lids():
    motion = VoiceMotion(seed=5).generate(np.zeros(120 * RATE, np.float32), RATE)
    left = motion.coefficient("blink_left")
    closes = int(((left[1:] >= 0.99) & (left[:-1] < 0.99)).sum())
    assert 8 <= closes <= 50, f"{closes} blinks in 2 minutes"  # people blink ~10-25 times a minute
    assert np.corrcoef(left, motion.coefficient("blink_right"))[0, 1] > 0.95
    assert (left < 0.01).mean() > 0.7  # the eyes are open most of the time


def test_deterministic_per_seed_and_seeds_differ(speech):
    a = VoiceMotion(seed=2).generate(speech, RATE)
    b = VoiceMotion(seed=2).generate(speech, RATE)
    c = VoiceMotion(seed=3).generate(speech, RATE)
    for name in ("jaw_pose", "expression", "global_pose", "neck_pose", "translation", "eye_pose"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.jaw_pose, c.jaw_pose)  # the jaw is the voice's, not the seed's
    assert not np.allclose(a.global_pose, c.global_pose)
    assert not np.allclose(a.coefficient("blink_left"), c.coefficient("blink_left"))


def test_head_moves_a_little_and_nods_with_the_voice(speech):
    motion = VoiceMotion(seed=1).generate(speech, RATE)
    assert 0.005 < np.abs(motion.global_pose).max() < 0.15  # sway: visible, below ~9 degrees
    assert np.abs(motion.translation).max() < 0.01
    assert 0.0 < np.abs(motion.eye_pose).max() <= 0.08  # the eyes glance away now and then
    np.testing.assert_array_equal(motion.eye_pose[:, :3], motion.eye_pose[:, 3:])  # together
    envelope = _rms_envelope(speech, motion.frames)
    nodding = motion.neck_pose[:, 0] > 0.01
    assert nodding.any() and envelope[nodding].mean() > envelope.mean()


def test_phonemes_close_round_and_open_the_lips(head):
    speech = synthetic_speech(2.0, RATE, seed=4)
    phonemes = [Phoneme("M", 0.2, 0.6), Phoneme("UW1", 0.6, 1.0), Phoneme("AA1", 1.0, 1.4)]
    motion = VoiceMotion(seed=0).generate(speech, RATE, phonemes=phonemes)
    frames = lambda a, b: slice(int(a * FACE_FPS) + 2, int(b * FACE_FPS) - 2)
    press, round_ = motion.coefficient("lip_press"), motion.coefficient("lip_round")
    assert press[frames(0.2, 0.6)].min() > 0.9 and round_[frames(0.2, 0.6)].max() < 0.1
    assert round_[frames(0.6, 1.0)].min() > 0.5
    assert motion.jaw_pose[frames(0.2, 0.6), 0].max() < 0.01  # "m": the jaw stays shut
    gauge = LipGauge(head.neutral, head.regions)
    aperture = gauge(motion_vertices(head, motion))
    assert aperture[frames(1.0, 1.4)].mean() > aperture[frames(0.2, 0.6)].mean() + 0.002


def test_listener_voice_brings_listening_nods_while_silent():
    listener = synthetic_speech(20.0, RATE, seed=9)
    quiet = np.zeros_like(listener)
    alone = VoiceMotion(seed=4).generate(quiet, RATE)
    listening = VoiceMotion(seed=4).generate(quiet, RATE, listener=listener)
    assert np.abs(alone.neck_pose).max() == 0.0
    assert listening.neck_pose[:, 0].max() > 0.02


def test_works_on_both_vertex_counts_and_rejects_bad_audio():
    motion = VoiceMotion().generate(synthetic_speech(0.4, 16000, seed=1), 16000)
    assert motion.frames == 10
    for count in (FLAME_VERTICES, VHAP_VERTICES):
        vertices = motion_vertices(motion_head(count), motion)
        assert vertices.shape == (10, count, 3) and np.isfinite(vertices).all()
    with pytest.raises(MoshifaceError, match="8-192 kHz"):
        VoiceMotion().generate(np.zeros(100, np.float32), 100)
    with pytest.raises(MoshifaceError, match="5023 or 5143"):
        motion_head(5000)

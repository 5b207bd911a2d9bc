"""The speech fallback opens the jaw during speech and closes it in silence."""

import numpy as np

from moshiface_ros.audio.synth import synthetic_speech, tone
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.retarget.fallback import FALLBACK_NAMES, SpeechFallback
from moshiface_ros.timing import FACE_FRAME_NS

RATE = 24000
STEP = 1920  # 80 ms


def _run(samples, rate=RATE, step=STEP, start_ns=0):
    fallback = SpeechFallback()
    frames = []
    for i in range(0, len(samples), step):
        stamp = start_ns + i * 10**9 // rate
        frames += fallback.push(AudioChunk(stamp, rate, samples[i:i + step]))
    return frames


def _speech_then_silence(seconds=2.0, silence=1.0, rate=RATE):
    speech = synthetic_speech(seconds, rate, seed=3)
    # a loud, steady vowel-like stretch so "during speech" is unambiguous
    voiced = 0.3 * tone(440.0, 0.6, rate)
    return np.concatenate([voiced, speech, np.zeros(int(silence * rate), np.float32)]).astype(np.float32)


def test_jaw_opens_during_speech_and_closes_in_silence():
    samples = _speech_then_silence()
    frames = _run(samples)
    assert len(frames) == len(samples) * 25 // RATE
    stamps = [s for s, _ in frames]
    assert stamps == [i * FACE_FRAME_NS for i in range(len(frames))]
    jaw = np.array([v["jawOpen"] for _, v in frames])
    assert set(frames[0][1]) == set(FALLBACK_NAMES)
    assert jaw[3:15].min() > 0.3  # the steady vowel: open all along
    speech = jaw[15:15 + 50]
    assert speech.max() > 0.4 and np.mean(speech > 0.1) > 0.5  # moving with syllables
    silence = jaw[-25 + 8:]  # from 320 ms after the speech stopped
    assert silence.max() < 0.01
    assert all(0.0 <= v <= 1.0 for _, values in frames for v in values.values())


def test_any_rate_and_chunk_size_gives_the_same_frames():
    samples = _speech_then_silence(1.0, 0.5)
    reference = np.array([v["jawOpen"] for _, v in _run(samples)])
    at_16k = np.interp(np.arange(0, len(samples), 1.5), np.arange(len(samples)), samples).astype(np.float32)
    other = np.array([v["jawOpen"] for _, v in _run(at_16k, rate=16000, step=333)])
    assert len(other) == len(reference)
    assert np.abs(other - reference).max() < 0.1


def test_silence_never_opens_the_mouth_and_nan_audio_is_silence():
    assert all(v == 0.0 for _, values in _run(np.zeros(RATE, np.float32)) for v in values.values())
    noisy = np.full(RATE, np.nan, np.float32)
    fallback = SpeechFallback()
    frames = fallback.push(AudioChunk(0, RATE, noisy))
    assert fallback.bad_chunks == 1 and all(v == 0.0 for _, values in frames for v in values.values())


def test_a_gap_in_stamps_restarts_the_frame_clock():
    fallback = SpeechFallback()
    first = fallback.push(AudioChunk(0, RATE, np.zeros(500, np.float32)))  # under one 960-sample frame
    later = fallback.push(AudioChunk(5 * 10**9, RATE, np.zeros(STEP, np.float32)))
    assert first == [] and [s for s, _ in later] == [5 * 10**9, 5 * 10**9 + FACE_FRAME_NS]

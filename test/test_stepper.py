"""AudioStepper: user audio chunks as a node receives them -> stamped model steps."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import pytest
import torch

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.speech.engine import FRAME_SIZE, SpeechEngine
from moshiface_ros.speech.models import build_tiny
from moshiface_ros.speech.stepper import STEP_NS, AudioStepper

T0 = 5_000_000_000


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return build_tiny()


@pytest.fixture
def stepper(tiny):
    engine = SpeechEngine(tiny, seed=0)
    yield AudioStepper(engine)
    engine.close()


def chunks(signal, rate, block, channels=1, start=T0, first_seq=0):
    frames = signal.reshape(-1, 1).repeat(channels, axis=1)
    for i, first in enumerate(range(0, len(frames), block)):
        yield AudioChunk(start + first * 10**9 // rate, rate, frames[first:first + block],
                         channels=channels, sequence=first_seq + i)


def push_all(stepper, stream):
    records = [r for c in stream for r in stepper.push(c)]
    return records + stepper.flush()


def test_steps_are_stamped_on_the_first_chunks_clock(stepper):
    speech = synthetic_speech(1.0, 48000, seed=2)
    records = push_all(stepper, chunks(speech, 48000, 480, channels=2))  # 10 ms stereo blocks
    assert len(records) == 13  # 1 s = 12.5 steps, the last one padded
    for i, r in enumerate(records):
        assert r.user.stamp_ns == r.robot.stamp_ns == T0 + i * STEP_NS
        assert r.user.samples.shape == r.robot.samples.shape == (FRAME_SIZE,)
        assert r.user.sequence == r.robot.sequence == i
        assert r.text is None or (r.text.stamp_ns == r.user.stamp_ns and r.text.step == i)
    assert stepper.filled_chunks == 0 and stepper.restarts == 0


def test_dropped_chunks_become_silence_of_the_same_length(stepper):
    speech = synthetic_speech(0.96, 24000, seed=3)
    stream = [c for c in chunks(speech, 24000, 960) if c.sequence not in (5, 6, 7)]
    records = push_all(stepper, stream)
    assert stepper.filled_chunks == 3
    assert len(records) == 12  # the timeline keeps its length
    pcm = np.concatenate([r.user.samples for r in records])
    assert not pcm[5 * 960:8 * 960].any()
    np.testing.assert_array_equal(pcm[8 * 960:9 * 960], speech[8 * 960:9 * 960])


def test_restart_and_format_change_reanchor_the_clock(stepper):
    first = push_all(stepper, chunks(synthetic_speech(0.32, 24000, 1), 24000, 1920))
    later = T0 + 60 * 10**9
    again = [r for c in chunks(synthetic_speech(0.32, 16000, 1), 16000, 1280, start=later) for r in stepper.push(c)]
    assert stepper.restarts == 1
    assert [r.user.stamp_ns for r in again] == [later + i * STEP_NS for i in range(len(again))]
    assert again[0].user.sequence == len(first)  # the engine's step count goes on


def test_sequence_going_back_is_a_restart(stepper):
    speech = synthetic_speech(0.32, 24000, 4)
    push_all(stepper, chunks(speech, 24000, 1920, first_seq=100))
    records = push_all(stepper, chunks(speech, 24000, 1920, first_seq=0, start=T0 + 10**9))
    assert stepper.restarts == 1 and stepper.filled_chunks == 0
    assert records[0].user.stamp_ns == T0 + 10**9

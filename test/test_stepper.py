"""AudioStepper: user audio chunks as a node receives them -> stamped model steps."""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import pytest
import torch

from moshiface_ros.audio.synth import synthetic_speech
from moshiface_ros.constants import FRAME_SIZE, SAMPLE_RATE, STEP_NS
from moshiface_ros.errors import MoshifaceError
from moshiface_ros.messages.types import AudioChunk
from moshiface_ros.speech.engine import Sampling, SpeechEngine
from moshiface_ros.speech.session import SessionOptions, build_stepper, load_models
from moshiface_ros.speech.stepper import AudioStepper

T0 = 5_000_000_000



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
    speech = synthetic_speech(0.96, SAMPLE_RATE, seed=3)
    stream = [c for c in chunks(speech, SAMPLE_RATE, 960) if c.sequence not in (5, 6, 7)]
    records = push_all(stepper, stream)
    assert stepper.filled_chunks == 3
    assert len(records) == 12  # the timeline keeps its length
    pcm = np.concatenate([r.user.samples for r in records])
    assert not pcm[5 * 960:8 * 960].any()
    np.testing.assert_array_equal(pcm[8 * 960:9 * 960], speech[8 * 960:9 * 960])


def test_restart_and_format_change_reanchor_the_clock(stepper):
    first = push_all(stepper, chunks(synthetic_speech(0.32, SAMPLE_RATE, 1), SAMPLE_RATE, FRAME_SIZE))
    later = T0 + 60 * 10**9
    again = [r for c in chunks(synthetic_speech(0.32, 16000, 1), 16000, 1280, start=later) for r in stepper.push(c)]
    assert stepper.restarts == 1
    assert [r.user.stamp_ns for r in again] == [later + i * STEP_NS for i in range(len(again))]
    assert again[0].user.sequence == len(first)  # the engine's step count goes on


def test_sequence_going_back_is_a_restart(stepper):
    speech = synthetic_speech(0.32, SAMPLE_RATE, 4)
    push_all(stepper, chunks(speech, SAMPLE_RATE, FRAME_SIZE, first_seq=100))
    records = push_all(stepper, chunks(speech, SAMPLE_RATE, FRAME_SIZE, first_seq=0, start=T0 + 10**9))
    assert stepper.restarts == 1 and stepper.filled_chunks == 0
    assert records[0].user.stamp_ns == T0 + 10**9


# -- one way to build a session ---------------------------------------------------------


def _face_tokens(stepper, seconds=0.8):
    """The robot's face tokens over ``seconds`` of speech (None while the model warms up)."""
    speech = synthetic_speech(seconds, SAMPLE_RATE, seed=5)
    records = push_all(stepper, chunks(speech, SAMPLE_RATE, FRAME_SIZE))
    return [None if r.robot_face_tokens is None else r.robot_face_tokens.tokens.tolist() for r in records], \
        np.concatenate([r.robot.samples for r in records])


def test_build_stepper_gives_the_same_conversation_as_the_parts(tiny):
    """The builder is the engine + face path the runner and the node used to build by hand."""
    options = SessionOptions(seed=11, device="cpu")
    with build_stepper(options, tiny) as built:
        assert built.has_face and built.face_vertices == built.face.codec.config.vertices
        assert (built.frame_id, built.user_frame_id) == ("robot_head", "user_microphone")
        tokens, audio = _face_tokens(built)
    from moshiface_ros.face_codec.stream import FacePath, load_face_codec

    engine = SpeechEngine(tiny, Sampling(), seed=11)
    with AudioStepper(engine, face=FacePath(load_face_codec("tiny"))) as by_hand:
        expected_tokens, expected_audio = _face_tokens(by_hand)
    assert tokens == expected_tokens and any(t is not None for t in tokens)
    np.testing.assert_array_equal(audio, expected_audio)


def test_face_sampling_options_reach_the_face_stream(tiny):
    """--face-temperature / --face-top-k: greedy face sampling gives other face tokens than
    the default, and the same options give the same tokens."""
    def run(sampling):
        with build_stepper(SessionOptions(seed=3, device="cpu", sampling=sampling), tiny) as stepper:
            return _face_tokens(stepper)

    default_tokens, _ = run(Sampling())
    greedy_tokens, _ = run(Sampling(face_temperature=0.0, face_top_k=1))
    assert run(Sampling(face_temperature=0.0, face_top_k=1))[0] == greedy_tokens
    assert greedy_tokens != default_tokens


def test_threads_rule_and_bad_threads(tiny):
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_models(SessionOptions(device="cpu"))  # tiny, threads 0: one thread
        assert torch.get_num_threads() == 1
        load_models(SessionOptions(device="cpu", threads=2))
        assert torch.get_num_threads() == 2
        with pytest.raises(MoshifaceError, match="threads"):
            load_models(SessionOptions(device="cpu", threads=-1))
    finally:
        torch.set_num_threads(previous)


def test_bad_model_device_or_dtype_is_one_clear_error():
    for options, word in ((SessionOptions(model="/no/such/dir"), "/no/such/dir"),
                          (SessionOptions(device="tpu"), "tpu"), (SessionOptions(dtype="int8"), "int8")):
        with pytest.raises(MoshifaceError, match=word):
            build_stepper(options)


def test_the_overhead_outside_the_model_has_one_definition(stepper):
    """A step records the model's wall and CPU time; the runner's summary and `make bench`
    spread a chunk's time minus the model's over the steps it made, on either clock."""
    import time

    from moshiface_ros.runner.summary import StepStats
    from moshiface_ros.speech.step_monitor import overhead_per_step

    assert overhead_per_step(0.05, []) == []
    assert overhead_per_step(0.05, [0.01, 0.02]) == pytest.approx([0.01, 0.01])
    pcm = synthetic_speech(3 * FRAME_SIZE / SAMPLE_RATE, SAMPLE_RATE, seed=4)
    start, start_cpu = time.perf_counter(), time.thread_time()
    records = stepper.push(AudioChunk(0, SAMPLE_RATE, pcm))
    elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
    assert len(records) == 3
    for record in records:  # one torch thread: the model's CPU time is this thread's
        assert 0.0 < record.model_cpu_seconds <= record.model_seconds * 1.5 + 0.005
    stats = StepStats(0)
    stats.add(records, elapsed, elapsed_cpu)
    summary = stats.as_summary()
    assert len(stats.overhead_times) == len(stats.overhead_cpu_times) == 3
    assert stats.overhead_cpu_times[0] == pytest.approx((elapsed_cpu - sum(r.model_cpu_seconds for r in records)) / 3)
    assert 0.0 <= summary["overhead_cpu_ms"]["p50"] < elapsed_cpu * 1000

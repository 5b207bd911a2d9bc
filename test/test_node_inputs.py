"""Every input a node receives, checked where it is converted: one-line ValueErrors, bounded
work per callback, nothing non-finite published.

Property tests (hypothesis) throw arbitrary field values at each message's converter (in
the real message classes rosbags generates from our ``msg/*.msg``), at each core object's
``*_to_msg``, and at the entry points the nodes call (``AudioStepper.push`` and
``push_user_face``, the retargeter's steps, the speech fallback, the actuator limiter):
they may refuse with ``ValueError`` and nothing else, and what they return is finite.
Beside them, one test per defect found by probing the nodes.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from moshiface_ros.constants import FACE_FRAME_NS, FRAME_SIZE, SAMPLE_RATE, STEP_NS
from moshiface_ros.face_codec.stream import MAX_USER_FRAMES, FacePath, tiny_codec
from moshiface_ros.messages import convert
from moshiface_ros.messages.checks import MAX_CHUNK_S
from moshiface_ros.messages.types import AudioChunk, BlendshapeWeights, DialogueText, FaceFrame, FaceTokens
from moshiface_ros.recording.bag import RosbagsFactory
from moshiface_ros.recording.definitions import make_typestore
from moshiface_ros.retarget.actuators import ActuatorBank, ActuatorSpec
from moshiface_ros.retarget.fallback import SpeechFallback
from moshiface_ros.retarget.retargeter import HeadRetargeter
from moshiface_ros.speech.stepper import AudioStepper

ROOT = Path(__file__).resolve().parents[1]
SERVO = ROOT / "config" / "heads" / "servo_head.yaml"
TYPESTORE = make_typestore()
FACTORY = RosbagsFactory(TYPESTORE)
T0 = 3_000_000_000
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

floats_any = st.floats(allow_nan=True, allow_infinity=True, width=32)
float_arrays = hnp.arrays(np.float32, st.integers(0, 48), elements=floats_any)
ints_any = st.integers(-2 ** 40, 2 ** 40)


def header(sec: int, nanosec: int, frame_id: str = "f"):
    stamp = FACTORY.new(convert.TIME_TYPE, sec=sec, nanosec=nanosec)
    return FACTORY.new(convert.HEADER_TYPE, stamp=stamp, frame_id=frame_id)


def assert_all_finite(obj) -> None:
    for value in vars(obj).values():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.isfinite(value).all()


def round_trip(obj) -> None:
    """What a converter accepted can be published again, finite."""
    assert_all_finite(obj)
    msg = convert.to_msg(obj, FACTORY)
    type_name = convert.MSG_TYPES[type(obj)]
    assert convert.from_msg(type_name, TYPESTORE.deserialize_cdr(TYPESTORE.serialize_cdr(msg, type_name), type_name))


# -- property tests: *_from_msg ------------------------------------------------------------


stamps = st.tuples(st.integers(-2 ** 31, 2 ** 31 - 1), st.integers(0, 2 ** 32 - 1))


@PROPERTY
@given(stamps, st.integers(-2 ** 31, 2 ** 31 - 1), st.integers(0, 40), ints_any, float_arrays)
def test_audio_chunk_from_msg_refuses_or_gives_finite(stamp, rate, channels, sequence, samples):
    msg = FACTORY.new(convert.MSG_TYPES[AudioChunk], header=header(*stamp), sample_rate=rate, channels=channels,
                      sequence=sequence % 2 ** 32, samples=samples)
    try:
        chunk = convert.audio_chunk_from_msg(msg)
    except ValueError:
        return
    assert chunk.stamp_ns >= 0 and 8000 <= chunk.sample_rate <= 192000 and chunk.frames <= MAX_CHUNK_S * rate
    round_trip(chunk)


@PROPERTY
@given(stamps, float_arrays, st.booleans(), st.booleans(),
       st.dictionaries(st.sampled_from(["expression", "jaw_pose", "global_pose", "neck_pose", "eye_pose",
                                        "translation"]), float_arrays))
def test_face_frame_from_msg_refuses_or_gives_finite(stamp, vertices, present, displacement, params):
    fields = {name: params.get(name, np.zeros(0, np.float32)) for name in
              ("expression", "jaw_pose", "global_pose", "neck_pose", "eye_pose", "translation")}
    msg = FACTORY.new(convert.MSG_TYPES[FaceFrame], header=header(*stamp), face_present=present,
                      is_displacement=displacement, vertices=vertices, **fields)
    try:
        frame = convert.face_frame_from_msg(msg)
    except ValueError:
        return
    assert frame.eye_pose.size in (0, 6) and frame.jaw_pose.size in (0, 3)
    assert not frame.vertices.size or np.abs(frame.vertices).max() <= 10.0
    round_trip(frame)


@PROPERTY
@given(stamps, ints_any, hnp.arrays(np.int64, st.integers(0, 12), elements=st.integers(-2 ** 40, 2 ** 40)))
def test_face_tokens_from_msg_refuses_or_gives_valid_tokens(stamp, step, tokens):
    msg = FACTORY.new(convert.MSG_TYPES[FaceTokens], header=header(*stamp), step=step % 2 ** 32, tokens=tokens)
    try:
        out = convert.face_tokens_from_msg(msg)
    except ValueError:
        return
    assert out.tokens.size == 8 and int(out.tokens.max()) < 256
    np.testing.assert_array_equal(out.tokens, tokens)  # no wrap-around
    round_trip(out)


@PROPERTY
@given(stamps, st.lists(st.text(max_size=6), max_size=6), float_arrays)
def test_blendshape_weights_from_msg_refuses_or_gives_valid_weights(stamp, names, weights):
    msg = FACTORY.new(convert.MSG_TYPES[BlendshapeWeights], header=header(*stamp), names=names, weights=weights)
    try:
        out = convert.blendshape_weights_from_msg(msg)
    except ValueError:
        return
    assert len(set(out.names)) == len(out.names) and all(n.strip() for n in out.names)
    assert out.weights.size == 0 or (out.weights.min() >= 0 and out.weights.max() <= 1)
    round_trip(out)


@PROPERTY
@given(stamps, ints_any, ints_any, st.text(max_size=8))
def test_dialogue_text_from_msg_refuses_or_converts(stamp, step, token, piece):
    msg = FACTORY.new(convert.MSG_TYPES[DialogueText], header=header(*stamp), step=step % 2 ** 32,
                      token_id=token % 2 ** 31, piece=piece)
    try:
        out = convert.dialogue_text_from_msg(msg)
    except ValueError:
        return
    assert out.stamp_ns >= 0
    round_trip(out)


# -- property tests: *_to_msg ----------------------------------------------------------------


def _published_arrays_are_finite(obj) -> None:
    try:
        msg = convert.to_msg(obj, FACTORY)
    except ValueError:
        return
    for name in ("samples", "vertices", "weights", "expression", "eye_pose"):
        value = getattr(msg, name, None)
        if value is not None:
            assert np.isfinite(np.asarray(value, np.float64)).all(), name
    if hasattr(msg, "sample_rate"):
        assert msg.sample_rate >= 8000 and msg.channels >= 1


@PROPERTY
@given(st.integers(0, 2 ** 62), st.integers(-5, 400_000), st.integers(0, 4), float_arrays)
def test_audio_chunk_to_msg_never_publishes_non_finite(stamp, rate, channels, samples):
    _published_arrays_are_finite(AudioChunk(stamp, rate, samples, channels=channels))


@PROPERTY
@given(st.integers(0, 2 ** 62), float_arrays, float_arrays, float_arrays)
def test_face_frame_to_msg_never_publishes_non_finite(stamp, vertices, expression, eye):
    vertices = vertices[: vertices.size // 3 * 3]
    _published_arrays_are_finite(FaceFrame(stamp, vertices.reshape(-1, 3), expression=expression, eye_pose=eye))


@PROPERTY
@given(st.integers(0, 2 ** 62), st.lists(st.text(max_size=4), max_size=5), float_arrays,
       hnp.arrays(np.int64, st.integers(0, 10), elements=st.integers(-2 ** 20, 2 ** 20)))
def test_weights_and_tokens_to_msg_never_publish_invalid(stamp, names, weights, tokens):
    _published_arrays_are_finite(BlendshapeWeights(stamp, names, weights))
    try:
        msg = convert.face_tokens_to_msg(FaceTokens(stamp, 0, tokens), FACTORY)
    except ValueError:
        return
    assert len(msg.tokens) == 8 and int(np.max(msg.tokens)) < 256 and (tokens >= 0).all() and (tokens < 256).all()


# -- the defects, one test each -----------------------------------------------------------


def _audio_msg(sec=1, nanosec=0, rate=24000, channels=1, samples=None):
    samples = np.zeros(1920, np.float32) if samples is None else np.asarray(samples, np.float32)
    return FACTORY.new(convert.MSG_TYPES[AudioChunk], header=header(sec, nanosec), sample_rate=rate,
                       channels=channels, sequence=0, samples=samples)


@pytest.mark.parametrize("fields, words", [
    ({"sec": -1}, "stamp.sec must not be negative"),
    ({"nanosec": 10 ** 9}, r"nanosec must be in \[0, 1e9\)"),
    ({"rate": 1}, "sample_rate must be 8000..192000"),
    ({"rate": 400_000}, "sample_rate must be 8000..192000"),
    ({"rate": 8000, "samples": np.zeros(8000 * 11)}, "more than one message may"),
    ({"samples": [3e38]}, "beyond"),
])
def test_audio_inputs_outside_the_supported_range_are_refused(fields, words):
    with pytest.raises(ValueError, match=words) as info:
        convert.audio_chunk_from_msg(_audio_msg(**fields))
    assert "\n" not in str(info.value)


def _face_msg(vertices=None, **params):
    fields = {name: np.zeros(0, np.float32) for name in
              ("expression", "jaw_pose", "global_pose", "neck_pose", "eye_pose", "translation")}
    fields.update({k: np.asarray(v, np.float32) for k, v in params.items()})
    vertices = np.zeros(30, np.float32) if vertices is None else np.asarray(vertices, np.float32)
    return FACTORY.new(convert.MSG_TYPES[FaceFrame], header=header(1, 0), face_present=True,
                       is_displacement=True, vertices=vertices, **fields)


@pytest.mark.parametrize("msg, words", [
    (lambda: _face_msg(vertices=[1e30, 0, 0]), "vertices has a value of 1e\\+30"),
    (lambda: _face_msg(eye_pose=np.zeros(5)), "eye_pose has 5 values, expected 0 or 6"),
    (lambda: _face_msg(jaw_pose=[np.nan, 0, 0]), "jaw_pose contains NaN"),
    (lambda: FACTORY.new(convert.MSG_TYPES[FaceTokens], header=header(1, 0), step=0,
                         tokens=np.array([-1] * 8, np.int64)), r"tokens must be in \[0, 256\)"),
    (lambda: FACTORY.new(convert.MSG_TYPES[FaceTokens], header=header(1, 0), step=0,
                         tokens=np.array([256] + [0] * 7, np.uint16)), r"tokens must be in \[0, 256\)"),
    (lambda: FACTORY.new(convert.MSG_TYPES[FaceTokens], header=header(1, 0), step=0,
                         tokens=np.zeros(7, np.uint16)), "must hold 8 tokens, got 7"),
    (lambda: FACTORY.new(convert.MSG_TYPES[BlendshapeWeights], header=header(1, 0), names=["", "a"],
                         weights=np.zeros(2, np.float32)), "empty"),
    (lambda: FACTORY.new(convert.MSG_TYPES[BlendshapeWeights], header=header(1, 0), names=["a", "a"],
                         weights=np.zeros(2, np.float32)), "'a' twice"),
    (lambda: FACTORY.new(convert.MSG_TYPES[BlendshapeWeights], header=header(1, 0), names=["a", "b"],
                         weights=np.array([-7, 42], np.float32)), r"must be in \[0, 1\]"),
], ids=["vertices_1e30", "eye_pose_5", "nan_jaw", "token_-1", "token_256", "tokens_7", "empty_name",
        "duplicate_name", "weights_-7_42"])
def test_face_and_weight_inputs_are_checked(msg, words):
    with pytest.raises(ValueError, match=words) as info:
        convert.from_msg(type(msg()).__name__.replace("__", "/"), msg())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("obj, words", [
    (AudioChunk(0, 24000, [np.nan]), "NaN"),
    (AudioChunk(0, 0, [0.0]), "sample_rate must be positive"),
    (AudioChunk(0, 24000, [0.0], channels=0), "channels must be at least 1"),
    (FaceFrame(0, [[np.nan, 0, 0]]), "NaN"),
    (FaceFrame(0, eye_pose=[np.inf] * 6), "eye_pose contains NaN"),
    (BlendshapeWeights(0, ["a"], [np.nan]), "NaN"),
])
def test_nothing_non_finite_or_unplayable_is_published(obj, words):
    with pytest.raises(ValueError, match=words):
        convert.to_msg(obj, FACTORY)



def test_a_chunk_claiming_a_huge_duration_is_refused_not_stepped(stepper):
    with pytest.raises(ValueError, match="sample_rate must be 8000"):
        stepper.push(AudioChunk(T0, 1, np.zeros(8, np.float32)))  # was: 100 model steps
    with pytest.raises(ValueError, match="more than one message may"):
        stepper.push(AudioChunk(T0, 8000, np.zeros(8000 * 3600, np.float32)))  # an hour
    assert stepper.engine.steps == 0


def test_a_constant_sequence_is_one_warning_not_a_restart_per_chunk(stepper, caplog):
    caplog.set_level(logging.WARNING, logger="moshiface_ros.speech.stepper")
    records = []
    for i in range(10):  # 1 s in 100 ms chunks, every one numbered 0
        records += stepper.push(AudioChunk(T0 + i * 100_000_000, 24000, np.zeros(2400, np.float32), sequence=0))
    assert stepper.restarts == 0 and stepper.unsequenced
    assert len(records) == 12  # 1 s = 12.5 steps, not 99
    assert [r.user.stamp_ns for r in records] == [T0 + k * STEP_NS for k in range(12)]
    warnings = [r for r in caplog.records if "sequence" in r.getMessage()]
    assert len(warnings) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-100, 400_000), st.integers(1, 3), st.integers(0, 3000), ints_any,
                          st.sampled_from([0.0, 1e30, np.nan, 0.3])), min_size=1, max_size=4))
def test_stepper_push_refuses_or_steps_within_bounds(stepper, chunks):
    for rate, channels, frames, sequence, value in chunks:
        samples = np.full((frames, channels), value, np.float32)
        try:
            records = stepper.push(AudioChunk(T0, rate, samples, channels=channels, sequence=sequence))
        except ValueError:
            continue
        # at most the chunk's own sound plus a gap filled with at most 2 s of silence, plus a flushed step
        assert len(records) <= (frames / rate + 2.0) * SAMPLE_RATE / FRAME_SIZE + 2
        for record in records:
            assert np.isfinite(record.robot.samples).all() and record.robot.stamp_ns >= 0


def test_a_future_stamped_user_face_frame_does_not_block_cleanup():
    path = FacePath(tiny_codec(vertices=30))
    try:
        path.push_user(FaceFrame(T0 + 3600 * 10 ** 9, np.zeros((30, 3))))  # an hour ahead
        for step in range(200):
            stamp = T0 + step * STEP_NS
            for k in range(2):
                path.push_user(FaceFrame(stamp + k * FACE_FRAME_NS, np.zeros((30, 3))))
            path.user_tokens(step, stamp)
            assert len(path._frames) <= 3  # was: 2 more frames every step
    finally:
        path.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-10 ** 12, 10 ** 12), st.integers(0, 40), st.booleans(), st.booleans(),
                          st.sampled_from([0.0, 0.001, 50.0, np.nan, np.inf])), max_size=80))
def test_push_user_face_refuses_or_stays_bounded(frames):
    codec = _CODEC
    with FacePath(codec) as path:
        stepper = AudioStepper(None, face=path)  # push_user_face is all this uses
        for step, (offset, vertices, present, displacement, value) in enumerate(frames):
            frame = FaceFrame(max(0, T0 + offset), np.full((vertices, 3), value, np.float32),
                              face_present=present, is_displacement=displacement)
            try:
                stepper.push_user_face(frame)
            except ValueError:
                pass
            assert len(path._frames) <= MAX_USER_FRAMES
            tokens = path.user_tokens(step, T0 + step * STEP_NS)
            assert tokens is None or (tokens.tokens.size == 8 and int(tokens.tokens.max()) < 256)


_CODEC = tiny_codec(vertices=30)


@pytest.fixture(scope="module")
def servo():
    return HeadRetargeter.from_file(SERVO)


def test_a_non_finite_eye_pose_gives_finite_weights(servo):
    frame = FaceFrame(T0, np.zeros((5143, 3), np.float32), eye_pose=[np.nan] * 6, global_pose=[np.inf] * 3)
    out = servo.step_face(frame)
    assert out.source == "face"
    assert np.isfinite(out.blendshapes.weights).all()
    assert all(np.isfinite(v) for v in out.features.values())
    assert np.isfinite(out.actuators.positions).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10 ** 15), st.sampled_from([0, 30, 5023, 5143]), st.sampled_from([0.0, 1e-3, 0.5, 3.0,
                                                                                          np.nan]),
       hnp.arrays(np.float32, st.sampled_from([0, 5, 6]), elements=floats_any), st.booleans())
def test_retargeter_step_face_gives_finite_output(servo, stamp, vertices, value, eye, present):
    frame = FaceFrame(stamp, np.full((vertices, 3), value, np.float32), face_present=present, eye_pose=eye)
    out = servo.step_face(frame)
    if out.blendshapes is not None:
        assert np.isfinite(out.blendshapes.weights).all()
        convert.blendshape_weights_to_msg(out.blendshapes, FACTORY)  # publishable as it is
    if out.actuators is not None:
        assert np.isfinite(out.actuators.positions).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10 ** 15), st.integers(-5, 400_000), st.integers(0, 4000),
       st.sampled_from([0.0, 0.5, 1e30, np.nan]))
def test_retargeter_step_audio_is_bounded_and_finite(servo, stamp, rate, frames, value):
    outputs = servo.step_audio(AudioChunk(stamp, rate, np.full(frames, value, np.float32)))
    assert len(outputs) <= frames / max(rate, 8000) * 25 + 2
    for out in outputs:
        if out.blendshapes is not None:
            assert np.isfinite(out.blendshapes.weights).all()


@pytest.mark.parametrize("rate", [1, 10, 24])
def test_the_speech_fallback_does_not_loop_on_low_rates(rate):
    fallback = SpeechFallback()
    result: list = []
    worker = threading.Thread(target=lambda: result.append(fallback.push(AudioChunk(T0, rate, np.zeros(8)))),
                              daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "the fallback loops on a window of 0 samples"
    assert result == [[]] and fallback.bad_chunks == 1


# -- actuators ---------------------------------------------------------------------------------


def _bank() -> ActuatorBank:
    return ActuatorBank([ActuatorSpec("jaw", "rad", -1.0, 0.0, 1.0, max_velocity=2.0, max_acceleration=6.0)])


def _real_motion(stamps: list[int], positions: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(stamps, np.float64) * 1e-9
    p = np.asarray(positions)
    dt = np.diff(t)
    v = np.diff(p) / dt
    a = np.diff(v) / dt[1:]
    return dt, v, a


def test_after_a_face_dropout_an_actuator_starts_from_rest():
    bank = _bank()
    stamps, positions = [], []
    stamp = T0
    for k in range(60):  # towards +1 until it moves at full speed, then a 1 s gap, then on again
        if k == 30:
            stamp += 10 ** 9
        stamps.append(stamp)
        positions.append(float(bank.update(np.array([1.0 if k < 30 else -1.0]), stamp)[0]))
        stamp += FACE_FRAME_NS
    dt, v, a = _real_motion(stamps, positions)
    assert np.abs(v).max() <= 2.0 + 1e-9
    after = slice(29, None)  # every acceleration from the first interval after the gap, on the real stamps
    assert np.abs(a[after]).max() <= 6.0 + 1e-6, np.abs(a[after]).max()  # was 32 rad/s^2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3 * 10 ** 9), st.sampled_from([-1.0, -0.3, 0.0, 0.5, 1.0, np.nan])),
                min_size=3, max_size=40))
def test_actuator_limits_hold_on_real_timestamps_whatever_the_spacing(steps):
    """Velocity always; acceleration on every interval that is not itself a gap (through a
    gap the hardware held the last command: the restart after it is from rest)."""
    bank = _bank()
    stamp, stamps, positions = T0, [], []
    for spacing, target in steps:
        stamp += spacing
        position = float(bank.update(np.array([target]), stamp)[0])
        if stamps and stamp - stamps[-1] < 10 ** 6:
            continue  # under 1 ms: nothing moves, the same frame again
        stamps.append(stamp)
        positions.append(position)
    if len(stamps) < 3:
        return
    dt, v, a = _real_motion(stamps, positions)
    assert np.abs(v).max() <= 2.0 + 1e-9
    assert -1.0 <= min(positions) and max(positions) <= 1.0
    no_gap = (dt[1:] <= bank.max_dt_s) & (dt[:-1] <= bank.max_dt_s)
    if no_gap.any():
        assert np.abs(a[no_gap]).max() <= 6.0 + 1e-6

"""Core message objects <-> messages of the classes rosbags generates from our msg/ files."""

from pathlib import Path

import numpy as np
import pytest

from moshiface_ros.messages import convert
from moshiface_ros.messages.types import (
    AudioChunk,
    BlendshapeWeights,
    DialogueText,
    FaceFrame,
    FaceTokens,
)
from moshiface_ros.recording.bag import RosbagsFactory
from moshiface_ros.recording.definitions import definitions_dir, make_typestore

REPO = Path(__file__).resolve().parent.parent
STAMP = 1_700_000_123_456_789_012


@pytest.fixture(scope="module")
def typestore():
    return make_typestore()


def samples():
    rng = np.random.default_rng(0)
    return [
        AudioChunk(STAMP, 24000, rng.uniform(-1, 1, 1920), sequence=7, frame_id="mic"),
        AudioChunk(STAMP, 48000, rng.uniform(-1, 1, (960, 2)), channels=2, sequence=1),
        DialogueText(STAMP, 12, 3051, " hello", frame_id="robot_head"),
        FaceFrame(STAMP, rng.normal(size=(5143, 3)) * 1e-3, expression=rng.normal(size=100),
                  jaw_pose=[0.1, 0, 0], global_pose=[0, 0.2, 0], neck_pose=[0, 0, 0],
                  eye_pose=np.zeros(6), translation=[0, 0, 0.6], frame_id="head"),
        FaceFrame(STAMP, face_present=False),
        FaceTokens(STAMP, 42, [0, 255, 17, 3, 128, 9, 64, 200]),
        BlendshapeWeights(STAMP, ["jawOpen", "mouthSmileLeft"], [0.5, 0.25], frame_id="head"),
    ]


def assert_same(a, b):
    assert type(a) is type(b)
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert other.dtype == value.dtype, name
            np.testing.assert_array_equal(other, value, err_msg=name)
        else:
            assert other == value, name


@pytest.mark.parametrize("obj", samples(), ids=lambda o: type(o).__name__)
def test_round_trip_through_cdr(obj, typestore):
    type_name = convert.MSG_TYPES[type(obj)]
    msg = convert.to_msg(obj, RosbagsFactory(typestore))
    assert type(msg).__name__ == type_name.replace("/", "__")
    raw = typestore.serialize_cdr(msg, type_name)
    back = convert.from_msg(type_name, typestore.deserialize_cdr(raw, type_name))
    assert_same(obj, back)


def test_every_definition_has_a_conversion(typestore):
    names = {f"moshiface_ros/msg/{p.stem}" for p in (REPO / "msg").glob("*.msg")}
    assert names == set(convert.MSG_TYPES.values()) == set(convert.FROM_MSG)
    # The definitions the recorder embeds are the source tree's, wherever they were found
    # (the source tree, a wheel's copy, or a ROS install's share directory).
    found = definitions_dir()
    for source in (REPO / "msg").glob("*.msg"):
        assert (found / source.name).read_text() == source.read_text(), source.name


def test_conversion_sets_every_field(typestore):
    """A field added to a .msg and forgotten here would be left at no value."""
    factory = RosbagsFactory(typestore)
    for obj in samples():
        type_name = convert.MSG_TYPES[type(obj)]
        fields = [name for name, _ in typestore.fielddefs[type_name][1]]
        msg = convert.to_msg(obj, factory)
        assert all(getattr(msg, name) is not None for name in fields)


def test_stamp_split_into_sec_and_nanosec(typestore):
    msg = convert.to_msg(DialogueText(STAMP, 0, 1, "a"), RosbagsFactory(typestore))
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(STAMP, 10**9)
    assert convert.stamp_ns(msg) == STAMP


def test_negative_stamp_is_refused(typestore):
    with pytest.raises(ValueError, match="negative"):
        convert.to_msg(DialogueText(-1, 0, 1, "a"), RosbagsFactory(typestore))


def _audio_msg(typestore, samples, channels=1, rate=24000):
    msg = convert.to_msg(AudioChunk(0, 24000, np.zeros(4)), RosbagsFactory(typestore))
    msg.samples = np.asarray(samples, np.float32)
    msg.channels = channels
    msg.sample_rate = rate
    return msg


@pytest.mark.parametrize("samples, channels, rate, words", [
    ([0.0, 0.1, 0.2], 2, 24000, "not a multiple of 2 channels"),
    ([0.0, np.nan], 1, 24000, "NaN"),
    ([0.0, np.inf], 1, 24000, "NaN or infinite"),
    ([0.0], 1, 0, "sample_rate must be positive"),
    ([0.0], 0, 24000, "channels must be at least 1"),
])
def test_bad_audio_chunk_names_the_problem(typestore, samples, channels, rate, words):
    with pytest.raises(ValueError, match=words) as info:
        convert.audio_chunk_from_msg(_audio_msg(typestore, samples, channels, rate))
    assert "\n" not in str(info.value)


def test_bad_face_and_blendshape_messages(typestore):
    factory = RosbagsFactory(typestore)
    face = convert.to_msg(FaceFrame(0, np.zeros((2, 3))), factory)
    face.vertices = np.zeros(7, np.float32)
    with pytest.raises(ValueError, match="not V x 3"):
        convert.face_frame_from_msg(face)
    weights = convert.to_msg(BlendshapeWeights(0, ["a"], [0.5]), factory)
    weights.names = ["a", "b"]
    with pytest.raises(ValueError, match="2 names but 1 weights"):
        convert.blendshape_weights_from_msg(weights)
    with pytest.raises(ValueError, match="names"):
        convert.to_msg(BlendshapeWeights(0, ["a", "b"], [0.5]), factory)


def face_frames():
    rng = np.random.default_rng(3)
    return [
        FaceFrame(STAMP, rng.normal(size=(5143, 3)).astype(np.float32) * 1e-3, frame_id="robot_head"),
        FaceFrame(0, np.zeros((0, 3)), face_present=False),  # empty arrays, empty frame id
        FaceFrame(7, rng.normal(size=(3, 3)) * 1e-3, is_displacement=False, expression=rng.normal(size=50),
                  jaw_pose=[0.1, 0, 0], frame_id="abc"),  # float64 in, odd string lengths
        FaceFrame(10**9, rng.normal(size=(5, 3)) * 1e-3, eye_pose=np.ones(6), translation=[0, 0, 0.6],
                  neck_pose=[0, 0.1, 0], global_pose=[0.2, 0, 0], frame_id="ab"),
    ]


@pytest.mark.parametrize("frame", face_frames(), ids=range(len(face_frames())))
def test_face_frame_straight_to_cdr_is_byte_identical(frame, typestore):
    """The bag's fast path gives exactly the bytes of the message object serialised by
    rosbags (alignment after strings and booleans, empty arrays included)."""
    from moshiface_ros.messages.cdr import face_frame_cdr

    expected = typestore.serialize_cdr(convert.to_msg(frame, RosbagsFactory(typestore)), convert.MSG_TYPES[FaceFrame])
    assert face_frame_cdr(frame) == bytes(expected)


def small_messages():
    rng = np.random.default_rng(5)
    return [
        AudioChunk(STAMP, 24000, rng.uniform(-1, 1, 1920).astype(np.float32), sequence=7, frame_id="robot"),
        AudioChunk(0, 48000, rng.uniform(-1, 1, (6, 2)), channels=2, sequence=2**40),  # float64 in, stereo
        AudioChunk(3, 16000, np.zeros(0, np.float32), frame_id="mic_1"),  # empty, odd frame id
        FaceTokens(STAMP, 12, np.arange(8), frame_id="user_camera"),
        FaceTokens(5, 0, [255, 0, 1, 2, 3, 4, 5, 6]),
        DialogueText(STAMP, 3, 1234, " hello"),
        DialogueText(1, 2**33, -1, "é✓", frame_id="ab"),  # non-ASCII piece, negative id, a large step
    ]


@pytest.mark.parametrize("message", small_messages(), ids=range(len(small_messages())))
def test_small_messages_straight_to_cdr_are_byte_identical(message, typestore):
    from moshiface_ros.messages.cdr import message_cdr

    expected = typestore.serialize_cdr(convert.to_msg(message, RosbagsFactory(typestore)),
                                       convert.MSG_TYPES[type(message)])
    assert message_cdr(message) == bytes(expected)


def test_small_messages_straight_to_cdr_check_as_the_messages_do():
    from moshiface_ros.messages.cdr import message_cdr

    with pytest.raises(ValueError, match="NaN or infinite"):
        message_cdr(AudioChunk(0, 24000, np.full(4, np.nan, np.float32)))
    with pytest.raises(ValueError, match="channels"):
        message_cdr(AudioChunk(0, 24000, np.zeros(3, np.float32), channels=2))
    with pytest.raises(ValueError, match="negative"):
        message_cdr(AudioChunk(-5, 24000, np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match=r"must be in \[0, 256\)"):
        message_cdr(FaceTokens(0, 0, [256] * 8))
    with pytest.raises(ValueError, match="8 tokens"):
        message_cdr(FaceTokens(0, 0, [1, 2]))


def test_face_frame_straight_to_cdr_checks_as_the_message_does():
    from moshiface_ros.messages.cdr import face_frame_cdr

    with pytest.raises(ValueError, match="NaN or infinite"):
        face_frame_cdr(FaceFrame(0, np.full((2, 3), np.nan)))
    with pytest.raises(ValueError, match="negative"):
        face_frame_cdr(FaceFrame(-1, np.zeros((2, 3))))
    with pytest.raises(ValueError, match="expression"):
        face_frame_cdr(FaceFrame(0, np.zeros((2, 3)), expression=np.full(3, 1e9)))

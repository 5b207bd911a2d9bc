"""Core objects <-> ROS messages, one pair of functions per message type.

The same functions serve rclpy (in the nodes) and rosbags (in the session recorder and
the tests): building a message goes through a small ``MessageFactory`` that knows how
its library constructs messages and numeric arrays, and reading one only uses attribute
access, which both libraries' message classes share. The tests check these functions
against classes that rosbags generates from our own ``msg/*.msg`` files, so a field
renamed in a definition breaks a test rather than a robot.

Every ``*_from_msg`` checks what it reads and every ``*_to_msg`` what it writes
(``checks.py``): a message no consumer could use is one ``ValueError`` naming the field,
and nothing non-finite or out of range is ever published.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from .checks import (
    MAX_SAMPLE_ABS,
    MAX_BLENDSHAPES,
    MAX_VERTEX_M,
    MAX_VERTICES,
    bounded_floats,
    check_audio_format,
    check_blendshapes,
    check_parameters,
    check_stamp,
    check_tokens,
)
from .types import (
    NS_PER_S,
    PARAMETER_FIELDS,
    AudioChunk,
    BlendshapeWeights,
    DialogueText,
    FaceFrame,
    FaceTokens,
)

PACKAGE = "moshiface_ros"
HEADER_TYPE = "std_msgs/msg/Header"
TIME_TYPE = "builtin_interfaces/msg/Time"

#: ROS type name of each core message class.
MSG_TYPES: dict[type, str] = {
    AudioChunk: f"{PACKAGE}/msg/AudioChunk",
    FaceFrame: f"{PACKAGE}/msg/FaceFrame",
    FaceTokens: f"{PACKAGE}/msg/FaceTokens",
    BlendshapeWeights: f"{PACKAGE}/msg/BlendshapeWeights",
    DialogueText: f"{PACKAGE}/msg/DialogueText",
}


class MessageFactory(Protocol):
    """How one ROS library builds messages."""

    def new(self, type_name: str, **fields: Any) -> Any:
        """An instance of ``type_name`` (e.g. ``std_msgs/msg/Header``) with these fields."""

    def array(self, values: np.ndarray) -> Any:
        """A primitive-array field value from a 1-D numpy array of the field's dtype."""


def split_stamp(stamp_ns: int) -> tuple[int, int]:
    """A header stamp's (sec, nanosec); a negative stamp is refused."""
    if stamp_ns < 0:
        raise ValueError(f"stamp must not be negative, got {stamp_ns} ns")
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    return sec, nanosec


def header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    sec, nanosec = split_stamp(stamp_ns)
    stamp = factory.new(TIME_TYPE, sec=sec, nanosec=nanosec)
    return factory.new(HEADER_TYPE, stamp=stamp, frame_id=frame_id)


def stamp_ns(msg: Any, type_name: str = "message") -> int:
    """Nanoseconds of a message's ``header.stamp`` (negative or ``nanosec >= 1e9`` refused)."""
    return check_stamp(msg.header.stamp.sec, msg.header.stamp.nanosec, type_name)


def _audio_samples(samples: Any, sample_rate: Any, channels: Any, type_name: str = "AudioChunk",
                   copy: bool = True) -> np.ndarray:
    """Checked samples as a 1-D float32 array (format first, so the size is bounded);
    ``copy=False``: a view of float32 samples, for a writer (``checks.bounded_floats``)."""
    size = int(np.size(samples))
    check_audio_format(sample_rate, channels, size // max(int(channels), 1), type_name)
    array = bounded_floats(samples, "samples", type_name, MAX_SAMPLE_ABS, copy=copy)
    if array.size % int(channels):
        raise ValueError(f"{type_name}.samples has {array.size} values, not a multiple of {channels} channels")
    return array


def _vertices(values: Any, type_name: str = "FaceFrame", copy: bool = True) -> np.ndarray:
    array = bounded_floats(values, "vertices", type_name, MAX_VERTEX_M, max_size=3 * MAX_VERTICES, copy=copy)
    if array.size % 3:
        raise ValueError(f"{type_name}.vertices has {array.size} values, not V x 3")
    return array


# -- AudioChunk -------------------------------------------------------------------------


def checked_audio_samples(chunk: AudioChunk) -> np.ndarray:
    """A chunk's samples as a checked 1-D float32 array (what every writer of an AudioChunk
    message sends: ``audio_chunk_to_msg`` and ``cdr.audio_chunk_cdr``; a view when it can)."""
    return np.ascontiguousarray(_audio_samples(chunk.samples, chunk.sample_rate, chunk.channels, copy=False))


def audio_chunk_to_msg(chunk: AudioChunk, factory: MessageFactory) -> Any:
    samples = checked_audio_samples(chunk)
    return factory.new(
        MSG_TYPES[AudioChunk],
        header=header(factory, chunk.stamp_ns, chunk.frame_id),
        sample_rate=int(chunk.sample_rate),
        channels=int(chunk.channels),
        sequence=int(chunk.sequence),
        samples=factory.array(samples),
    )


def audio_chunk_from_msg(msg: Any) -> AudioChunk:
    """Raises ValueError, naming the field, for a chunk no consumer could play."""
    stamp = stamp_ns(msg, "AudioChunk")
    samples = _audio_samples(msg.samples, msg.sample_rate, msg.channels)
    if msg.channels > 1:
        samples = samples.reshape(-1, msg.channels)
    return AudioChunk(
        stamp_ns=stamp,
        sample_rate=int(msg.sample_rate),
        samples=samples,
        channels=int(msg.channels),
        sequence=int(msg.sequence),
        frame_id=str(msg.header.frame_id),
    )


# -- DialogueText -----------------------------------------------------------------------


def dialogue_text_to_msg(text: DialogueText, factory: MessageFactory) -> Any:
    return factory.new(
        MSG_TYPES[DialogueText],
        header=header(factory, text.stamp_ns, text.frame_id),
        step=int(text.step),
        token_id=int(text.token_id),
        piece=text.piece,
    )


def dialogue_text_from_msg(msg: Any) -> DialogueText:
    return DialogueText(
        stamp_ns=stamp_ns(msg, "DialogueText"),
        step=int(msg.step),
        token_id=int(msg.token_id),
        piece=str(msg.piece),
        frame_id=str(msg.header.frame_id),
    )


# -- FaceFrame --------------------------------------------------------------------------


def checked_face_frame(frame: FaceFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A frame's vertices and FLAME parameters as checked 1-D float32 arrays (what every
    writer of a FaceFrame message sends: ``face_frame_to_msg`` and ``cdr.face_frame_cdr``;
    views of the frame's own float32 arrays, which the writers serialise)."""
    vertices = _vertices(frame.vertices, copy=False)
    values = {name: np.asarray(getattr(frame, name), np.float32).reshape(-1) for name in PARAMETER_FIELDS}
    check_parameters(values)
    return vertices, values


def face_frame_to_msg(frame: FaceFrame, factory: MessageFactory) -> Any:
    vertices, values = checked_face_frame(frame)
    params = {name: factory.array(value) for name, value in values.items()}
    return factory.new(
        MSG_TYPES[FaceFrame],
        header=header(factory, frame.stamp_ns, frame.frame_id),
        face_present=bool(frame.face_present),
        is_displacement=bool(frame.is_displacement),
        vertices=factory.array(np.ascontiguousarray(vertices)),
        **params,
    )


def face_frame_from_msg(msg: Any) -> FaceFrame:
    stamp = stamp_ns(msg, "FaceFrame")
    vertices = _vertices(msg.vertices)
    params = {name: np.asarray(getattr(msg, name)) for name in PARAMETER_FIELDS}
    for name, value in params.items():
        if value.size > 400:
            raise ValueError(f"FaceFrame.{name} has {value.size} values, far more than FLAME has")
        with np.errstate(over="ignore", invalid="ignore"):
            params[name] = value.astype(np.float32).reshape(-1)
    check_parameters(params)
    return FaceFrame(
        stamp_ns=stamp,
        vertices=vertices.reshape(-1, 3),
        face_present=bool(msg.face_present),
        is_displacement=bool(msg.is_displacement),
        frame_id=str(msg.header.frame_id),
        **params,
    )


# -- FaceTokens -------------------------------------------------------------------------


def face_tokens_to_msg(tokens: FaceTokens, factory: MessageFactory) -> Any:
    return factory.new(
        MSG_TYPES[FaceTokens],
        header=header(factory, tokens.stamp_ns, tokens.frame_id),
        step=int(tokens.step),
        tokens=factory.array(np.ascontiguousarray(check_tokens(tokens.tokens))),
    )


def face_tokens_from_msg(msg: Any) -> FaceTokens:
    stamp = stamp_ns(msg, "FaceTokens")
    return FaceTokens(
        stamp_ns=stamp,
        step=int(msg.step),
        tokens=check_tokens(msg.tokens),
        frame_id=str(msg.header.frame_id),
    )


# -- BlendshapeWeights ------------------------------------------------------------------


def blendshape_weights_to_msg(weights: BlendshapeWeights, factory: MessageFactory) -> Any:
    check_blendshapes([str(n) for n in weights.names], np.asarray(weights.weights, np.float32).reshape(-1))
    return factory.new(
        MSG_TYPES[BlendshapeWeights],
        header=header(factory, weights.stamp_ns, weights.frame_id),
        names=list(weights.names),
        weights=factory.array(weights.weights),
    )


def blendshape_weights_from_msg(msg: Any) -> BlendshapeWeights:
    stamp = stamp_ns(msg, "BlendshapeWeights")
    names = [str(name) for name in msg.names[:MAX_BLENDSHAPES + 1]]
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.asarray(msg.weights).astype(np.float32).reshape(-1)
    check_blendshapes(names, values)
    return BlendshapeWeights(
        stamp_ns=stamp, names=names, weights=values, frame_id=str(msg.header.frame_id)
    )


# -- dispatch ---------------------------------------------------------------------------

TO_MSG: dict[type, Callable[[Any, MessageFactory], Any]] = {
    AudioChunk: audio_chunk_to_msg,
    DialogueText: dialogue_text_to_msg,
    FaceFrame: face_frame_to_msg,
    FaceTokens: face_tokens_to_msg,
    BlendshapeWeights: blendshape_weights_to_msg,
}

FROM_MSG: dict[str, Callable[[Any], Any]] = {
    MSG_TYPES[AudioChunk]: audio_chunk_from_msg,
    MSG_TYPES[DialogueText]: dialogue_text_from_msg,
    MSG_TYPES[FaceFrame]: face_frame_from_msg,
    MSG_TYPES[FaceTokens]: face_tokens_from_msg,
    MSG_TYPES[BlendshapeWeights]: blendshape_weights_from_msg,
}


def to_msg(obj: Any, factory: MessageFactory) -> Any:
    """The ROS message for any core message object."""
    return TO_MSG[type(obj)](obj, factory)


def from_msg(type_name: str, msg: Any) -> Any:
    """The core object for a message of ROS type ``type_name``."""
    return FROM_MSG[type_name](msg)

"""Core objects <-> ROS messages, one pair of functions per message type.

The same functions serve rclpy (in the nodes) and rosbags (in the session recorder and
the tests): building a message goes through a small ``MessageFactory`` that knows how
its library constructs messages and numeric arrays, and reading one only uses attribute
access, which both libraries' message classes share. The tests check these functions
against classes that rosbags generates from our own ``msg/*.msg`` files, so a field
renamed in a definition breaks a test rather than a robot.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

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


def header(factory: MessageFactory, stamp_ns: int, frame_id: str) -> Any:
    if stamp_ns < 0:
        raise ValueError(f"stamp must not be negative, got {stamp_ns} ns")
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    stamp = factory.new(TIME_TYPE, sec=sec, nanosec=nanosec)
    return factory.new(HEADER_TYPE, stamp=stamp, frame_id=frame_id)


def stamp_ns(msg: Any) -> int:
    """Nanoseconds of a message's ``header.stamp``."""
    return int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)


def _floats(values: Any, field: str, type_name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{type_name}.{field} contains NaN or infinite values")
    return array


# -- AudioChunk -------------------------------------------------------------------------


def audio_chunk_to_msg(chunk: AudioChunk, factory: MessageFactory) -> Any:
    return factory.new(
        MSG_TYPES[AudioChunk],
        header=header(factory, chunk.stamp_ns, chunk.frame_id),
        sample_rate=int(chunk.sample_rate),
        channels=int(chunk.channels),
        sequence=int(chunk.sequence),
        samples=factory.array(np.ascontiguousarray(chunk.samples, np.float32).reshape(-1)),
    )


def audio_chunk_from_msg(msg: Any) -> AudioChunk:
    """Raises ValueError, naming the field, for a chunk no consumer could play."""
    if msg.sample_rate <= 0:
        raise ValueError(f"AudioChunk.sample_rate must be positive, got {msg.sample_rate}")
    if msg.channels < 1:
        raise ValueError(f"AudioChunk.channels must be at least 1, got {msg.channels}")
    samples = _floats(msg.samples, "samples", "AudioChunk")
    if samples.size % msg.channels:
        raise ValueError(
            f"AudioChunk.samples has {samples.size} values, not a multiple of "
            f"{msg.channels} channels"
        )
    if msg.channels > 1:
        samples = samples.reshape(-1, msg.channels)
    return AudioChunk(
        stamp_ns=stamp_ns(msg),
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
        stamp_ns=stamp_ns(msg),
        step=int(msg.step),
        token_id=int(msg.token_id),
        piece=str(msg.piece),
        frame_id=str(msg.header.frame_id),
    )


# -- FaceFrame --------------------------------------------------------------------------


def face_frame_to_msg(frame: FaceFrame, factory: MessageFactory) -> Any:
    params = {name: factory.array(getattr(frame, name)) for name in PARAMETER_FIELDS}
    return factory.new(
        MSG_TYPES[FaceFrame],
        header=header(factory, frame.stamp_ns, frame.frame_id),
        face_present=bool(frame.face_present),
        is_displacement=bool(frame.is_displacement),
        vertices=factory.array(np.ascontiguousarray(frame.vertices, np.float32).reshape(-1)),
        **params,
    )


def face_frame_from_msg(msg: Any) -> FaceFrame:
    vertices = _floats(msg.vertices, "vertices", "FaceFrame")
    if vertices.size % 3:
        raise ValueError(f"FaceFrame.vertices has {vertices.size} values, not V x 3")
    params = {name: _floats(getattr(msg, name), name, "FaceFrame") for name in PARAMETER_FIELDS}
    return FaceFrame(
        stamp_ns=stamp_ns(msg),
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
        tokens=factory.array(np.ascontiguousarray(tokens.tokens, np.uint16)),
    )


def face_tokens_from_msg(msg: Any) -> FaceTokens:
    return FaceTokens(
        stamp_ns=stamp_ns(msg),
        step=int(msg.step),
        tokens=np.asarray(msg.tokens, dtype=np.uint16),
        frame_id=str(msg.header.frame_id),
    )


# -- BlendshapeWeights ------------------------------------------------------------------


def blendshape_weights_to_msg(weights: BlendshapeWeights, factory: MessageFactory) -> Any:
    if len(weights.names) != weights.weights.size:
        raise ValueError(
            f"BlendshapeWeights has {len(weights.names)} names but {weights.weights.size} weights"
        )
    return factory.new(
        MSG_TYPES[BlendshapeWeights],
        header=header(factory, weights.stamp_ns, weights.frame_id),
        names=list(weights.names),
        weights=factory.array(weights.weights),
    )


def blendshape_weights_from_msg(msg: Any) -> BlendshapeWeights:
    names = [str(name) for name in msg.names]
    values = _floats(msg.weights, "weights", "BlendshapeWeights")
    if len(names) != values.size:
        raise ValueError(
            f"BlendshapeWeights has {len(names)} names but {values.size} weights"
        )
    return BlendshapeWeights(
        stamp_ns=stamp_ns(msg), names=names, weights=values, frame_id=str(msg.header.frame_id)
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

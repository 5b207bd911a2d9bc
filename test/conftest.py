"""Shared test fixtures: generated speech WAVs and reading a session directory back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

# moshi decides at import time whether to wrap its functions in torch.compile (seconds
# to minutes on a CPU's first step); set before any test module imports it.
os.environ.setdefault("NO_TORCH_COMPILE", "1")


@pytest.fixture
def one_thread():
    """torch on one thread: tiny models run fastest (and deterministically) that way."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Callable[..., Path]:
    """Factory: writes synthetic speech as a float32 WAV and returns its path."""

    def make(seconds: float = 3.0, rate: int = 24000, channels: int = 1, seed: int = 0,
             name: str | None = None) -> Path:
        from moshiface_ros.audio.synth import synthetic_speech
        from moshiface_ros.audio.wav import write_wav

        mono = synthetic_speech(seconds, rate, seed=seed)
        samples = mono if channels == 1 else np.stack(
            [mono * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
        path = tmp_path / (name or f"user-{seconds:g}s-{rate}-{channels}ch-{seed}.wav")
        write_wav(path, samples, rate)
        return path

    return make


def _read_session(out: Path) -> dict[str, Any]:
    """Everything a session left in ``out``: summary, text lines, robot.wav, bag contents.

    ``bag`` maps topic -> list of (log time ns, msgtype, deserialized message), read with
    rosbags' AnyReader from the definitions embedded in the bag (no typestore given).
    """
    import scipy.io.wavfile
    import yaml
    from rosbags.highlevel import AnyReader

    rate, robot = scipy.io.wavfile.read(out / "robot.wav")
    text_lines = (out / "text.jsonl").read_text(encoding="utf-8").splitlines()
    bag: dict[str, list[tuple[int, str, Any]]] = {}
    with AnyReader([out / "bag"]) as reader:
        for connection in reader.connections:
            bag.setdefault(connection.topic, [])
        for connection, log_ns, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            bag[connection.topic].append((log_ns, connection.msgtype, message))
    return {
        "summary": json.loads((out / "summary.json").read_text()),
        "metadata": yaml.safe_load((out / "bag" / "metadata.yaml").read_text()),
        "text": [json.loads(line) for line in text_lines],
        "robot_rate": rate,
        "robot": robot,
        "bag": bag,
    }


@pytest.fixture(scope="session")
def read_session() -> Callable[[Path], dict[str, Any]]:
    """The function that reads a session directory back (see ``_read_session``)."""
    return _read_session


def pytest_configure(config: pytest.Config) -> None:
    """Under ``MOSHIFACE_REQUIRE_ROS=1`` (``make test``, after it installed and built ROS) a run
    that cannot import rclpy and the generated messages stops at once, saying why, instead of
    skipping every ROS test."""
    if os.environ.get("MOSHIFACE_REQUIRE_ROS") != "1":
        return
    from ros_harness import missing_ros

    problem = missing_ros()
    if problem is not None:
        raise pytest.UsageError(f"MOSHIFACE_REQUIRE_ROS=1 but {problem}")


@pytest.fixture(scope="module")
def tiny():
    """The tiny random Moshi-Face models, on one torch thread (a test module may define its own)."""
    import torch

    from moshiface_ros.speech.models import build_tiny

    torch.set_num_threads(1)
    return build_tiny()


@pytest.fixture
def stepper(tiny):
    """A fresh ``AudioStepper`` over the tiny models, its engine closed afterwards."""
    from moshiface_ros.speech.engine import SpeechEngine
    from moshiface_ros.speech.stepper import AudioStepper

    engine = SpeechEngine(tiny, seed=0)
    yield AudioStepper(engine)
    engine.close()

"""The conversation node's parameter table (``moshiface_node``).

Apart from the other nodes' tables (``parameters.py``) because its sampling defaults come
from their one home, ``speech.engine.Sampling``, which imports torch: the audio nodes read
their tables without it.

``robots`` (a string array) is declared beside the table, not in it: the tables hold one
scalar per parameter, and its default, no robots, means the node serves one robot on the
topics the other nodes use (``/moshiface/user/audio``, ...). With ``robots: [a, b]`` each
robot's topics are relative names under its own name (``a/moshiface/user/audio``), which
ROS resolves against the node's namespace: ``/a/moshiface/user/audio`` by default,
``/lab/a/moshiface/user/audio`` under ``-r __ns:=/lab``, and each can be remapped as usual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..constants import DEFAULT_SEED
from ..speech.engine import Sampling
from .paramspec import ParameterError, param

_SAMPLING = Sampling()
_TEMPERATURE = dict(low=0.0, high=10.0)
_TOP_K = dict(low=0, high=100_000)
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_ROBOT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # one ROS name token: a namespace of its own
MAX_ROBOTS = 64
ROBOTS_DESCRIPTION = ("names of the robots this node serves, one batched model for all (e.g. ['a', 'b']): "
                      "robot a's topics are a/moshiface/... under the node's namespace; empty = one robot "
                      "on /moshiface/...")


def parse_robots(value: object) -> tuple[str, ...]:
    """The ``robots`` parameter as names (None or empty: the single-robot node); a value the
    node cannot use is a ``ParameterError`` naming it."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        raise ParameterError("robots", f"expected a list of names, got {value!r}")
    names = tuple(value)
    for name in names:
        if not _ROBOT.match(name) or "__" in name:
            raise ParameterError("robots", f"{name!r} is not a ROS name token (a letter, then letters, digits "
                                           "or single underscores)")
    if len(set(names)) != len(names):
        raise ParameterError("robots", f"names must differ, got {list(names)}")
    if len(names) > MAX_ROBOTS:
        raise ParameterError("robots", f"at most {MAX_ROBOTS} robots per node, got {len(names)}")
    return names


@dataclass(frozen=True)
class MoshifaceSettings:
    model: str = param("tiny", "'tiny' (random tiny model), a checkpoint directory, or 'hf:OWNER/NAME'")
    device: str = param("auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    dtype: str = param("auto", "'auto' (bfloat16 on CUDA, float32 on CPU) or a dtype",
                       choices=("auto", "float32", "bfloat16", "float16"))
    cuda_graphs: bool = param(True, "capture each model step in CUDA graphs (CUDA only)")
    seed: int = param(DEFAULT_SEED, "seed of the sampling", low=0, high=2**31 - 1)
    temperature: float = param(_SAMPLING.temperature, "sampling temperature of the audio tokens", **_TEMPERATURE)
    text_temperature: float = param(_SAMPLING.text_temperature, "sampling temperature of the text tokens",
                                    **_TEMPERATURE)
    top_k: int = param(_SAMPLING.top_k, "top-k sampling of the audio tokens", **_TOP_K)
    text_top_k: int = param(_SAMPLING.text_top_k, "top-k sampling of the text tokens", **_TOP_K)
    face_temperature: float = param(_SAMPLING.face_temperature, "sampling temperature of the face tokens "
                                    "(Moshi-Face models)", **_TEMPERATURE)
    face_top_k: int = param(_SAMPLING.face_top_k, "top-k sampling of the face tokens (Moshi-Face models)",
                            **_TOP_K)
    codec: str = param("tiny", "face codec of a Moshi-Face model: 'tiny' or a causal codec checkpoint directory")
    frame_id: str = param("robot_head", "frame_id of the robot's face and audio messages")
    threads: int = param(0, "torch CPU threads (0 = 1 for the tiny model, torch's default otherwise)",
                         low=0, high=1024)
    queue_seconds: float = param(4.0, "seconds of user audio held while the model is busy; beyond, the "
                                      "oldest is dropped (the model hears silence there)", low=0.1, high=60.0)
    diagnostics_period_s: float = param(1.0, "period of the /diagnostics reports in seconds", low=0.05, high=60.0)

    def check(self) -> None:
        if not _DEVICE.match(self.device):
            raise ParameterError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

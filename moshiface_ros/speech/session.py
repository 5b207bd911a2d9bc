"""One way to build a conversation: options in, a ready ``AudioStepper`` out.

The embedded runner (``moshiface run`` and ``demo``) and the ROS node build the same
thing: the thread rule, device and dtype, the speech models, a ``SpeechEngine`` (warmed
up on CUDA, which captures its graphs), the face path of a Moshi-Face model and the
stepper that frames and stamps user audio. Doing it in one place is what keeps a
session built from the command line identical to one built from ROS parameters.

    stepper = build_stepper(SessionOptions(model="tiny", seed=42))

The smaller pieces (``resolve_placement``, ``load_models``, ``build_engine``,
``build_face_path``) are public for callers that must act between them: the runner
validates the model, device and dtype before it creates its output directory.

``SessionOptions`` is also where the command line takes its defaults from, so this module
imports torch and moshi only inside the functions that need them: ``moshiface --help``
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..constants import DEFAULT_SEED
from ..errors import MoshifaceError

if TYPE_CHECKING:
    import torch

    from ..face_codec.stream import FacePath
    from .engine import Sampling, SpeechEngine
    from .models import ModelSpec, SpeechModels
    from .stepper import AudioStepper


def _moshi_sampling() -> Sampling:
    from .engine import Sampling

    return Sampling()


@dataclass(frozen=True)
class SessionOptions:
    """What a conversation is built from; every field's default is the default of the
    command line and of the node's parameters."""

    model: str = "tiny"  # tiny (random weights), a checkpoint DIR, or hf:OWNER/NAME
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    dtype: str = "auto"  # auto, float32, bfloat16 or float16
    threads: int = 0  # torch's CPU threads; 0: 1 for the tiny model, torch's choice otherwise
    cuda_graphs: bool = True
    seed: int = DEFAULT_SEED
    sampling: Sampling = field(default_factory=_moshi_sampling)
    codec: str = "tiny"  # the face codec of a Moshi-Face model: tiny (random) or a checkpoint DIR
    frame_id: str = "robot_head"  # frame of everything the robot produces
    user_frame_id: str = "user_microphone"  # frame of the user's audio as the model saw it


@dataclass(frozen=True)
class Placement:
    """Which model, on which device, in which dtype: resolved and checked, nothing loaded."""

    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype


def resolve_placement(options: SessionOptions) -> Placement:
    """Parses the model spec, device and dtype; a bad one is a ``MoshifaceError``. Cheap:
    call it before creating anything that a bad value should not leave behind."""
    from .models import ModelSpec, resolve_device, resolve_dtype

    spec = ModelSpec.parse(options.model)
    device = resolve_device(options.device)
    return Placement(spec, device, resolve_dtype(options.dtype, device, spec))


def apply_threads(options: SessionOptions, spec: ModelSpec) -> int:
    """torch's thread count (process-wide): small matrices run fastest on one thread, so
    a small model (the tiny one, a small checkpoint: ``models.is_small``) gets 1 unless
    told otherwise; real weights keep torch's choice. Returns the count in force."""
    import torch

    from .models import is_small

    if options.threads < 0:
        raise MoshifaceError(f"threads must be 0 (automatic) or a positive number, got {options.threads}")
    threads = options.threads or (1 if is_small(spec) else 0)
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def load_models(options: SessionOptions, placement: Placement | None = None) -> SpeechModels:
    """The thread rule, then the speech models where ``placement`` (default: resolved
    from ``options``) says. The description says what was chosen and why, so that a run's
    printout and summary show it (an explicit ``dtype`` or ``threads`` always wins)."""
    from .models import is_small, load_speech_models

    placement = placement or resolve_placement(options)
    threads = apply_threads(options, placement.spec)
    models = load_speech_models(placement.spec, placement.device, placement.dtype)
    if placement.device.type == "cpu":
        dtype = str(placement.dtype).replace("torch.", "")
        automatic = options.dtype == "auto" and not options.threads
        why = " (a small model's CPU defaults)" if automatic and is_small(placement.spec) else ""
        models.description += f"; {dtype}, {threads} CPU thread{'s' if threads != 1 else ''}{why}"
    return models


def build_engine(options: SessionOptions, models: SpeechModels) -> SpeechEngine:
    """A streaming engine over ``models`` with the options' sampling and seed; on CUDA it
    is warmed up (graphs captured, then reset and reseeded) so the first real step is on time."""
    from .engine import SpeechEngine

    engine = SpeechEngine(models, options.sampling, seed=options.seed, cuda_graphs=options.cuda_graphs)
    if engine.device.type == "cuda":
        engine.warmup()
    return engine


def build_face_path(options: SessionOptions, engine: SpeechEngine) -> FacePath | None:
    """The streaming face codec of a Moshi-Face model (None for an audio-only one)."""
    if not engine.has_face:
        return None
    from ..face_codec.stream import FacePath, load_face_codec

    return FacePath(load_face_codec(options.codec, engine.device), frame_id=options.frame_id)


def build_stepper(options: SessionOptions, models: SpeechModels | None = None) -> AudioStepper:
    """A ready conversation: models (loaded from ``options`` unless given), engine, face
    path and the stepper that takes user audio chunks. Close it with ``stepper.close()``."""
    from .stepper import AudioStepper

    models = models if models is not None else load_models(options)
    engine = build_engine(options, models)
    try:
        face = build_face_path(options, engine)
    except BaseException:
        engine.close()
        raise
    return AudioStepper(engine, options.frame_id, options.user_frame_id, face)

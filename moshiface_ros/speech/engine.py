"""The streaming speech engine: one 80 ms step = 1920 user samples (and, for a Moshi-Face
model, the user's 8 face tokens) in; 1920 robot samples, at most one text token and, for a
Moshi-Face model, the robot's 8 face tokens out.

Mimi encodes the user's audio to 8 tokens, Moshi's ``LMGen`` advances the temporal and
depth transformers one step (text token + 8 robot audio tokens), and Mimi decodes the
robot's tokens back to audio. All three keep explicit streaming state (moshi's
``streaming_forever``), so a step costs the same at minute ten as at second one. On CUDA,
moshi captures each part in a CUDA graph after the first call; ``cuda_graphs=False``
runs them eagerly (for debugging or profiling). On the CPU, moshi's lazy ``torch.compile``
is switched off: compiling costs seconds to minutes on the first step and gains nothing
for small models.

With a Moshi-Face LM (``face_lm.model.FaceLMModel``) the engine drives ``FaceLMGen``
instead of ``LMGen``: the Face Transformer runs inside the depth transformer's CUDA
graph. When the user's face is not seen (``user_face_tokens=None``: no camera, no face in
view, tracking lost), the user's face streams carry Moshi's "zero token" (-1), whose
embedding is exactly zero: the model hears the user but gets no visual input, which is
also how an audio-only Moshi sees every conversation. A model trained with its face a
step behind its audio (``--face-delay 2``) gets its voice held one step (``LagAligner``),
so that every step's voice and face still belong to the same frame.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from ..constants import DEFAULT_SEED, FRAME_SIZE, SAMPLE_RATE  # noqa: F401 (SAMPLE_RATE: for importers)
from ..face_lm.generate import FaceLMGen
from ..face_lm.model import FaceLMModel
from ..face_lm.slot_sampling import SlotSampledLMGen
from ..face_lm.step import StepTokens
from ..moshi_compat import LMGen, no_compile, no_cuda_graph
from .models import SpeechModels


@dataclass
class Sampling:
    """Sampling temperatures and top-k of Moshi's text and audio streams (its defaults)."""

    temperature: float = 0.8
    text_temperature: float = 0.7
    top_k: int = 250
    text_top_k: int = 25
    # the face stream's own sampling (Moshi-Face models): lower than the audio's, because each
    # sampled token's noise moves the lips off the speech (docs/moshi-face.md, section 6)
    face_temperature: float = 0.3
    face_top_k: int = 100


@dataclass
class StepOutput:
    """What one step produced."""

    step: int
    pcm: np.ndarray  # (1920,) float32 robot audio in [-1, 1]; silence while the model warms up
    user_tokens: np.ndarray  # (8,) Mimi tokens of the user's audio
    text_token: int | None  # None for the first step(s): the audio streams lag the text by one
    text_piece: str | None  # None when the token is padding (the robot says nothing new)
    audio_tokens: np.ndarray | None  # (8,) robot audio tokens, None while warming up
    face_tokens: np.ndarray | None = None  # (8,) robot face tokens; None for audio-only models or warming up
    # a batch that also steps a shared face codec (several robots, ``speech/slots.py``) fills these two:
    user_face_tokens: np.ndarray | None = None  # (8,) the user's face tokens it encoded; None: no face seen
    robot_face_frames: np.ndarray | None = None  # (2, V, 3) the robot's face decoded from face_tokens


def token_piece(models: SpeechModels, token: int) -> str | None:
    """The text of a token, or None for padding; a token the tokenizer does not know
    (the tiny random model has no tokenizer) shows as ``<id>``."""
    if token in (models.lm.text_padding_token_id, models.lm.end_of_text_padding_id):
        return None
    tokenizer = models.tokenizer
    if tokenizer is None or token >= tokenizer.vocab_size():
        return f"<{token}>"
    return tokenizer.id_to_piece(token).replace("\u2581", " ")


def check_user_face(models: SpeechModels, tokens: np.ndarray) -> np.ndarray:
    """The user's N face tokens as int64, or a ``ValueError`` naming what is wrong with them."""
    n = models.lm.face_config.n_tokens
    array = np.asarray(tokens)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"user face tokens must be {n} integers, got shape {array.shape} of {array.dtype}")
    card = models.lm.face_config.card
    if array.min() < 0 or array.max() >= card:
        raise ValueError(f"user face tokens must lie in [0, {card}), got {array.min()}..{array.max()}")
    return array.astype(np.int64)


def step_contexts(device: torch.device, cuda_graphs: bool) -> contextlib.ExitStack:
    """What every step runs under: no autograd (not inference_mode: a reset edits the
    streaming state), moshi's CUDA graphs off when asked, its lazy compile off on a CPU."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if not cuda_graphs:
        stack.enter_context(no_cuda_graph())
    if device.type != "cuda":
        stack.enter_context(no_compile())
    return stack


def build_generator(models: SpeechModels, sampling: Sampling, out_of_sync: bool = False,
                    slot_seeds: list[int] | None = None) -> LMGen:
    """Moshi's ``LMGen`` (audio-only model) or ``FaceLMGen`` (Moshi-Face) with ``sampling``.
    ``out_of_sync``: batch slots keep their own clocks (a slot that joins late warms up
    on its own; moshi then never returns None, it marks a slot's warm-up tokens instead).
    ``slot_seeds``: each batch slot samples from its own generator (``SlotSampledLMGen``)."""
    kwargs = dict(temp=sampling.temperature, temp_text=sampling.text_temperature,
                  top_k=sampling.top_k, top_k_text=sampling.text_top_k, support_out_of_sync=out_of_sync)
    if isinstance(models.lm, FaceLMModel):
        return FaceLMGen(models.lm, face_temp=sampling.face_temperature, face_top_k=sampling.face_top_k,
                         slot_seeds=slot_seeds, **kwargs)
    if slot_seeds is not None:
        return SlotSampledLMGen(models.lm, slot_seeds=slot_seeds, **kwargs)
    return LMGen(models.lm, **kwargs)


def face_lag(gen: LMGen) -> int:
    """Steps by which the generator's face trails its audio (0 for the paper's delay, or audio only)."""
    return gen.face_lag if isinstance(gen, FaceLMGen) else 0


class LagAligner:
    """Holds a conversation's robot audio and text ``lag`` steps, so that they come out with
    the face of their own frame.

    A model trained with the face one step behind its audio (``--face-delay 2``: frame t's
    face reads frame t + 1's audio) returns frame t's face one step after frame t's audio;
    a live session presents a step's voice and face together, so the voice waits for its
    face (80 ms more latency per step of lag). At the paper's delay the lag is 0 and
    everything passes straight through.
    """

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self._held: deque[tuple[np.ndarray, int | None, np.ndarray | None]] = deque()

    def reset(self) -> None:
        self._held.clear()

    def align(self, pcm: np.ndarray, text: int | None, audio: np.ndarray | None,
              face: np.ndarray | None) -> tuple[np.ndarray, int | None, np.ndarray | None, np.ndarray | None]:
        """A produced step's (pcm, text, audio tokens, face tokens) -> what to present now:
        the audio and text of ``lag`` steps ago with this step's face (silence, no text and
        no face while the first steps fill the lag)."""
        if not self.lag:
            return pcm, text, audio, face
        self._held.append((pcm, text, audio))
        if len(self._held) <= self.lag:
            return np.zeros_like(pcm), None, None, None
        return (*self._held.popleft(), face)


class StreamingEngine:
    """What both engines share: the models' streaming contexts, held in ``_streaming`` until
    ``close()``, and the face path's size (``_face_tokens``, 0 for an audio-only model)."""

    _streaming: contextlib.ExitStack
    _face_tokens: int

    def close(self) -> None:
        """Ends streaming, so that the same models can serve a new engine."""
        self._streaming.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_face(self) -> bool:
        """Whether the model takes the user's face tokens and returns the robot's."""
        return self._face_tokens > 0


class SpeechEngine(StreamingEngine):
    """Drives Mimi and ``LMGen`` one step at a time with explicit streaming state.

    ``seed`` seeds torch's global generator at construction and at every ``reset``:
    moshi samples from it, so the same seed, input and thread count give the same output.
    The engine owns the models' streaming state until ``close()`` (or the end of a
    ``with`` block).
    """

    def __init__(
        self,
        models: SpeechModels,
        sampling: Sampling | None = None,
        seed: int | None = DEFAULT_SEED,
        cuda_graphs: bool = True,
    ) -> None:
        sampling = sampling or Sampling()
        self.models = models
        self.seed = seed
        self.cuda_graphs = cuda_graphs
        self.device = next(models.lm.parameters()).device
        self._mimi = models.mimi
        self._gen = build_generator(models, sampling)
        self._face_tokens = models.lm.face_config.n_tokens if isinstance(models.lm, FaceLMModel) else 0
        self._aligner = LagAligner(face_lag(self._gen))
        self._silence = np.zeros(FRAME_SIZE, dtype=np.float32)
        if models.mimi.is_streaming or models.lm.is_streaming:
            raise RuntimeError("these models are driven by another SpeechEngine: close() it first")
        self._streaming = contextlib.ExitStack()
        self._streaming.enter_context(self._mimi.streaming(1))
        self._streaming.enter_context(self._gen.streaming(1))
        self.steps = 0
        self._seed_rng()

    @property
    def face_tokens_per_step(self) -> int:
        """N: face tokens per step (0 for an audio-only model)."""
        return self._face_tokens

    @property
    def max_delay(self) -> int:
        """Steps before the first robot audio comes out."""
        return self._gen.max_delay

    def _seed_rng(self) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)

    def reset(self) -> None:
        """Starts a new conversation: clears every streaming state and reseeds."""
        self._mimi.reset_streaming()
        self._gen.reset_streaming()
        self._aligner.reset()
        self.steps = 0
        self._seed_rng()

    def warmup(self, steps: int = 4) -> None:
        """Runs a few silent steps (this captures the CUDA graphs), then resets."""
        for _ in range(steps):
            self.step(self._silence)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.reset()

    def piece(self, token: int) -> str | None:
        """The text of a token, or None for padding. A token the tokenizer does not know
        (the tiny random model has no tokenizer) shows as ``<id>``."""
        return token_piece(self.models, token)

    def _contexts(self) -> contextlib.ExitStack:
        return step_contexts(self.device, self.cuda_graphs)

    def _user_face(self, tokens: np.ndarray | None) -> torch.Tensor | None:
        """Checks the user's face tokens; None stays None (the absent face, see above)."""
        if tokens is None or not self.has_face:
            return None
        return torch.from_numpy(check_user_face(self.models, tokens)).to(self.device).view(1, -1, 1)

    def step(self, pcm: np.ndarray, user_face_tokens: np.ndarray | None = None) -> StepOutput:
        """Advances the conversation by 80 ms; ``pcm`` is 1920 mono samples at 24 kHz.

        ``user_face_tokens``: the user's N face tokens for this step (Moshi-Face models;
        ignored by audio-only ones); None when the user's face is not seen.
        """
        pcm = np.asarray(pcm, dtype=np.float32)
        if pcm.shape != (FRAME_SIZE,):
            raise ValueError(f"a step takes {FRAME_SIZE} mono samples, got shape {pcm.shape}")
        user_face = self._user_face(user_face_tokens)
        face = None
        with self._contexts():
            user = torch.from_numpy(pcm).to(self.device).view(1, 1, FRAME_SIZE)
            user_codes = self._mimi.encode(user)
            if self.has_face:
                packed = self._gen.step(user_codes, user_face)
            else:
                packed = self._gen.step(user_codes)
            if packed is None:
                out_pcm, text, audio = self._silence.copy(), None, None
            else:
                tokens = StepTokens.unpack(packed, self.models.lm.dep_q)
                robot = self._mimi.decode(tokens.audio)
                out_pcm = robot.view(-1).clamp_(-1.0, 1.0).float().cpu().numpy()
                text = int(tokens.text[0, 0, 0])
                audio = tokens.audio[0, :, 0].cpu().numpy().astype(np.int64)
                if tokens.face is not None:
                    face = tokens.face[0, :, 0].cpu().numpy().astype(np.int64)
                out_pcm, text, audio, face = self._aligner.align(out_pcm, text, audio, face)
        output = StepOutput(
            step=self.steps,
            pcm=out_pcm,
            user_tokens=user_codes[0, :, 0].cpu().numpy().astype(np.int64),
            text_token=text,
            text_piece=None if text is None else self.piece(text),
            audio_tokens=audio,
            face_tokens=face,
        )
        self.steps += 1
        return output

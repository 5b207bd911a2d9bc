"""``FaceLMGen``: Moshi's streaming generator with the face streams, one call per 80 ms step.

It is moshi's ``LMGen`` (same cache, delays, sampling and CUDA graphs; reached through
``moshi_compat.StreamingLMGen``, which names the private parts of its state) with three
additions:

- a face cache beside Moshi's token cache, written and read with the same delays (the
  user's face tokens arrive with the user's audio; the robot's sampled face tokens are
  fed back one step later, like its audio);
- the temporal transformer's graphed call adds the face-stream embeddings to the step
  input (Moshi's ``sum_condition`` slot), read from a fixed buffer so the CUDA graph
  sees each step's tokens;
- ``depformer_step`` (graphed by moshi on CUDA) runs the Face Transformer right after the
  depth transformer and samples the N face tokens, so on a GPU the whole face head is
  inside the captured graph.

``teacher_forcing=True`` replaces the sampled text and robot audio by tokens the caller
gives each step (the depth transformer does not run): the paper's teacher-forced
evaluation, where only the face is generated.

A step returns moshi's packed layout with the face tokens appended; ``step.StepTokens``
reads it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..moshi_compat import CUDAGraphed, sample_token, scatter_with_mask_
from .model import ABSENT_FACE_TOKEN, FaceLMModel
from .slot_sampling import SiteSampling, SlotSampledLMGen
from .step import StepTokens


@dataclass
class _FaceState:
    """Fixed-address tensors (CUDA graphs read and write them in place)."""

    cache: torch.Tensor  # [B, 2N, CT] face tokens by delayed position (robot, then user)
    input: torch.Tensor  # [B, 2N, 1] this step's face input (ids 0..K, or -1)
    sampled: torch.Tensor  # [B, N] robot face tokens sampled this step
    logits: torch.Tensor  # [B, N, K] their logits (kept for evaluation and tests)
    forced: torch.Tensor  # [B, 1 + dep_q] teacher-forced text + robot audio of this step
    prepare: CUDAGraphed


class FaceLMGen(SlotSampledLMGen):
    """Streaming generation of text, robot audio and robot face tokens.

    ``face_temp`` / ``face_top_k``: the face stream's own sampling (``use_sampling=False``
    makes every stream greedy, as in ``LMGen``). ``slot_seeds``: each batch slot samples
    from its own generator, face tokens included (``slot_sampling.SlotSampledLMGen``).
    """

    def __init__(self, lm_model: FaceLMModel, *args, face_temp: float = 0.8, face_top_k: int = 100,
                 teacher_forcing: bool = False, **kwargs) -> None:
        if not isinstance(lm_model, FaceLMModel):
            raise TypeError("FaceLMGen drives a FaceLMModel; use moshi's LMGen for audio-only models")
        super().__init__(lm_model, *args, **kwargs)
        if self.cfg_coef != 1.0:
            raise ValueError("classifier-free guidance is not supported with the face streams")
        face = lm_model.face_config
        if face.delay < self.max_delay:
            # a face sampled before its frame's audio is complete could not read that audio
            raise ValueError(f"face delay {face.delay} must be at least the audio's largest delay {self.max_delay}")
        self.face_temp = face_temp
        self.face_top_k = face_top_k
        self.teacher_forcing = teacher_forcing
        # after the per-slot text draw (if any), so that a forced token is never re-sampled
        self._user_on_text_hook = self._next_text_hook
        if teacher_forcing:
            self._next_text_hook = self._force_text

    # -- streaming state ---------------------------------------------------------------------

    def slot_sites(self) -> dict[str, SiteSampling]:
        face, temp = self.lm_model.face_config, self.face_temp if self.use_sampling else 0.0
        return {**super().slot_sites(), "face": SiteSampling(face.n_tokens, face.card, temp, self.face_top_k)}

    def extend_streaming_state(self, state: Any) -> None:
        """Adds the face state beside moshi's, graphs the temporal call with the face input,
        and resets the face state whenever moshi resets its own."""
        super().extend_streaming_state(state)
        lm = self.lm_model
        face = lm.face_config
        n, device = face.n_tokens, lm.device
        batch_size, ct = self.state_batch_size(state), self.state_cache_length(state)
        state.face = _FaceState(
            cache=torch.full((batch_size, 2 * n, ct), face.initial_token_id, device=device, dtype=torch.long),
            input=torch.full((batch_size, 2 * n, 1), face.initial_token_id, device=device, dtype=torch.long),
            sampled=torch.full((batch_size, n), face.initial_token_id, device=device, dtype=torch.long),
            logits=torch.zeros((batch_size, n, face.card), device=device, dtype=torch.float32),
            forced=torch.zeros((batch_size, 1 + lm.dep_q), device=device, dtype=torch.long),
            prepare=CUDAGraphed(self._prepare_face, disable=device.type != "cuda"),
        )
        self.replace_temporal_call(state, self._forward_text_with_face, device)

        def reset_face(reset_mask: torch.Tensor) -> None:
            keep = ~reset_mask.view(-1, 1, 1)
            fs = state.face
            fs.cache.copy_(torch.where(keep, fs.cache, face.initial_token_id))
            fs.input.copy_(torch.where(keep, fs.input, face.initial_token_id))
            fs.sampled.copy_(torch.where(keep[:, :, 0], fs.sampled, face.initial_token_id))

        self.add_reset_callback(state, reset_face)

    # -- the three graphed pieces -----------------------------------------------------------

    def _prepare_face(self, user_face: torch.Tensor, offsets: torch.Tensor) -> None:
        """Writes last step's robot face and this step's user face into the face cache and
        reads this step's face input (initial tokens while the delay is not yet filled)."""
        state = self.streaming_state
        fs, face = state.face, self.lm_model.face_config
        n, ct = face.n_tokens, fs.cache.shape[2]
        batch = fs.cache.shape[0]
        mask = self.state_exec_mask(state)[:, None, None]
        here = (offsets % ct).view(-1, 1, 1)
        scatter_with_mask_(fs.cache[:, :n], -1, here.expand(batch, n, 1), fs.sampled[:, :, None], mask)
        ahead = ((offsets + face.delay) % ct).view(-1, 1, 1)
        scatter_with_mask_(fs.cache[:, n:], -1, ahead.expand(batch, n, 1), user_face, mask)
        current = fs.cache.gather(2, here.expand(batch, 2 * n, 1))
        is_init = (offsets.view(-1, 1, 1) <= face.delay) | ~mask
        fs.input.copy_(torch.where(is_init, face.initial_token_id, current))

    def _forward_text_with_face(self, sequence: torch.Tensor, sum_condition: torch.Tensor | None,
                                cross_attention_src: torch.Tensor | None):
        lm = self.lm_model
        face_sum = lm.face_input_sum(self.streaming_state.face.input)
        if sum_condition is not None:
            face_sum = face_sum + sum_condition.to(face_sum)
        return lm.forward_text(sequence, face_sum, cross_attention_src)

    def depformer_step(self, text_token: torch.Tensor, transformer_out: torch.Tensor) -> torch.Tensor:
        """Moshi's depth transformer (or the forced audio), then the Face Transformer."""
        fs = self.streaming_state.face
        lm = self.lm_model
        if self.teacher_forcing:
            audio = fs.forced[:, 1:].clone()
        else:
            audio = super().depformer_step(text_token, transformer_out)
        n = lm.face_config.n_tokens
        logits = lm.face_logits(transformer_out, text_token[:, None], audio[:, :, None], fs.input[:, :n])
        logits = logits[:, :, 0]  # [B, N, K]
        noise = self.slot_noise
        if noise is None:
            tokens = sample_token(logits.float(), self.use_sampling, self.face_temp, self.face_top_k)
        else:
            tokens = noise.sample("face", logits)
        # A masked (idle) slot keeps what it sampled last: its next step writes that into its
        # face history, as if the idle step never happened.
        active = self.state_exec_mask(self.streaming_state)
        fs.sampled.copy_(torch.where(active[:, None], tokens, fs.sampled))
        fs.logits.copy_(torch.where(active[:, None, None], logits.float(), fs.logits))
        return audio

    def _force_text(self, text_token: torch.Tensor) -> None:
        text_token.copy_(self.streaming_state.face.forced[:, 0])
        if self._user_on_text_hook is not None:
            self._user_on_text_hook(text_token)

    # -- one step ------------------------------------------------------------------------------

    @property
    def face_lag(self) -> int:
        """Frames by which a step's face trails the audio returned with it: 0 at the paper's
        face delay (equal to the audio's), 1 when the face of frame t waits for the audio of t + 1."""
        return self.lm_model.face_config.delay - self.max_delay

    @torch.no_grad()
    def step(self, input_tokens: torch.Tensor, user_face_tokens: torch.Tensor | None = None,
             forced_tokens: torch.Tensor | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """One 80 ms step.

        ``input_tokens`` [B, 8, 1]: the user's Mimi tokens; ``user_face_tokens`` [B, N, 1]
        (None: the user's face is not seen, every stream gets -1); ``forced_tokens``
        [B, 1 + dep_q, 1] only with ``teacher_forcing``: this step's text token and robot
        audio tokens as the model would have produced them (delayed as Moshi delays them).

        Returns None while the delays fill (the first step), then [B, 1 + dep_q + N, 1]:
        the text token, the robot's audio tokens of one frame and the robot's face tokens of
        the frame ``face_lag`` before it (the same frame at the paper's delays).
        """
        state = self.streaming_state
        if state is None:
            raise RuntimeError("use FaceLMGen inside `with gen.streaming(batch_size):`")
        fs = state.face
        n, batch_size = self.lm_model.face_config.n_tokens, self.state_batch_size(state)
        if user_face_tokens is None:
            user_face_tokens = torch.full((batch_size, n, 1), ABSENT_FACE_TOKEN,
                                          device=fs.cache.device, dtype=torch.long)
        if user_face_tokens.shape != (batch_size, n, 1):
            raise ValueError(f"user face tokens must be [{batch_size}, {n}, 1], got {tuple(user_face_tokens.shape)}")
        if self.teacher_forcing:
            if forced_tokens is None:
                raise ValueError("teacher forcing needs forced_tokens [B, 1 + dep_q, 1] every step")
            fs.forced.copy_(forced_tokens[:, :, 0])
        elif forced_tokens is not None:
            raise ValueError("forced_tokens are only taken with teacher_forcing=True")
        fs.prepare(user_face_tokens.to(fs.cache.device, torch.long), self.state_offsets(state))
        packed = super().step(input_tokens)
        if packed is None:
            return None
        step = StepTokens.unpack(packed, self.lm_model.dep_q)
        face = fs.sampled.clone()[:, :, None]
        face[step.text[:, 0, 0] == self.lm_model.ungenerated_token_id] = self.lm_model.ungenerated_token_id
        return replace(step, face=face).pack()

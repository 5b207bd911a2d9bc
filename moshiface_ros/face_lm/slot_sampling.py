"""Per-slot sampling: each batch slot draws its random numbers from its own generator.

moshi samples the whole batch in one call from torch's one global generator, so with a
temperature a conversation's tokens depend on which other conversations share its batch
(and on how many random numbers they drew before it). A fleet served by one model needs
each robot's conversation reproducible on its own: the same seed and input give the same
tokens whether it is stepped alone or beside others.

How, without touching the global generator: sampling from ``softmax(logits / T)`` is the
same as taking ``argmax(p / e)`` with ``e`` i.i.d. standard exponential noise (the
exponential race; moshi's own multinomial uses it to avoid a host sync). Each step, before
the model runs, every *active* slot draws the noise for all of its sampling sites (text,
the depth transformer's codebooks, the face tokens) from its own CPU ``torch.Generator``
into one fixed-address tensor on the model's device. The samplers then only read that
tensor, so they can sit inside moshi's CUDA graphs, and a slot's noise never depends on the
device or on its neighbours. A masked (idle) slot draws nothing, so it continues as if the
idle step never happened; a reset reseeds the slot's generator with its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..moshi_compat import StreamingLMGen

__all__ = ["SiteSampling", "SlotNoise", "SlotSampledLMGen", "sample_with_noise"]


@dataclass(frozen=True)
class SiteSampling:
    """One sampling site: ``rows`` tokens per slot and step, drawn from ``card`` choices with
    ``temp`` and ``top_k`` (0: all of them). ``width``: noise values one row needs."""

    rows: int
    card: int
    temp: float
    top_k: int

    @property
    def sampled(self) -> bool:
        return self.temp > 0.0

    @property
    def width(self) -> int:
        if not self.sampled:
            return 0
        return min(self.top_k, self.card) if self.top_k > 0 else self.card


def sample_with_noise(logits: torch.Tensor, noise: torch.Tensor, site: SiteSampling) -> torch.Tensor:
    """Tokens [B, R] from ``logits`` [B, R, card] and this step's ``noise`` [B, R, width]:
    greedy when the site's temperature is 0, else the exponential race over the top-k."""
    if not site.sampled:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / site.temp, dim=-1)
    if site.top_k > 0:
        probs, indices = torch.topk(probs, site.width, dim=-1)
        choice = (probs / noise).argmax(dim=-1, keepdim=True)
        return indices.gather(-1, choice)[..., 0]
    return (probs / noise).argmax(dim=-1)


class SlotNoise:
    """Each slot's generator and the noise of the current step for every site.

    ``seeds``: one per slot; ``reseed(mask)`` restarts the generators of the slots in mask
    (a new conversation); ``draw(active)`` fills the active slots' rows for the next step.
    """

    def __init__(self, sites: dict[str, SiteSampling], seeds: Sequence[int], device: torch.device) -> None:
        self.sites = sites
        self.seeds = [int(seed) for seed in seeds]
        self.generators = [torch.Generator() for _ in self.seeds]
        for generator, seed in zip(self.generators, self.seeds):
            generator.manual_seed(seed)
        widths = [site.rows * site.width for site in sites.values()]
        self._host = torch.ones((len(self.seeds), sum(widths)), dtype=torch.float32)
        self._device = torch.ones_like(self._host, device=device)  # fixed address: CUDA graphs read it
        self.views: dict[str, torch.Tensor] = {}
        start = 0
        for (name, site), width in zip(sites.items(), widths):
            view = self._device[:, start:start + width]
            self.views[name] = view.view(len(self.seeds), site.rows, site.width)
            start += width

    def reseed(self, mask: torch.Tensor) -> None:
        for slot in torch.nonzero(mask.cpu()).view(-1).tolist():
            self.generators[slot].manual_seed(self.seeds[slot])

    def draw(self, active: torch.Tensor) -> None:
        """One step's noise for each active slot, from that slot's generator only."""
        if self._host.shape[1] == 0:
            return
        for slot in torch.nonzero(active.cpu()).view(-1).tolist():
            self._host[slot].exponential_(1.0, generator=self.generators[slot])
        self._device.copy_(self._host)

    def sample(self, name: str, logits: torch.Tensor) -> torch.Tensor:
        """Tokens [B, R] for site ``name`` from ``logits`` [B, R, card]."""
        return sample_with_noise(logits, self.views[name], self.sites[name])


class SlotSampledLMGen(StreamingLMGen):
    """moshi's ``LMGen`` whose batch slots sample with their own generators.

    ``slot_seeds`` (one per batch slot, given to ``streaming(len(slot_seeds))``) turns it
    on; without it every call goes to moshi unchanged (its global generator). With it, the
    text token is re-sampled in ``on_text_hook`` from the logits seen by
    ``on_text_logits_hook`` (moshi's own text draw is made greedy, so it draws nothing) and
    the depth transformer's codebooks are sampled here, step by step, as moshi does.
    Subclasses add sites in ``slot_sites`` and sample them with ``slot_noise``.
    """

    def __init__(self, lm_model, *args, slot_seeds: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(lm_model, *args, **kwargs)
        self.slot_seeds = None if slot_seeds is None else [int(seed) for seed in slot_seeds]
        self._next_text_hook = self.on_text_hook
        self._next_text_logits_hook = self.on_text_logits_hook
        self.on_text_hook = self._slot_text_hook
        self.on_text_logits_hook = self._slot_text_logits_hook
        self._text_logits: torch.Tensor | None = None
        self.slot_text_temp = self.temp_text if self.use_sampling else 0.0
        if self.slot_seeds is not None:
            if self.cfg_coef != 1.0:
                raise ValueError("per-slot sampling does not support classifier-free guidance")
            self.temp_text = 0.0  # moshi's own text draw: greedy, replaced in _slot_text_hook

    def slot_sites(self) -> dict[str, SiteSampling]:
        """Every sampling site of one step, in drawing order."""
        lm, temp = self.lm_model, self.temp if self.use_sampling else 0.0
        return {"text": SiteSampling(1, lm.text_card, self.slot_text_temp, self.top_k_text),
                "audio": SiteSampling(lm.dep_q, lm.card, temp, self.top_k)}

    def extend_streaming_state(self, state: Any) -> None:
        state.slot_noise = None
        if self.slot_seeds is None:
            return
        batch_size = self.state_batch_size(state)
        if len(self.slot_seeds) != batch_size:
            raise ValueError(f"{len(self.slot_seeds)} slot seeds for a batch of {batch_size}")
        state.slot_noise = SlotNoise(self.slot_sites(), self.slot_seeds, self.lm_model.device)
        self.add_reset_callback(state, state.slot_noise.reseed)

    @property
    def slot_noise(self) -> SlotNoise | None:
        """The live per-slot noise (None: moshi's global generator samples)."""
        return getattr(self.streaming_state, "slot_noise", None)

    def _slot_text_logits_hook(self, text_logits: torch.Tensor) -> None:
        self._text_logits = text_logits
        if self._next_text_logits_hook is not None:
            self._next_text_logits_hook(text_logits)

    def _slot_text_hook(self, text_token: torch.Tensor) -> None:
        noise = self.slot_noise
        if noise is not None and self._text_logits is not None:
            text_token.copy_(noise.sample("text", self._text_logits[:, 0, :, :])[:, 0])
        self._text_logits = None
        if self._next_text_hook is not None:
            self._next_text_hook(text_token)

    def depformer_step(self, text_token: torch.Tensor, transformer_out: torch.Tensor) -> torch.Tensor:
        """moshi's depth transformer; with per-slot sampling, each codebook drawn here from
        the slots' noise, fed back as the next codebook's input as moshi does."""
        noise = self.slot_noise
        if noise is None:
            return super().depformer_step(text_token, transformer_out)
        lm, previous, tokens = self.lm_model, text_token, []
        rows = noise.views["audio"]
        with lm.depformer.streaming(text_token.shape[0]):
            for index in range(lm.dep_q):
                logits = lm.forward_depformer(index, previous[:, None, None], transformer_out)
                previous = sample_with_noise(logits[:, 0], rows[:, index:index + 1], noise.sites["audio"])[:, 0]
                tokens.append(previous)
        return torch.stack(tokens, dim=1)

    @torch.no_grad()
    def step(self, input_tokens: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """moshi's step, after the active slots drew this step's noise."""
        noise = self.slot_noise
        if noise is not None:
            noise.draw(self.state_exec_mask(self.streaming_state))
        return super().step(input_tokens, *args, **kwargs)

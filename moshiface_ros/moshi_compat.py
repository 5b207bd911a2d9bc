"""Every touch of moshi's private API, in one module, for the moshi version it was written for.

Moshi-Face extends Kyutai's moshi (``LMModel``, ``LMGen``, Mimi) instead of copying it, and a
few of the extension points it needs are private in moshi: ``LMGen``'s streaming-state
constructor and the fields of that state, the delay helpers and weight initialisation of
``lm_utils``, the default configurations in ``loaders``, the model's initial token, the
streaming modules' cache of their children and the codebooks' buffers. Any moshi release
may change them. This module is the only one in the package that names them (a test checks
that), so moving to another moshi means reading this file against the new moshi, nothing else.

The check at import: the installed moshi's version is compared with ``MOSHI_VERSION`` and
every private name used here is looked up. A different version alone is a warning, not an
error: patch releases usually keep these names, and refusing to run would block a user for
nothing. A private name that is really gone is an error, one line naming the name and both
versions, instead of an ``AttributeError`` deep inside the first step.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Callable, Iterator

import torch
from moshi.models import lm_utils, loaders
from moshi.models.compression import MimiModel
from moshi.models.lm import LMGen, LMModel, scatter_with_mask_
from moshi.modules.streaming import State, StreamingModule
from moshi.modules.transformer import StreamingTransformer
from moshi.quantization.core_vq import EuclideanCodebook
from moshi.utils.compile import CUDAGraphed, no_compile, no_cuda_graph
from moshi.utils.sampling import sample_token

from .errors import MoshifaceError

MOSHI_VERSION = "0.2.13"  # the moshi this module was written and tested against

__all__ = [
    "CUDAGraphed", "LMGen", "MOSHI_VERSION", "OwnStateModule", "State", "StreamingLMGen", "TransformerLayerWeights",
    "transformer_layer_weights", "codebook_inputs", "codebooks",
    "default_lm_kwargs", "default_mimi_config", "delay_sequence", "fill_codebook", "forget_streaming_children",
    "init_layer", "initial_tokens", "no_compile", "no_cuda_graph", "sample_token", "scatter_with_mask_",
    "undelay_sequence",
]

# (owner, private attribute) pairs this module relies on, checked once at import.
_PRIVATE_NAMES: tuple[tuple[Any, str], ...] = (
    (loaders, "_lm_kwargs"), (loaders, "_mimi_config"), (lm_utils, "_delay_sequence"),
    (lm_utils, "_undelay_sequence"), (lm_utils, "_init_layer"), (LMModel, "_get_initial_token"),
    (LMGen, "_init_streaming_state"), (LMGen, "depformer_step"),
)


def installed_version() -> str:
    try:
        return metadata.version("moshi")
    except metadata.PackageNotFoundError:  # a source checkout on the path
        import moshi

        return str(getattr(moshi, "__version__", "unknown"))


def check_moshi(version: str | None = None) -> None:
    """Warns when moshi is not ``MOSHI_VERSION``; raises when a private name used here is gone."""
    version = version or installed_version()
    for owner, name in _PRIVATE_NAMES:
        if not hasattr(owner, name):
            raise MoshifaceError(
                f"moshi {version} has no {getattr(owner, '__name__', owner)}.{name}, which Moshi-Face "
                f"needs: install moshi=={MOSHI_VERSION}, the version moshiface_ros.moshi_compat was written for")
    if version != MOSHI_VERSION:
        warnings.warn(f"moshi {version} is installed; Moshi-Face was written for moshi {MOSHI_VERSION} "
                      f"(if a step fails, install moshi=={MOSHI_VERSION})", RuntimeWarning, stacklevel=2)


check_moshi()


# -- configurations --------------------------------------------------------------------------


def default_lm_kwargs() -> dict[str, Any]:
    """A copy of moshi's 7B LM configuration (what ``loaders.get_moshi_lm`` builds by default)."""
    return copy.deepcopy(loaders._lm_kwargs)


def default_mimi_config() -> dict[str, Any]:
    """A copy of moshi's Mimi configuration."""
    return copy.deepcopy(loaders._mimi_config)


# -- model building blocks -----------------------------------------------------------------------


def init_layer(module: torch.nn.Module) -> None:
    """Moshi's weight initialisation of one layer (truncated normal, std 1/sqrt(fan_in))."""
    lm_utils._init_layer(module)


def delay_sequence(delays: list[int], tensor: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
    """Shifts stream k of ``tensor`` [B, K, T] right by ``delays[k]``, filling with ``padding`` [B, K, 1]."""
    return lm_utils._delay_sequence(delays, tensor, padding)


def undelay_sequence(delays: list[int], tensor: torch.Tensor,
                     fill_value: float | int = float("NaN")) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of ``delay_sequence`` for [B, K, T, ...]; returns the tensor and its valid mask."""
    return lm_utils._undelay_sequence(delays, tensor, fill_value=fill_value)


def initial_tokens(lm: LMModel) -> torch.Tensor:
    """The token ids every stream holds before its first step: [1, num_codebooks, 1]."""
    return lm._get_initial_token()


def forget_streaming_children(module: StreamingModule) -> None:
    """Makes streaming look ``module``'s children up again (after modules were replaced)."""
    module._cached_children = None


# -- Mimi's codebooks ---------------------------------------------------------------------------


def codebooks(mimi: MimiModel) -> list[EuclideanCodebook]:
    """Every vector-quantizer codebook of ``mimi``, in module order (level by level)."""
    return [m for m in mimi.modules() if isinstance(m, EuclideanCodebook)]


def fill_codebook(book: EuclideanCodebook, entries: torch.Tensor) -> None:
    """Sets a codebook's entries [codebook_size, dim] as if k-means had converged on them."""
    book.embedding_sum.copy_(entries)
    book.cluster_usage.fill_(1.0)
    book._initialized.fill_(1.0)
    book._embedding = None  # the cached normalised embedding is rebuilt from the new sums


@contextmanager
def codebook_inputs(book: EuclideanCodebook) -> Iterator[list[torch.Tensor]]:
    """Inside the block, every vector ``book`` is asked to quantize is appended ([n, dim]) to
    the yielded list; afterwards the codebook encodes as before."""
    seen: list[torch.Tensor] = []
    plain_encode = book.encode

    def recording_encode(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.reshape(-1, x.shape[-1]))
        return plain_encode(x)

    book.encode = recording_encode
    try:
        yield seen
    finally:
        del book.encode  # back to the class's method


# -- LMGen's streaming state ---------------------------------------------------------------------


class StreamingLMGen(LMGen):
    """moshi's ``LMGen`` with the private parts of its streaming state under names of our own.

    A subclass adds its own fields to the state in ``extend_streaming_state`` and reads the
    state through the accessors below; it never names moshi's private members itself.
    """

    def _init_streaming_state(self, batch_size: int):
        state = super()._init_streaming_state(batch_size)
        self.extend_streaming_state(state)
        return state

    def extend_streaming_state(self, state: Any) -> None:
        """Hook: called once per ``streaming()`` with moshi's fresh state object."""

    @property
    def streaming_state(self) -> Any:
        """The live state (None outside ``with gen.streaming(batch_size):``)."""
        return self._streaming_state

    @staticmethod
    def state_cache_length(state: Any) -> int:
        """Positions of moshi's circular token cache (the largest delay + 2)."""
        return int(state.cache.shape[2])

    @staticmethod
    def state_offsets(state: Any) -> torch.Tensor:
        """[B] steps taken by each batch item."""
        return state.offsets

    @staticmethod
    def state_exec_mask(state: Any) -> torch.Tensor:
        """[B] which batch items step now."""
        return state.exec_mask

    @staticmethod
    def state_batch_size(state: Any) -> int:
        return int(state.batch_size)

    @staticmethod
    def replace_temporal_call(state: Any, function: Callable[..., Any], device: torch.device) -> None:
        """Runs ``function(sequence, sum_condition, cross_attention_src)`` in place of the LM's
        ``forward_text`` each step (CUDA-graphed on a GPU, as moshi graphs its own)."""
        state.graphed_main = CUDAGraphed(function, disable=device.type != "cuda")

    @staticmethod
    def add_reset_callback(state: Any, callback: Callable[[torch.Tensor], None]) -> None:
        """Calls ``callback(reset_mask)`` after moshi's own reset of the state."""
        moshi_reset = state.reset_callback

        def reset(reset_mask: torch.Tensor) -> None:
            if moshi_reset is not None:
                moshi_reset(reset_mask)
            callback(reset_mask)

        state.reset_callback = reset


# -- streaming modules of our own ------------------------------------------------------------------


class OwnStateModule(StreamingModule):
    """A streaming module whose state (a ``State`` subclass) comes from ``new_state``: moshi's
    ``streaming()`` creates it and ``reset_streaming(reset_mask)`` resets it with the rest."""

    def _init_streaming_state(self, batch_size: int) -> State:
        return self.new_state(batch_size)

    def new_state(self, batch_size: int) -> State:
        raise NotImplementedError

    @property
    def state(self) -> Any:
        """The live state (None outside streaming)."""
        return self._streaming_state


class TransformerLayerWeights(tuple):
    """One layer of moshi's ``StreamingTransformer``, by name: (norm1, in_proj, out_proj,
    norm2, linear1, linear2) -- the layer norms as modules, the rest as weight tensors."""

    __slots__ = ()


def transformer_layer_weights(transformer: StreamingTransformer) -> list[TransformerLayerWeights]:
    """The weights of each layer of a ``StreamingTransformer`` built as the face codec builds
    it (layer norm, plain GELU feed-forward, no layer scale, one projection per step, heads not
    shared); anything else is a ``MoshifaceError`` naming what differs."""
    layers = []
    for index, layer in enumerate(transformer.layers):
        attention = layer.self_attn
        plain = (isinstance(layer.norm1, torch.nn.LayerNorm) and layer.gating is None
                 and isinstance(layer.layer_scale_1, torch.nn.Identity) and attention.kv_repeat == 1
                 and len(attention.in_projs) == 1 and layer.cross_attention is None)
        if not plain:
            raise MoshifaceError(f"transformer layer {index} is not the plain layer the fast step supports")
        layers.append(TransformerLayerWeights((
            layer.norm1, attention.in_projs[0].weight, attention.out_projs[0].weight,
            layer.norm2, layer.linear1.weight, layer.linear2.weight)))
    return layers

"""Configuration of the face pathway added to Moshi.

The face codec produces ``n_tokens`` (N = 8) tokens per 80 ms step from a codebook of
``card`` (K = 256) entries. The extended model reads 2N face streams (the robot's own
previous face tokens, then the user's) and the Face Transformer writes N. Values not
fixed by the paper (the Face Transformer's width and depth) are chosen to cost a small
fraction of a 7B step: a 4-layer, 1024-wide transformer over 8 positions. The tiny test
configuration is in ``tiny.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..constants import FACE_CARD, FACE_TOKENS
from ..errors import MoshifaceError


@dataclass(frozen=True)
class FaceConfig:
    """The face streams and the Face Transformer.

    ``input_init``: how the temporal transformer's new face-stream embeddings start.
    ``"zero"`` (the default for a model built on pretrained Moshi weights) makes the
    extended model behave exactly like Moshi until training teaches it to use faces;
    ``"normal"`` draws them like Moshi's own embeddings (tiny random test models, so the
    user's face visibly changes the output).

    ``use_prev_tokens``: add the previous step's face-token embeddings to the Face
    Transformer's queries (the paper's "t-1 face token input"); off reproduces its ablation.

    ``audio_lookup``: the Face Transformer also reads the step's robot audio tokens through
    its own embedding tables, added to its queries. The paper's e_all (off, the default)
    reads them only through the temporal transformer's input embeddings; on a pretrained
    Moshi those carry meaning, but on a small or random backbone frozen in stage 1 they are
    fixed random vectors, and a linear projection of their sum cannot read speech energy
    from 8 x 1,024 token values (docs/moshi-face.md, "What makes it learn").
    """

    n_tokens: int = FACE_TOKENS
    card: int = FACE_CARD
    delay: int = 1  # face streams lag the text by one step, as Moshi's acoustic audio does
    dim: int = 1024
    num_heads: int = 16
    num_layers: int = 4
    dim_feedforward: int = 4224
    use_prev_tokens: bool = True
    audio_lookup: bool = False
    input_init: str = "zero"

    def __post_init__(self) -> None:
        if self.n_tokens < 1 or self.card < 2:
            raise MoshifaceError(f"face config: n_tokens {self.n_tokens} and card {self.card} must be positive")
        if self.dim % self.num_heads:
            raise MoshifaceError(f"face config: dim {self.dim} is not a multiple of num_heads {self.num_heads}")
        if self.input_init not in ("zero", "normal"):
            raise MoshifaceError(f"face config: input_init must be 'zero' or 'normal', got {self.input_init!r}")
        if self.delay < 0:
            raise MoshifaceError(f"face config: delay must be >= 0, got {self.delay}")

    @property
    def initial_token_id(self) -> int:
        """Input id meaning "no face token yet" (start of a conversation)."""
        return self.card

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FaceConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MoshifaceError(f"face config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


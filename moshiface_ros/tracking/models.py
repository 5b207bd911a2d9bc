"""Loading what tracking needs: a FLAME model (the user's pickle, or "synthetic") and its
landmark embedding, optionally with VHAP's teeth."""

from __future__ import annotations

from pathlib import Path

from ..errors import MoshifaceError
from ..flame.model import FlameModel
from .embedding import LandmarkEmbedding, build_embedding, teeth_anchors

SYNTHETIC = "synthetic"
# Where `moshiface flame embedding` writes by default and the node looks by default.
DEFAULT_EMBEDDING_FILE = Path(__file__).resolve().parent.parent.parent / "config" / "flame_landmark_embedding.npz"


def load_tracking_model(flame: str | Path, embedding: str | Path | None = None, *, teeth: bool = False
                        ) -> tuple[FlameModel, LandmarkEmbedding]:
    """``flame`` is a FLAME pickle or "synthetic" (the stand-in model, embedding built on the
    spot: a few seconds); ``embedding`` an .npz from `moshiface flame embedding` (default
    config/flame_landmark_embedding.npz). With ``teeth`` the model gets VHAP's 120 teeth vertices."""
    if str(flame) == SYNTHETIC:
        from ..flame.synthetic import build_synthetic_flame

        model = build_synthetic_flame(0)
        emb = LandmarkEmbedding.load(embedding) if embedding else build_embedding(model)
    else:
        if not str(flame):
            raise MoshifaceError("no FLAME model given: pass a FLAME pickle (see docs/face-tracking.md) "
                                 "or 'synthetic'")
        model = FlameModel.load(flame)
        emb = LandmarkEmbedding.load(embedding or DEFAULT_EMBEDDING_FILE)
    emb.check(model)
    if teeth:
        from ..flame.teeth import add_teeth

        model = add_teeth(model, teeth_anchors(model, emb))
    return model, emb

"""``moshiface flame ...``: one-off conversions of the user's FLAME download.

    moshiface flame embedding --flame FLAME.pkl [--out FILE]
        MediaPipe landmark -> FLAME triangle embedding for face tracking
        (default FILE: config/flame_landmark_embedding.npz)
    moshiface flame regions --masks FLAME_masks.pkl [--teeth] [--out FILE]
        FLAME's region masks -> the regions YAML read by moshiface_ros.regions
        (default FILE: config/flame_regions.yaml)

FLAME and its masks come from flame.is.tue.mpg.de (registration); see docs/face-tracking.md.
Both pickles are read through the restricted unpickler (no code in them can run).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    """Adds this group's parsers to ``commands``; each sets its own ``handler``."""
    flame = commands.add_parser("flame", help="prepare files from a FLAME download (embedding, regions)",
                                description="Build the files face tracking and evaluation need from the FLAME "
                                            "model and masks you downloaded (flame.is.tue.mpg.de).")
    sub = flame.add_subparsers(dest="flame_command", required=True, metavar="SUBCOMMAND")

    embedding = sub.add_parser("embedding", help="build the MediaPipe-to-FLAME landmark embedding",
                               description="Align MediaPipe's face landmarks to the FLAME template and store, per "
                                           "landmark, a triangle and barycentric coordinates (.npz).")
    embedding.add_argument("--flame", required=True, metavar="FLAME.pkl",
                           help="FLAME 2020 or 2023 pickle, or 'synthetic' for the built-in stand-in model")
    embedding.add_argument("--out", type=Path, default=None, metavar="FILE",
                           help="output .npz (default: config/flame_landmark_embedding.npz)")
    embedding.set_defaults(handler=cmd_embedding)

    regions = sub.add_parser("regions", help="convert FLAME_masks.pkl into the regions YAML",
                             description="Convert FLAME's region masks (a dict of region name -> vertex indices) "
                                         "into the regions file used by metrics and retargeting.")
    regions.add_argument("--masks", required=True, type=Path, metavar="FLAME_masks.pkl", help="FLAME's masks pickle")
    regions.add_argument("--teeth", action="store_true",
                         help="the regions are for the 5,143-vertex topology with VHAP's teeth")
    regions.add_argument("--out", type=Path, default=None, metavar="FILE",
                         help="output YAML (default: config/flame_regions.yaml)")
    regions.set_defaults(handler=cmd_regions)


def cmd_embedding(args: argparse.Namespace) -> int:
    from ..errors import MoshifaceError
    from ..tracking.embedding import build_embedding
    from ..tracking.models import DEFAULT_EMBEDDING_FILE, SYNTHETIC

    if args.flame == SYNTHETIC:
        from ..flame.synthetic import build_synthetic_flame

        model = build_synthetic_flame(0)
    else:
        from ..flame.model import FlameModel

        model = FlameModel.load(args.flame)
    out = args.out or DEFAULT_EMBEDDING_FILE
    if not out.parent.is_dir():
        raise MoshifaceError(f"the output directory {out.parent} does not exist")
    embedding = build_embedding(model)
    embedding.save(out)
    print(f"landmark embedding: {len(embedding)} landmarks on {model.source} -> {out}")
    return 0


def cmd_regions(args: argparse.Namespace) -> int:
    from collections.abc import Mapping

    import numpy as np

    from ..errors import MoshifaceError
    from ..flame.pickle_loader import load_pickle
    from ..flame.teeth import TEETH_VERTICES
    from ..regions import DEFAULT_REGIONS_FILE, Regions, save_regions

    masks = load_pickle(args.masks)
    if not isinstance(masks, Mapping) or not masks:
        raise MoshifaceError(f"{args.masks} is not FLAME's masks file: expected a dict of region name -> "
                             "vertex indices")
    vertices = 5023 + (TEETH_VERTICES if args.teeth else 0)
    sets = {}
    for name, indices in masks.items():
        try:
            sets[str(name)] = np.asarray(indices, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise MoshifaceError(f"{args.masks}: region {name!r} is not a list of vertex indices") from None
    try:
        regions = Regions(vertices, sets, source=f"{Path(args.masks).name} (FLAME masks)")
    except MoshifaceError as exc:
        raise MoshifaceError(f"{args.masks}: {exc}") from None
    out = args.out or DEFAULT_REGIONS_FILE
    if not out.parent.is_dir():
        raise MoshifaceError(f"the output directory {out.parent} does not exist")
    save_regions(regions, out)
    print(f"regions: {len(regions.sets)} ({', '.join(sorted(regions.sets))}) for {vertices} vertices -> {out}")
    return 0

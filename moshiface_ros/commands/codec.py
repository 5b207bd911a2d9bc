"""``moshiface codec ...``: train, evaluate and use the face codec.

    moshiface codec synth --out DIR                      synthetic dataset (tests, demos)
    moshiface codec train --data DIR --out DIR [--epochs N] [--config paper|paper-causal|small|FILE.json] [--resume]
    moshiface codec eval --checkpoint DIR --data DIR [--split test] [--regions FILE] [--out FILE.json]
    moshiface codec tokenize --checkpoint DIR --input SEQ.npy [--neutral N.npy] --out TOKENS.npy
    moshiface codec decode --checkpoint DIR --tokens TOKENS.npy --out SEQ.npy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..constants import FACE_FPS, FACE_TOKENS, VHAP_VERTICES
from ..errors import MoshifaceError
from ..fileio import atomic_path, atomic_write_text


def register(commands: argparse._SubParsersAction) -> None:
    codec = commands.add_parser("codec", help="train, evaluate and use the face codec (VQ-VAE)",
                                description=f"The face codec: {FACE_FPS} fps FLAME motion <-> {FACE_TOKENS} tokens "
                                            "per 80 ms step.")
    sub = codec.add_subparsers(dest="codec_command", required=True, metavar="ACTION")

    synth = sub.add_parser("synth", help="write a dataset of synthetic FLAME-like motion")
    synth.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset directory to write")
    synth.add_argument("--vertices", type=int, default=VHAP_VERTICES, help="vertices per mesh")
    synth.add_argument("--speakers", type=int, default=2, help="speakers (one face shape each)")
    synth.add_argument("--sequences", type=int, default=10, help="sequences per speaker")
    synth.add_argument("--frames", type=int, default=250, help=f"frames per sequence ({FACE_FPS} fps)")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    synth.set_defaults(handler=cmd_synth)

    train = sub.add_parser("train", help="train a codec on a dataset directory")
    train.add_argument("--data", type=Path, required=True, metavar="DIR",
                       help="dataset directory (moshiface codec synth, or your own; docs/face-codec.md)")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoint directory to write")
    train.add_argument("--config", default="paper",
                       help="paper, paper-causal (streaming), small, small-causal, or a JSON file "
                            "(default: %(default)s)")
    train.add_argument("--epochs", type=int, default=70,
                       help="passes over the training split (default: the paper's %(default)s)")
    train.add_argument("--lr", type=float, default=1e-4, help="learning rate")
    train.add_argument("--batch-size", type=int, default=4, help="windows per optimizer step")
    train.add_argument("--window", type=int, default=32, help="frames per training window")
    train.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--resume", action="store_true", help="continue the training in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("eval", help="MVE, LVE and perplexity of a codec on a dataset split")
    evaluate.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="codec checkpoint directory")
    evaluate.add_argument("--data", type=Path, required=True, metavar="DIR", help="dataset directory")
    evaluate.add_argument("--split", default="test", choices=("train", "validation", "test", "all"),
                          help="which split to measure")
    evaluate.add_argument("--regions", type=Path, default=None,
                          help="regions YAML with the lip set (default: the dataset's, else config/flame_regions.yaml)")
    evaluate.add_argument("--seed", type=int, default=0, help="the split seed used in training")
    evaluate.add_argument("--out", type=Path, default=None, help="JSON file (default: CHECKPOINT/eval-SPLIT.json)")
    evaluate.set_defaults(handler=cmd_eval)

    tokenize = sub.add_parser("tokenize", help="a motion sequence -> tokens (T/2 x 8)")
    tokenize.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="codec checkpoint directory")
    tokenize.add_argument("--input", type=Path, required=True, metavar="SEQ.npy", help=f"(T, V, 3) float, {FACE_FPS} fps")
    tokenize.add_argument("--neutral", type=Path, default=None, metavar="N.npy",
                          help="(V, 3) neutral mesh to subtract (input holds meshes); omit for displacements")
    tokenize.add_argument("--out", type=Path, required=True, metavar="TOKENS.npy", help="(steps, 8) int64 tokens")
    tokenize.set_defaults(handler=cmd_tokenize)

    decode = sub.add_parser("decode", help="tokens (S x 8) -> a motion sequence (2S x V x 3 displacements)")
    decode.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="codec checkpoint directory")
    decode.add_argument("--tokens", type=Path, required=True, metavar="TOKENS.npy", help="(steps, 8) integer tokens")
    decode.add_argument("--out", type=Path, required=True, metavar="SEQ.npy",
                        help="(frames, vertices, 3) float32 displacements in metres")
    decode.set_defaults(handler=cmd_decode)


def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))


def _load_npy(path: Path, what: str):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MoshifaceError(f"cannot read {what} {path}: {exc}") from exc


def _save_npy(path: Path, array) -> None:
    import numpy as np

    try:
        with atomic_path(path) as tmp, tmp.open("wb") as file:  # a file object: np.save adds no suffix
            np.save(file, array)
    except OSError as exc:
        raise MoshifaceError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_synth(args: argparse.Namespace) -> int:
    from ..face_codec.synthetic import write_dataset

    if min(args.vertices, args.speakers, args.sequences, args.frames) < 1:
        raise MoshifaceError("--vertices, --speakers, --sequences and --frames must be positive")
    write_dataset(args.out, vertices=args.vertices, speakers=args.speakers, sequences=args.sequences,
                  frames=args.frames, seed=args.seed)
    print(f"synthetic dataset: {args.out} ({args.speakers * args.sequences} sequences of {args.frames} frames, "
          f"{args.vertices} vertices)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..face_codec.train import TrainOptions, train_codec

    _torch_threads()
    options = TrainOptions(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, window=args.window,
                           seed=args.seed, device=args.device, progress=not args.quiet)
    last = train_codec(args.data, args.out, args.config, options, resume=args.resume)
    val = last["validation"]
    print(f"epoch {last['epoch']}: train loss {last['train']['loss']:.4f}; validation MVE {val['mve']:.3f} x1e-3 m "
          f"(zero motion {val['zero_motion_mve']:.3f} x1e-3 m), perplexity {val['perplexity']:.3f} "
          "(normalised by the codebook size; 1.0: every code used equally)")
    print(f"checkpoint: {args.out} (model.safetensors, config.json, history.json, loss.png)")
    return 0


def _lips(args: argparse.Namespace, dataset):
    from ..regions import DEFAULT_REGIONS_FILE, load_regions

    if args.regions is not None:
        regions, path = load_regions(args.regions), args.regions
    elif dataset.regions_path is not None:
        regions, path = dataset.regions(), dataset.regions_path
    else:
        regions, path = load_regions(DEFAULT_REGIONS_FILE), DEFAULT_REGIONS_FILE
    regions.check_vertices(dataset.vertices, path)
    return regions.get("lips", path)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..face_codec.checkpoint import load_codec
    from ..face_codec.data import SPLITS, FaceDataset
    from ..face_codec.evaluate import evaluate_codec

    _torch_threads()
    codec = load_codec(args.checkpoint)
    dataset = FaceDataset(args.data, seed=args.seed)
    if dataset.vertices != codec.config.vertices:
        raise MoshifaceError(f"{args.data} has {dataset.vertices} vertices, the codec {codec.config.vertices}")
    lips = _lips(args, dataset)
    sequences = [s for name in SPLITS for s in dataset.split(name)] if args.split == "all" else dataset.split(args.split)
    if not sequences:
        raise MoshifaceError(f"the {args.split} split of {args.data} is empty (too few sequences)")
    result = {"checkpoint": str(args.checkpoint), "data": str(args.data), "split": args.split,
              "units": "x1e-3 (MVE: metres, LVE: squared metres)", "lip_vertices": int(len(lips)),
              **evaluate_codec(codec, sequences, lips)}
    out = args.out or args.checkpoint / f"eval-{args.split}.json"
    _save_text(out, json.dumps(result, indent=1) + "\n")
    root = lambda lve: (lve * 1e3) ** 0.5  # x1e-3 m^2 -> the root of the mean squared lip error, in mm
    print(f"{args.split}: MVE {result['mve']:.3f} mm, LVE {result['lve']:.4f} x1e-3 m^2 "
          f"({root(result['lve']):.2f} mm on {len(lips)} lip vertices), perplexity {result['perplexity']:.3f} "
          f"over {result['frames']} frames of {result['sequences']} sequences "
          f"(zero motion: MVE {result['zero_motion_mve']:.3f} mm, LVE {result['zero_motion_lve']:.4f} x1e-3 m^2, "
          f"{root(result['zero_motion_lve']):.2f} mm)")
    print(f"results: {out}")
    return 0


def _save_text(path: Path, text: str) -> None:
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise MoshifaceError(f"cannot write {path}: {exc.strerror or exc}") from exc


def cmd_tokenize(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..face_codec.checkpoint import load_codec

    codec = load_codec(args.checkpoint)
    motion = _load_npy(args.input, "the motion sequence")
    if motion.ndim != 3:
        raise MoshifaceError(f"{args.input}: a motion sequence is (frames, vertices, 3), got {motion.shape}")
    if args.neutral is not None:
        neutral = _load_npy(args.neutral, "the neutral mesh")
        if neutral.shape != motion.shape[1:]:
            raise MoshifaceError(f"{args.neutral}: the neutral mesh is {neutral.shape}, the frames {motion.shape[1:]}")
        motion = motion - neutral[None]
    if not np.issubdtype(motion.dtype, np.floating):
        raise MoshifaceError(f"{args.input}: motion must hold floats, got {motion.dtype}")
    try:
        tokens = codec.encode(torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32))[None])[0]
    except MoshifaceError as exc:
        raise MoshifaceError(f"{args.input}: {exc}") from exc
    _save_npy(args.out, tokens.numpy().astype(np.int64))
    print(f"tokens: {args.out} ({tokens.shape[0]} steps x {tokens.shape[1]})")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..face_codec.checkpoint import load_codec

    codec = load_codec(args.checkpoint)
    tokens = _load_npy(args.tokens, "the tokens")
    if tokens.ndim != 2:
        raise MoshifaceError(f"{args.tokens}: tokens are (steps, {codec.config.n_tokens}), got {tokens.shape}")
    try:
        motion = codec.decode(torch.from_numpy(tokens)[None])[0]
    except MoshifaceError as exc:
        raise MoshifaceError(f"{args.tokens}: {exc}") from exc
    _save_npy(args.out, motion.numpy().astype(np.float32))
    print(f"motion: {args.out} ({motion.shape[0]} frames x {motion.shape[1]} vertices, displacements in metres)")
    return 0

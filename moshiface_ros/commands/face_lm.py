"""``moshiface train``, ``moshiface data prepare`` and ``moshiface eval``: the Moshi-Face
dialogue model (see docs/moshi-face.md); the work is done by ``moshiface_ros.training``.
Heavy imports happen inside the handlers, so that ``moshiface --help`` stays fast."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MoshifaceError


def register(commands: argparse._SubParsersAction) -> None:
    """Adds this group's parsers to ``commands``; each sets its own ``handler``."""
    _register_train(commands)
    _register_data(commands)
    _register_eval(commands)
    _register_quickstart(commands)


def _register_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train", help="train Moshi-Face (stage 1: Face Transformer; stage 2: everything)",
        description="Stage 1 freezes the RQ-Transformer and trains the Face Transformer (lr 5e-4, batch 32, "
                    "500 steps); stage 2 fine-tunes everything (lr 2e-6 / 4e-6 / 1e-5, batch 16, 1,200 steps). "
                    "Run under torchrun on several GPUs to shard the model with FSDP.")
    p.add_argument("--stage", type=int, required=True, choices=(1, 2),
                   help="1: the Face Transformer alone; 2: everything")
    p.add_argument("--data", type=Path, required=True, help="directory written by `moshiface data prepare`")
    p.add_argument("--out", type=Path, required=True, help="output directory (checkpoints, final/, loss.png)")
    p.add_argument("--model", default="tiny",
                   help="starting model: tiny, a checkpoint DIR or hf:OWNER/NAME (stage 2: stage 1's OUT/final)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the stage's)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per optimizer step (default: the stage's)")
    p.add_argument("--micro-batch", type=int, default=4, help="crops per forward pass (gradient accumulation)")
    p.add_argument("--seq-len", type=int, default=250, help="steps per crop (12.5 per second; default: %(default)s)")
    p.add_argument("--lr-temporal", type=float, default=None,
                   help="learning rate of the temporal transformer (default: the stage's, 0 / 2e-6)")
    p.add_argument("--lr-depth", type=float, default=None,
                   help="learning rate of the depth transformer (default: the stage's, 0 / 4e-6)")
    p.add_argument("--lr-face", type=float, default=None,
                   help="learning rate of the Face Transformer (default: the stage's, 5e-4 / 1e-5)")
    p.add_argument("--face-weight", type=float, default=1.0, help="lambda of the face loss (default: %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--eval-every", type=int, default=100, help="validation loss every N steps")
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps")
    p.add_argument("--user-face-dropout", type=float, default=0.0,
                   help="probability of hiding the user's face for a crop (teaches the absent-face case)")
    p.add_argument("--stage1-face-inputs", action="store_true",
                   help="stage 1 also trains the face input embeddings of the temporal transformer")
    p.add_argument("--no-prev-face-tokens", action="store_true",
                   help="ablation: no previous-step face tokens in the Face Transformer's queries (stage 1, or "
                        "stage 2 from plain Moshi)")
    p.add_argument("--face-audio-lookup", action="store_true",
                   help="the Face Transformer also reads the step's audio tokens through its own embeddings (a "
                        "small or random backbone needs it to learn lip sync; off: the paper's e_all)")
    p.add_argument("--face-delay", type=int, default=None,
                   help="steps the face streams lag the text (default 1, the paper's, as Moshi's acoustic audio; "
                        "2: frame t's face also reads frame t + 1's audio, and comes one frame after its audio)")
    p.add_argument("--face-dim", type=int, default=None,
                   help="width of a new Face Transformer (stage 1; tiny's 64, the paper's 1,024); its feed-forward "
                        "keeps the model's ratio to the width")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (less memory, more time)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_train)


def _register_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="prepare dialogue data for Moshi-Face")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = sub.add_parser("prepare", help="tokenize audiovisual dialogues (text, Mimi audio, face codec)",
                       description="Each dialogue directory holds <speaker>.wav and <speaker>.npy for two speakers "
                                   "and transcript.json; see docs/moshi-face.md.")
    p.add_argument("--dialogues", type=Path, required=True, help="a dialogue directory, or a directory of them")
    p.add_argument("--out", type=Path, required=True, help="output directory (tokens/, splits)")
    p.add_argument("--codec", type=Path, required=True, help="face codec checkpoint directory")
    p.add_argument("--model", default="tiny", help="the speech model whose Mimi and tokenizer to use")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="SentencePiece model (default: the model's; a model without one, such as tiny, gets one "
                        "trained on the transcripts); kept as OUT/tokenizer.model and carried by every checkpoint")
    p.add_argument("--tokenizer-pieces", type=int, default=4000,
                   help="the most pieces of a tokenizer trained here (default: %(default)s)")
    p.add_argument("--test-list", type=Path, default=None,
                   help="file of dialogue names held out for test (those the face codec never saw)")
    p.add_argument("--test-count", type=int, default=None, help="draw this many test dialogues instead")
    p.add_argument("--window-steps", type=int, default=250, help="face codec window in steps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--overwrite", action="store_true", help="tokenize again dialogues already done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_data_prepare)
    _register_synth(sub)
    _register_recordings(sub)


def _register_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a corpus of synthetic two-speaker conversations (espeak-ng voices, "
                                     "faces on the synthetic head)",
                       description="Dialogues with turn-taking, overlaps and backchannels, real words spoken by two "
                                   "espeak-ng voices with exact word timing, each face driven by its own voice plus "
                                   "listening nods and smiles answered; in the layout data prepare and codec train "
                                   "read (see docs/moshi-face.md).")
    p.add_argument("--out", type=Path, required=True, help="output directory (dialogues/, manifest.json, test.txt)")
    p.add_argument("--dialogues", type=int, default=40, help="conversations (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each (default: %(default)s)")
    p.add_argument("--vertices", type=int, default=5023,
                   help="face vertices: 5023 the whole head, fewer a fixed subset (default: %(default)s)")
    p.add_argument("--test-count", type=int, default=8, help="held-out dialogues (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_data_synth)


def _tracking_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flame", default="synthetic", metavar="PKL",
                   help="FLAME model to track with (default: synthetic, a stand-in; see docs/face-tracking.md)")
    p.add_argument("--embedding", type=Path, default=None, metavar="NPZ",
                   help="landmark embedding of that FLAME model (moshiface flame embedding)")
    p.add_argument("--teeth", action="store_true", help="add VHAP's teeth (5,143 vertices instead of 5,023)")


def _register_recordings(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="a face video -> 25 fps FLAME motion with head pose (OUT/<name>.npy)",
                       description="Tracks every frame with the package's tracker and resamples to 25 fps on "
                                   "timestamps (30 and 29.97 fps sources alike); the head's rotation and motion "
                                   "are applied to the vertices, as in the paper's meshes.")
    p.add_argument("video", type=Path, help="the face video (any format OpenCV reads)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--name", default=None, help="output name (default: the video's name)")
    _tracking_options(p)
    p.set_defaults(handler=cmd_data_track)
    p = sub.add_parser("import-seamless", help="Meta's Seamless Interaction recordings -> dialogues for prepare",
                       description="Reads V<vendor>_S<session>_I<interaction>_P<participant>.{wav,mp4,json} "
                                   "(anywhere under DIR), pairs the two participants of each interaction, tracks "
                                   "their videos and writes one dialogue directory per interaction.")
    p.add_argument("root", type=Path, metavar="DIR", help="a directory of downloaded Seamless Interaction files")
    p.add_argument("--out", type=Path, required=True, help="output directory of dialogues (for data prepare)")
    p.add_argument("--no-faces", action="store_true", help="do not track the videos (audio and text only)")
    p.add_argument("--overwrite", action="store_true", help="import again interactions already done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _tracking_options(p)
    p.set_defaults(handler=cmd_data_import_seamless)


def _register_eval(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", help="teacher-forced and free-run evaluation of a Moshi-Face model",
                            description="Prints the paper's table and writes it to results.json, with eval.png: "
                                        "lip sync of the generated face (teacher-forced and two models talking) "
                                        "next to the reconstructed face, random tokens and another conversation's "
                                        "face, the share of the gap recovered, MVE and LVE (see docs/moshi-face.md).")
    p.add_argument("--data", type=Path, required=True, help="prepared data (its test split is used)")
    p.add_argument("--model", required=True, help="Moshi-Face checkpoint DIR (or tiny)")
    p.add_argument("--codec", type=Path, required=True, help="face codec checkpoint directory")
    p.add_argument("--out", type=Path, required=True, help="output directory (results.json, eval.png)")
    p.add_argument("--regions", type=Path, default=None, help="vertex regions YAML with 'lips'")
    p.add_argument("--corpus", type=Path, default=None,
                   help="the `data synth` corpus the data came from: also report the user-face effect "
                        "(does the robot smile back, user's face seen vs blanked)")
    p.add_argument("--mode", default="teacher-forced,free-run", help="teacher-forced, free-run, or both (comma)")
    p.add_argument("--max-dialogues", type=int, default=None, help="test dialogues to use (default: all)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per test conversation (default: all)")
    p.add_argument("--free-runs", type=int, default=4, help="conversations of two models talking")
    p.add_argument("--free-run-steps", type=int, default=250, help="steps per free-run conversation")
    p.add_argument("--face-temperature", type=float, default=None,
                   help="face token sampling temperature (default: what `moshiface run` uses, 0.3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_eval)


def _register_quickstart(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("quickstart", help="the research path offline on the CPU: corpus, codec, prepare, "
                                               "stage 1, stage 2, eval, run",
                            description="Runs data synth, codec train, data prepare (tiny model), train --stage 1 "
                                        "and 2, eval and a run of the trained model, each into OUT/<step>; a step "
                                        "already done is skipped (see docs/moshi-face.md, Quick start).")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--dialogues", type=int, default=40, help="conversations of the corpus (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each (default: %(default)s)")
    p.add_argument("--stage1-steps", type=int, default=400, help="default: %(default)s")
    p.add_argument("--stage2-steps", type=int, default=100, help="default: %(default)s")
    p.add_argument("--paper-conditioning", action="store_true",
                   help="the paper's e_all alone: no audio lookup in the Face Transformer (does not learn lip sync "
                        "on the tiny random backbone; see docs/moshi-face.md)")
    p.add_argument("--face-delay", type=int, default=2,
                   help="1: the paper's; 2: frame t's face also reads frame t + 1's audio, and the robot's voice "
                        "waits one step for its face (default: %(default)s)")
    p.add_argument("--face-dim", type=int, default=384,
                   help="width of the Face Transformer (tiny's own is 64; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_quickstart)


def cmd_quickstart(args: argparse.Namespace) -> int:
    import torch

    from ..training.quickstart import QuickstartConfig, run_quickstart

    torch.set_num_threads(1)
    if args.dialogues < 4:
        raise MoshifaceError("--dialogues must be at least 4")
    if args.face_delay < 1:
        raise MoshifaceError(f"--face-delay must be 1 (the paper's) or more, got {args.face_delay}")
    if args.face_dim < 8 or args.face_dim % 4:
        raise MoshifaceError(f"--face-dim must be a multiple of 4 (the Face Transformer's heads), got {args.face_dim}")
    config = QuickstartConfig(out=args.out, dialogues=args.dialogues, seconds=args.seconds,
                              test_count=max(1, args.dialogues // 5), stage1_steps=args.stage1_steps,
                              stage2_steps=args.stage2_steps, paper_conditioning=args.paper_conditioning,
                              face_delay=args.face_delay, face_dim=args.face_dim, seed=args.seed,
                              progress=not args.quiet)
    summary = run_quickstart(config)
    for stage, results in summary["results"].items():
        print(f"{stage}:")
        print(results.get("table_text", ""))
    print("minutes per step: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in summary["timings"].items()))
    print(f"plots: {args.out / 'eval-stage2' / 'eval.png'}; the run: {args.out / 'run'}")
    return 0


def _threads(device: str) -> None:
    import torch

    if device in ("auto", "cpu") and not torch.cuda.is_available():
        torch.set_num_threads(min(torch.get_num_threads(), 4))


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.config import TrainConfig
    from ..training.train import run_training

    face = {"use_prev_tokens": False} if args.no_prev_face_tokens else {}
    if args.face_audio_lookup:
        face["audio_lookup"] = True
    if args.face_delay is not None:
        if args.face_delay < 1:  # the face must come after its frame's acoustic audio (delay 1)
            raise MoshifaceError(f"--face-delay must be 1 (the paper's) or more, got {args.face_delay}")
        face["delay"] = args.face_delay
    if args.face_dim is not None:
        if args.face_dim < 8:
            raise MoshifaceError(f"--face-dim must be at least 8, got {args.face_dim}")
        face["dim"] = args.face_dim
    config = TrainConfig(
        stage=args.stage, data=args.data, out=args.out, model=args.model, steps=args.steps,
        batch_size=args.batch_size, micro_batch=args.micro_batch, seq_len=args.seq_len,
        lr_temporal=args.lr_temporal, lr_depth=args.lr_depth, lr_face=args.lr_face, face_weight=args.face_weight,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        eval_every=args.eval_every, save_every=args.save_every, user_face_dropout=args.user_face_dropout,
        stage1_face_inputs=args.stage1_face_inputs, activation_checkpointing=args.activation_checkpointing,
        device=args.device, seed=args.seed, resume=args.resume, progress=not args.quiet, face=face)
    summary = run_training(config)
    if summary:
        last = summary["last_loss"]
        print(f"stage {summary['stage']}: {summary['steps']} steps on {summary['processes']} process(es); "
              f"last loss total {last['total']:.4f} (text {last['text']:.4f}, audio {last['audio']:.4f}, "
              f"face {last['face']:.4f})")
        print(f"model:   {summary['final']}")
        print(f"losses:  {args.out / 'loss.png'}, {args.out / 'history.jsonl'}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from ..training.data import PrepareConfig, run_prepare

    if args.test_count is not None and args.test_count < 1:
        raise MoshifaceError("--test-count must be at least 1")
    if args.tokenizer_pieces < 8:
        raise MoshifaceError("--tokenizer-pieces must be at least 8")
    summary = run_prepare(PrepareConfig(
        dialogues=args.dialogues, out=args.out, codec=args.codec, model=args.model, tokenizer=args.tokenizer,
        device=args.device, test_list=args.test_list, test_count=args.test_count, seed=args.seed,
        window_steps=args.window_steps, overwrite=args.overwrite, progress=not args.quiet,
        tokenizer_pieces=args.tokenizer_pieces))
    if summary.get("rank", 0) == 0:
        print(f"dialogues: {summary['dialogues']} (train {summary['train']}, valid {summary['valid']}, "
              f"test {summary['test']}); tokens in {args.out / 'tokens'}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from ..training.corpus import SynthConfig, write_corpus

    summary = write_corpus(SynthConfig(out=args.out, dialogues=args.dialogues, seconds=args.seconds,
                                       vertices=args.vertices, test_count=args.test_count, seed=args.seed,
                                       progress=not args.quiet))
    out = args.out
    print(f"conversations: {summary['dialogues']} ({summary['written']} written, {summary['kept']} already there), "
          f"{len(summary['test'])} held out in {out / 'test.txt'}")
    print(f"next: moshiface codec train --data {out} ...; moshiface data prepare --dialogues {out / 'dialogues'} "
          f"--test-list {out / 'test.txt'} ...")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..training.evaluate import EvalConfig, run_eval

    _threads(args.device)
    if args.face_temperature is not None and args.face_temperature < 0:
        raise MoshifaceError(f"--face-temperature must be 0 or more, got {args.face_temperature}")
    modes = tuple(m.strip() for m in args.mode.split(",") if m.strip())
    results = run_eval(EvalConfig(
        data=args.data, model=args.model, codec=args.codec, out=args.out, regions=args.regions, corpus=args.corpus,
        modes=modes,
        max_dialogues=args.max_dialogues, max_steps=args.max_steps, free_runs=args.free_runs,
        free_run_steps=args.free_run_steps, device=args.device, seed=args.seed, progress=not args.quiet,
        face_temperature=args.face_temperature))
    tf, fr = results.get("teacher_forced"), results.get("free_run")
    print(f"face tokens sampled at temperature {results['face_sampling']['temperature']:g}, "
          f"top-k {results['face_sampling']['top_k']}")
    if tf:
        print(f"teacher-forced ({tf['conversations']} conversations), scored against the {', '.join(tf['speech'])}")
    if fr:
        probe = fr["probe"]
        print(f"free-run ({fr['conversations']} conversations) of {fr['steps']} steps, scored against an energy probe "
              f"on the robot's audio tokens (reads held-out speech energy at r = {probe['test_corr'] or 0:.2f})")
    print(results["table_text"])
    print(f"results: {args.out / 'results.json'}, plot: {args.out / 'eval.png'}")
    return 0


def _tracker(args: argparse.Namespace):
    from ..training.motion_track import track_motion, write_motion

    def track(video: Path, out: Path, name: str) -> dict:
        tracked = track_motion(video, args.flame, args.embedding, teeth=args.teeth)
        write_motion(tracked, out, name)
        return tracked.info()

    return track


def cmd_data_track(args: argparse.Namespace) -> int:
    name = args.name or args.video.stem
    info = _tracker(args)(args.video, args.out, name)
    print(f"{args.video}: {info['frames']} frames at {info['fps']} fps from {info['source_fps']} fps, "
          f"face on {info['frames_with_face']}; motion in {args.out / (name + '.npy')}")
    return 0


def cmd_data_import_seamless(args: argparse.Namespace) -> int:
    from ..training.seamless import import_seamless

    summary = import_seamless(args.root, args.out, None if args.no_faces else _tracker(args),
                              overwrite=args.overwrite, progress=not args.quiet)
    for note in summary["skipped"]:
        print(f"skipped {note}")
    print(f"dialogues: {len(summary['imported'])} imported, {summary['kept']} already there; in {args.out} "
          f"(next: moshiface data prepare --dialogues {args.out} ...)")
    return 0

"""``moshiface recover`` and ``moshiface bag reindex``: sessions after a crash.

    moshiface recover SESSION     make a killed run's output directory whole again
    moshiface bag reindex BAG     rebuild only a rosbag2 (MCAP) directory's index

A run killed outright (SIGKILL, power loss) cannot close its files. ``recover`` rebuilds
the bag from every message that reached the file, gives ``robot.wav`` valid sizes, cuts
``text.jsonl`` to the recovered steps and marks ``summary.json`` ``"recovered": true``;
``bag reindex`` does the bag part for any uncompressed rosbag2 MCAP bag (as
``ros2 bag reindex`` would). Both refuse a session another process is still writing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MoshifaceError


def register(commands: argparse._SubParsersAction) -> None:
    """Adds ``recover`` and ``bag reindex``; each sets its own ``handler``."""
    recover = commands.add_parser(
        "recover", help="make a killed run's session readable again",
        description="Rebuild the bag of a `moshiface run` output directory from every message that reached the "
                    "file, give robot.wav valid sizes, cut text.jsonl to the recovered steps and mark "
                    "summary.json as recovered.")
    recover.add_argument("session", type=Path, metavar="SESSION", help="a `moshiface run` output directory")
    recover.set_defaults(handler=cmd_recover)
    bag = commands.add_parser("bag", help="rosbag2 tools that need no ROS")
    tools = bag.add_subparsers(dest="bag_command", required=True, metavar="TOOL")
    reindex = tools.add_parser(
        "reindex", help="rebuild a bag whose writer was killed",
        description="Read an MCAP rosbag2 front to back and write it again with its index, summary and "
                    "metadata.yaml, keeping every message of every complete chunk.")
    reindex.add_argument("bag", type=Path, metavar="BAG", help="a rosbag2 directory (or its .mcap file)")
    reindex.set_defaults(handler=cmd_reindex)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{topic} {count}" for topic, count in counts.items()) or "no messages"


def cmd_recover(args: argparse.Namespace) -> int:
    from ..runner.recovery import recover_session

    if not args.session.is_dir():
        raise MoshifaceError(f"session directory {args.session} does not exist")
    summary = recover_session(args.session)
    files = summary["recovered_files"]
    print(f"recovered: {args.session}: {summary['steps']} steps ({summary['audio_seconds']:.2f} s)")
    print(f"robot.wav: {files['robot_wav_steps']} steps; text.jsonl: {files['text_lines']} lines")
    print(f"bag:       {args.session / 'bag'} ({_counts(summary['messages'])})")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from ..recording.recover import reindex_bag

    if not args.bag.exists():
        raise MoshifaceError(f"bag {args.bag} does not exist")
    counts = reindex_bag(args.bag)
    print(f"reindexed: {args.bag} ({_counts(counts)})")
    return 0

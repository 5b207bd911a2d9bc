"""``moshiface`` commands of this group (see cli.py). Not yet any."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Adds this group's parsers to ``commands``; each sets its own ``handler``."""

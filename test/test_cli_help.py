"""Every option of every ``moshiface`` command explains itself in --help, defaults included,
and ``run --help`` lists its options in the order a user fills them in."""

from __future__ import annotations

import argparse

import pytest

from moshiface_ros.cli import all_parsers, build_parser
from moshiface_ros.constants import PRESENTATION_DELAY_MS

PARSERS = all_parsers(build_parser())


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_the_walk_reaches_every_command():
    progs = {p.prog for p in PARSERS}
    assert {"moshiface run", "moshiface demo", "moshiface codec synth", "moshiface codec train",
            "moshiface train", "moshiface data prepare", "moshiface eval", "moshiface flame regions",
            "moshiface render"} <= progs


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_every_option_has_help_and_says_its_default(parser):
    formatter = parser._get_formatter()
    missing = []
    for action in _options(parser):
        text = formatter._expand_help(action) if action.help else ""
        has_default = action.default not in (None, False, argparse.SUPPRESS) and not action.required
        if not text.strip() or (has_default and "default" not in text):
            missing.append(f"{'/'.join(action.option_strings)}: {text!r}")
    assert not missing, f"{parser.prog}: " + "; ".join(missing)
    assert "%(default)" not in parser.format_help()


def test_codec_synth_help_shows_its_defaults():
    synth = next(p for p in PARSERS if p.prog == "moshiface codec synth")
    text = " ".join(synth.format_help().split())
    for option, default in (("--vertices", 5143), ("--speakers", 2), ("--sequences", 10), ("--frames", 250),
                            ("--seed", 0)):
        after = text.split(option, 2)[2]  # past the usage line, into the option's own entry
        assert f"(default: {default})" in after.split(" --", 1)[0], option


def test_run_help_groups_inputs_face_head_model_sampling_output():
    run = next(p for p in PARSERS if p.prog == "moshiface run")
    text = run.format_help()
    body = text[text.index("options:"):]
    order = ["--user-audio", "--live", "--input-device", "--presentation-delay-ms", "--user-face", "--user-video",
             "--flame", "--embedding", "--head", "--model", "--seed", "--temperature", "--face-top-k", "--out",
             "--overwrite"]
    positions = [body.index(f"  {option} ") for option in order]
    assert positions == sorted(positions), dict(zip(order, positions))
    assert f"(default: {PRESENTATION_DELAY_MS})" in " ".join(body.split())

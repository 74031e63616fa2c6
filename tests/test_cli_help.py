"""Every subcommand's --help: each default shown once, none for required options or None; the reproduce
experiments name their scales alike, say what each means, and take their defaults from the library configs."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from noether_rl.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))


def _option_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """--flag -> its formatted help text (wrapped lines joined; a word the wrapper broke after a hyphen, e.g.
    "small-" / "long", joined back), read from the printed --help."""
    text = parser.format_help().split("options:", 1)[-1]
    blocks = re.split(r"\n  (?=-)", text)
    return {b.split()[0].rstrip(","): re.sub(r"(?<=\w-) (?=\w)", "", " ".join(b.split()))
            for b in blocks if b.strip().startswith("-")}


def test_every_subcommand_is_scanned() -> None:
    names = {" ".join(p) for p in PARSERS}
    assert {"record", "train", "evaluate", "plan", "dream-train", "reproduce pendulum-video",
            "reproduce pendulum-control", "reproduce ramp-video", "reproduce statespace"} <= names


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_help_shows_each_default_once(path: tuple[str, ...]) -> None:
    parser = PARSERS[path]
    helps = _option_help(parser)
    assert helps
    for flag, text in helps.items():
        assert len(re.findall(r"\(default\b", text)) <= 1, f"{' '.join(path)} {flag}: {text}"
        assert "(default: None)" not in text, f"{' '.join(path)} {flag}: {text}"
    for action in parser._actions:
        if action.required and action.option_strings:
            assert "(default" not in helps[action.option_strings[0]], action.option_strings


SCALED = [("reproduce", "pendulum-video"), ("reproduce", "pendulum-control"), ("reproduce", "ramp-video")]


def _library_config(experiment: str) -> type:
    if experiment == "pendulum-video":
        from noether_rl.experiments.pendulum_video import PendulumVideoConfig
        return PendulumVideoConfig
    if experiment == "pendulum-control":
        from noether_rl.experiments.pendulum_control import PendulumControlConfig
        return PendulumControlConfig
    from noether_rl.experiments.ramp_video import RampVideoConfig
    return RampVideoConfig


@pytest.mark.parametrize("path", SCALED, ids=" ".join)
def test_reproduce_scales_are_named_alike_and_explained(path: tuple[str, ...]) -> None:
    parser = PARSERS[path]
    scale = parser._option_string_actions["--scale"]
    assert {"small", "paper"} <= set(scale.choices)  # small = the CPU default, paper = the GPU-sized one
    config = _library_config(path[-1])
    assert scale.default == config.scale == "small"
    text = _option_help(parser)["--scale"]
    for name in scale.choices:
        assert re.search(rf"\b{name} \([^)]*\): \d+x\d+", text), (name, text)  # says what each scale is
    for flag in ("--seeds", "--seed", "--device"):  # the library dataclass is the one source of defaults
        action = parser._option_string_actions.get(flag)
        if action is not None:
            want = getattr(config, action.dest)
            assert action.default == (list(want) if isinstance(want, tuple) else want), flag

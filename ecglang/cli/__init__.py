"""CLI subcommands. Each module defines `register(subparsers)` that adds one subcommand whose
handler is `func(args) -> int` (the exit status). `ecglang.cli.main` discovers them in COMMANDS order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ecglang.core.outputs import check_output_file
from ecglang.errors import ConfigError
from ecglang.report.figure_paths import figure_path

COMMANDS = [
    "inspect", "data", "knowledge", "pretrain", "zero_shot", "evaluate", "models", "convert", "prototypes", "demo",
]  # fmt: skip


def show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Handler of a command group run without an action: print its help on stderr (a usage error's place:
    `--help`, asked for, prints it on stdout), exit status 2."""

    def handler(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def plot_file(text: str) -> str:
    """argparse `type=` of a figure path: its file type and place are checked when the command line is read,
    before the run whose result it draws (`ecglang.report.figure_paths`)."""
    try:
        check_output_file(figure_path(text), "figure")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {value}")
    return value


def count(text: str) -> int:
    """argparse `type=` of a count that must be at least 1 (`--top -1` dropped the last label, `--shard-size 0`
    divided by zero after the dataset table was written)."""
    return _whole_number(text, 1)


def workers(text: str) -> int:
    """argparse `type=` of a number of worker processes: 0 (this process) or more."""
    return _whole_number(text, 0)


def seconds(text: str) -> float:
    """argparse `type=` of a duration: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def print_failures(failures: Sequence[object], note: str = "") -> None:
    """The failed records of a batch command on stderr, one per line, after a count (and `note`)."""
    print(f"\n{len(failures)} record(s) failed{note}:", file=sys.stderr)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)

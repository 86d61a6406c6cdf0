"""CLI subcommands. Each module defines `register(subparsers)` that adds one subcommand whose
handler is `func(args) -> int` (the exit status). `ecglang.cli.main` discovers them in COMMANDS order."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ecglang.errors import ConfigError
from ecglang.report.figure_paths import figure_path

COMMANDS = ["inspect", "data", "knowledge", "pretrain", "zero_shot", "evaluate", "models", "convert", "prototypes"]


def show_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Handler of a command group run without an action: print its help, exit status 2."""

    def handler(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return handler


def plot_file(text: str) -> str:
    """argparse `type=` of a figure path: its file type is checked when the command line is read, before the
    run whose result it draws (`ecglang.report.figure_paths`)."""
    try:
        figure_path(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def print_failures(failures: Sequence[object], note: str = "") -> None:
    """The failed records of a batch command on stderr, one per line, after a count (and `note`)."""
    print(f"\n{len(failures)} record(s) failed{note}:", file=sys.stderr)
    for failure in failures:
        print(f"  {failure}", file=sys.stderr)

"""The `ecglang` console script."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ecglang import __version__
from ecglang.cli import COMMANDS
from ecglang.errors import EcgLangError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="ecglang", description="ECG-language models with zero-shot prompting")
    parser.add_argument("--version", action="version", version=f"ecglang {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ecglang.cli.{name}")
        except ModuleNotFoundError as exc:  # a subcommand not written yet must not break the others
            if exc.name != f"ecglang.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def quiet_libraries() -> None:
    """Command-line runs show our progress bars, not transformers' per-load bars and deprecation noise."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' too) that leaves on the parsed arguments, as `command_parser`, the
    parser of the command they run (e.g. that of `ecglang knowledge search`): a `UsageError` that command's
    handler raises is reported with its usage line and name, as argparse reports its own usage errors."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if getattr(namespace, "command_parser", None) is None:  # the innermost command finishes first: it stays
            namespace.command_parser = self
        return namespace, extras


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_libraries()  # after parsing: `--help` need not import transformers
    # Our own messages at INFO; libraries only when they warn (or everything with -v).
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ecglang").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)  # no command is a usage error: its help goes where errors go
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:  # the command line alone is wrong (flags that exclude each other): as argparse's own
        command = args.command_parser
        command.print_usage(sys.stderr)
        print(f"{command.prog}: error: {exc}", file=sys.stderr)
        return 2
    except EcgLangError as exc:  # typed errors are for users: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # a path the user gave that cannot be written or read (its message names it): one line too
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (builds and trainings resume: see their --help)
        print("\ninterrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, what a shell reports for a tool stopped by Ctrl-C
    except BrokenPipeError:  # `ecglang ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not raise again
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


if __name__ == "__main__":
    sys.exit(main())

"""CLI subcommands. Each module defines `register(subparsers)` that adds one subcommand whose
handler is `func(args) -> int` (the exit status). `ecglang.cli.main` discovers them in COMMANDS order."""

COMMANDS = ["inspect", "data", "knowledge", "pretrain", "zero_shot", "evaluate", "models", "convert", "prototypes"]

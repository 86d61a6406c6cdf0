"""`ecglang pretrain --config CONFIG [--output DIR] [--resume] [key=value ...]`: contrastive ECG–report
pretraining (`ecglang.training.trainer`). Under `accelerate launch $(which ecglang) pretrain ...` it runs on every
process of the launch."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ecglang pretrain` (also `python -m ecglang.training.trainer`, under `accelerate launch`)."""
    parser.add_argument("--config", required=True, help="YAML file, or a name in configs/pretrain/ (e.g. ptbxl-mini)")
    parser.add_argument(
        "--output", default=None, help="output folder (default: output_dir of the config, or runs/<name>)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest complete checkpoint in --output"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides with dotted keys, e.g. train.batch_size=64 data.root=/data/ptbxl schedule.max_steps=10",
    )  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="pretrain an ECG-language model on ECG-report pairs (YAML config; CPU, GPU or multi-GPU)",
        description="Contrastive ECG-report pretraining on accelerate. See docs/TRAINING.md.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ecglang.training.trainer import run as run_training  # torch is imported only when the command runs

    return run_training(args)

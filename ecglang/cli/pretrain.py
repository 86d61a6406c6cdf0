"""`ecglang pretrain --config CONFIG [--output DIR] [--resume] [key=value ...]`: contrastive ECG–report
pretraining (`ecglang.training.trainer`). Under `accelerate launch $(which ecglang) pretrain ...` it runs on every
process of the launch."""

from __future__ import annotations

import argparse

from ecglang.training.config import add_arguments


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

"""Training data path: samples/s the loader delivers from the signal cache against samples/s of a training
step, measured side by side on one thread each (the pretraining layout on 2 cores: one core trains, one
DataLoader worker prepares).

- loader: `ecglang.training.pairs` as the trainer uses it: `PretrainPairs` over a `SignalCache` of jittered
  records (memmap row → augmentation → beats) with `EpochSampler` and `PretrainCollator` (stacking + report
  tokenization), in a `DataLoader` run in this process, so its rate is that of one core;
- step: forward + backward + AdamW step (with gradient clipping) of the default `ecglang-small` model
  (LoRA on the text tower) on one batch the loader produced.

Augmentations are those of `configs/pretrain/ptbxl-mini.yaml`; reports are PTB-XL reports, normalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ecglang.beats.tokenize import BeatConfig
from ecglang.data.cache import SignalCache
from ecglang.encoders.registry import create_model
from ecglang.training.pairs import (
    AugmentConfig,
    EpochSampler,
    PairTable,
    PretrainCollator,
    PretrainPairs,
    ReportTokenizer,
)

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET = 5.0  # loader samples/s over training-step samples/s
AUGMENT = AugmentConfig(lead_mask_p=0.1, amplitude_scale=(0.8, 1.2), time_shift_ms=200, noise_std=0.02)
MODEL_INPUTS = ("beats", "beat_mask", "lead_mask", "rr", "times", "input_ids", "attention_mask", "token_mask",
                "sentence_ids")  # fmt: skip


def bench_dataloader(ctx: BenchContext) -> list[dict[str, Any]]:
    n, batch_size, n_batches = (24, 8, 2) if ctx.quick else (512, 32, 4)
    paths = ctx.record_files(n)
    cache = SignalCache.build([(p.stem, str(p)) for p in paths], ctx.work(f"cache-train-{n}"), progress=False)
    torch.manual_seed(0)
    model = create_model("ecglang-small").train()
    pairs = PairTable(np.arange(n), [p.stem for p in paths], ctx.reports(n))
    dataset = PretrainPairs(cache, pairs, BeatConfig(), AUGMENT, seed=0)
    sampler = EpochSampler(n, seed=0)
    collate = PretrainCollator(ReportTokenizer(model.text_tower))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
    epoch = {"n": 0}

    def load() -> None:
        sampler.set_epoch(epoch["n"])  # a new order (and new augmentations) every call
        epoch["n"] += 1
        batches = iter(loader)
        for _ in range(n_batches):
            next(batches)

    first = next(iter(loader))
    inputs = {k: first[k] for k in MODEL_INPUTS}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

    def step() -> None:
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with ctx.threads(1):
        t_load, t_step = ctx.compare(load, step)
    per_load = n_batches * batch_size
    load_rate, step_rate = per_load / t_load.wall, batch_size / t_step.wall
    ratio = load_rate / step_rate
    ratio_cpu = (per_load / t_load.cpu) / (batch_size / t_step.cpu)
    rows = [
        {
            "case": f"SignalCache of {n} records, batch {batch_size}, 1 thread each",
            "ours": "PretrainPairs + PretrainCollator (DataLoader, in process)",
            "baseline": "train step of ecglang-small (fwd + bwd + AdamW, LoRA text)",
            "ours s": t_load.wall / n_batches,
            "baseline s": t_step.wall,
            "loader samples/s": load_rate,
            "step samples/s": step_rate,
            "ratio": ratio,
            "ratio (CPU)": ratio_cpu,
            "note": f"per batch: loader {1e3 * t_load.wall / n_batches:.0f} ms, step {1e3 * t_step.wall:.0f} ms "
            f"({float(first['beat_mask'].sum(1).float().mean()):.1f} beats per ECG)",
            **ctx.target_columns(f"loader ≥ {TARGET:g}× step", f"{ratio:.1f}× (CPU {ratio_cpu:.1f}×)",
                                 ratio >= TARGET),
        }
    ]  # fmt: skip
    if ctx.quick:
        ctx.note(f"dataloader --quick: {n} records, batch {batch_size}")
    return rows


BENCHMARKS = {"dataloader": bench_dataloader}

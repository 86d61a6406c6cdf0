"""Contrastive ECG–report pretraining on `accelerate` (CPU, one GPU, many GPUs or nodes).

    ecglang pretrain --config configs/pretrain/ptbxl-mini.yaml [--output DIR] [--resume] [key=value ...]
    accelerate launch -m ecglang.training.trainer --config configs/pretrain/mimic-base.yaml [--resume]
    torchrun --nproc_per_node 2 -m ecglang.training.trainer --config ...

`accelerate.Accelerator` does device placement, DDP, mixed precision, gradient accumulation and clipping;
nothing here is home-made except what contrastive learning needs (see `ecglang.training.loop`).
docs/TRAINING.md describes the config file, the output folder and the numbers to expect.

The run is split by job: `config` (the YAML file and its overrides), `setup` (model, data, accelerator,
optimizer), `loop` (the step loop), `validation` (held-out pair metrics), `checkpoints` (save, resume, export)
and `logs` (the output folder's files). `Trainer` ties them together.

Batches. `train.batch_size` is the GLOBAL batch of one optimizer micro-step: the dataloader is prepared with
`split_batches=True`, so each of the N processes gets `batch_size / N` pairs of the same global batch, and the
run sees the same pairs in the same order whatever N is. Gradient accumulation (`grad_accum`) adds micro-steps
per optimizer step; each micro-step is its own contrastive problem (negatives come from that micro-batch only).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState

from ecglang.errors import ConfigError, EcgLangError
from ecglang.training.checkpoints import (
    check_same_data,
    data_fingerprint,
    export_model,
    frozen_sha256,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from ecglang.training.config import SELECTION_METRICS, PretrainConfig, add_arguments, load_config
from ecglang.training.devices import create_accelerator, main_process_value, resolve_local_loss
from ecglang.training.logs import EXCLUDED_CSV, SKIPPED_CSV, RunLogs, flat_dict, resolve_trackers
from ecglang.training.loop import StepLoop
from ecglang.training.objectives import heldout_objective_loss
from ecglang.training.setup import build_training, resolve_data_path
from ecglang.training.validation import evaluate
from ecglang.training.weight_ema import WEIGHT_EMA_FILE

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What `train` returns."""

    output_dir: Path
    steps: int
    best_metric: float | None
    best_step: int | None
    best_dir: Path | None
    final_dir: Path
    stopped_early: bool
    skipped: dict[str, str]
    excluded: list[tuple[str, str]]
    samples_per_s: float
    # (record id, reason) of the records whose files failed to read or preprocess in this run (a subset of
    # `excluded`); with `skipped`, they make `ecglang pretrain` exit 1 once the models are saved
    failed: list[tuple[str, str]] = field(default_factory=list)


class Trainer:
    """One pretraining run: `Trainer(cfg, output_dir, resume).train()` → `TrainResult`.

    Works unchanged under `accelerate launch` / `torchrun` (one process per device) and in a plain process.
    Output folder layout: docs/TRAINING.md."""

    def __init__(self, cfg: PretrainConfig, output_dir: str | os.PathLike | None = None, resume: bool = False):
        self.cfg = cfg
        self.output = Path(output_dir or cfg.output_dir or Path("runs") / cfg.name).expanduser().resolve()
        self.resume = resume
        self.trackers = resolve_trackers(cfg.logging)  # accelerate trackers (tensorboard, wandb, mlflow, ...)

    def train(self) -> TrainResult:
        cfg, output = self.cfg, self.output
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' threads + DataLoader forks deadlock
        # Before anything slow: the one setting a shipped config cannot know.
        if cfg.data.prepared:
            resolve_data_path(cfg.data.prepared, "data.prepared")
        elif not cfg.data.root:
            raise ConfigError(
                f"{cfg.source or 'config'}: data.root is not set; pass data.root=/path/to/the/dataset "
                "(or data.prepared=DIR from `ecglang data build`)"
            )
        else:
            resolve_data_path(cfg.data.root, f"data.root of builder {cfg.data.builder!r}")
        accelerator = self.accelerator = create_accelerator(cfg, output, self.trackers)
        self.main = accelerator.is_main_process
        if not self.main:
            logger.setLevel(logging.WARNING)
        if self.main:
            output.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        ckpt, self.state = resume_point(accelerator, output, cfg, self.resume)
        self.setup = build_training(cfg, output, accelerator)
        if accelerator.process_index > 0:
            # Every process was seeded alike so that all build the same initial weights; from here each draws its own
            # beat masks and dropout (on one stream, every process blanked the same beats of its share of a batch).
            # Process 0 keeps the run's stream, as a 1-process run does. A resumed run restores each process's own.
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, accelerator.process_index]).generate_state(1)[0]))
        self._restore(ckpt)
        self.logs = RunLogs(output, self.main)
        self._open_logs(resumed_step=self.state.step if ckpt is not None else None)
        self.loop = StepLoop(
            cfg,
            self.setup,
            accelerator,
            self.state,
            self.logs,
            self.validate,
            self.save,
            log_tracker=bool(self.trackers),
        )
        self.loop.run(resumed=ckpt is not None)
        return self._finish()

    # ------------------------------------------------------------------------------------------ start
    def _restore(self, ckpt: Path | None) -> None:
        """Load the checkpoint to resume from, after checking that the records and the frozen weights are the same."""
        frozen = frozen_sha256(self.setup.inner_model)
        state, data = self.state, self.setup.data
        splits = {"train": data.train.ids, "val": data.val.ids}
        if data.unpaired is not None:
            splits["unpaired"] = data.unpaired.ids
        if ckpt is not None:
            check_same_data(ckpt, state, splits)
            # the keys first, then the frozen weights (a state written before the hash was kept has none to compare)
            load_checkpoint(
                self.accelerator, self.setup.model, ckpt, self.setup.optimizer, self.setup.scheduler,
                frozen_hashes=(state.frozen_sha256, frozen) if state.frozen_sha256 else None,
            )  # fmt: skip
            self._resume_weight_ema(ckpt)
            logger.info(
                "resumed from %s (step %d, epoch %d, batch %d)", ckpt, state.step, state.epoch, state.batch_in_epoch
            )
        self._note_world_size(ckpt)
        state.frozen_sha256 = frozen
        state.data_sha256, state.data_counts = data_fingerprint(splits), {k: len(v) for k, v in splits.items()}

    def _note_world_size(self, ckpt: Path | None) -> None:
        """Resuming on another number of processes is allowed (the global batch is the config's), but it changed
        what `train.local_loss: auto` computes, and processes without a saved random state start afresh: said."""
        before, now = self.state.num_processes, self.accelerator.num_processes
        if ckpt is not None and before and before != now and self.main:
            local = [resolve_local_loss(self.cfg.train.local_loss, n) for n in (before, now)]
            logger.warning(
                "%s was trained on %d process(es), this run has %d: the global batch stays train.batch_size%s%s",
                ckpt, before, now,
                f"; train.local_loss={self.cfg.train.local_loss} now computes the "
                f"{'local (approximate)' if local[1] else 'exact'} loss, the {'local' if local[0] else 'exact'} one "
                "before" if local[0] != local[1] else "",
                f"; processes {before}-{now - 1} start from fresh random states (none saved for them)" if now > before
                else "",
            )  # fmt: skip
        self.state.num_processes = now

    def _resume_weight_ema(self, ckpt: Path) -> None:
        """`optim.ema_decay` turned on or off on --resume: the average starts now, or is left unused; said."""
        ema, saved, step = self.setup.weight_ema, (ckpt / WEIGHT_EMA_FILE).is_file(), self.state.step
        if ema is not None and not saved:
            ema.restart()  # from the weights just loaded, on every process alike
            if self.main:
                logger.warning(
                    "%s has no weight average (the run was started without optim.ema_decay): the average starts "
                    "from the weights of step %d", ckpt, step,
                )  # fmt: skip
        elif ema is None and saved and self.main:
            best = self.state.best_step
            logger.warning(
                "%s holds a weight average, but optim.ema_decay is not set: from step %d validation, best/ and "
                "final/ use the trained weights%s", ckpt, step,
                "" if best is None else f" (best/ so far, step {best}, holds the average it was selected on)",
            )  # fmt: skip

    def _open_logs(self, resumed_step: int | None) -> None:
        cfg, setup = self.cfg, self.setup
        val_columns = [f"val_{m}" for m in SELECTION_METRICS] + ["val_selection", "val_n_pairs"]
        columns = ["step", "epoch", "split", "loss", *(f"loss_{n}" for n in setup.loss_names), "lr", "grad_norm",
                   "logit_scale", "samples_per_s", "elapsed_s", *val_columns]  # fmt: skip
        if setup.objectives is not None:  # only in runs with ECG-only objectives: other runs keep their columns
            columns += ["contrastive_pairs", "val_objective_loss", "val_n_items"]
        self.logs.open(columns, resumed_step, cfg.to_dict(), setup.data.excluded)
        if self.main:
            t_cfg, acc = cfg.train, self.accelerator
            logger.info("%s", setup.data.description)
            logger.info(
                "%d processes on %s, mixed precision %s; global batch %d × %d accumulation; %d steps (%d per epoch)",
                acc.num_processes, acc.device, acc.mixed_precision, t_cfg.batch_size, t_cfg.grad_accum,
                setup.total_steps, setup.steps_per_epoch,
            )  # fmt: skip
        if self.trackers:
            self.accelerator.init_trackers(cfg.name, config=flat_dict(cfg.to_dict()))

    def _card(self, metrics: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "training_data": self.setup.data.description,
            "notes": (
                f"Pretrained with `ecglang pretrain` (config {cfg.name!r}). Checkpoint selected on held-out "
                + (
                    f"ECGs only: the ECG-only objectives' loss ({', '.join(cfg.objectives.active())})."
                    if cfg.ecg_only
                    else f"ECG–report pairs only: mean of {', '.join(cfg.selection.metrics)}."
                )
                + (
                    f" Its weights are an exponential moving average of the trained ones (optim.ema_decay="
                    f"{cfg.optim.ema_decay:g})."
                    if self.setup.weight_ema is not None
                    else ""
                )
            ),
            "metrics": metrics,
        }

    # ------------------------------------------------------------------------------------ during the loop
    def save(self) -> None:
        """Write a checkpoint of the current step (pruned to `train.keep_last`)."""
        save_checkpoint(self.accelerator, self.output, self.state, self.cfg.train.keep_last)

    def averaged(self) -> AbstractContextManager[None]:
        """The weights that validation and exports use: the weight average when `optim.ema_decay` is set."""
        return self.setup.weight_ema.applied() if self.setup.weight_ema is not None else nullcontext()

    def validate(self) -> bool:
        """Validate (the averaged weights, when on), log, export the best model. True when early stopping says stop."""
        with self.averaged():
            return self._validate()

    def _validate(self) -> bool:
        setup, state, t_cfg, acc = self.setup, self.state, self.cfg.train, self.accelerator
        if len(setup.val_ds) == 0:
            return False
        batch_size = t_cfg.eval_batch_size or t_cfg.batch_size
        if self.cfg.ecg_only:
            metrics: dict[str, Any] = {}
        else:
            metrics, val_skipped = evaluate(
                setup.inner_model, setup.val_ds, acc, batch_size, self.cfg.data.num_workers,
                self.cfg.selection.metrics,
            )  # fmt: skip
            if self.main:
                self.logs.note_skipped(val_skipped)
        if setup.objectives is not None:
            # Every process computes the same figure (fixed masks): the held-out ECGs are few.
            loss, n_items = heldout_objective_loss(setup.objectives, setup.val_ds, batch_size, self.cfg.seed)
            metrics.update(objective_loss=loss, n_items=n_items)
            if self.cfg.ecg_only:  # no reports: select on the objectives' held-out loss (lower is better)
                metrics["selection"] = -loss
        score = float(metrics.get("selection", float("nan")))
        if acc.num_processes > 1:
            # one decision for all: each process computes its own held-out loss, and GPU kernels need not give
            # every process the same float; near a tie one would stop early and leave the others waiting
            score = float(main_process_value(score))
        improved = math.isfinite(score) and (state.best_metric is None or score > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = score, state.step, 0
        else:
            state.evals_since_best += 1
        if self.main:
            self._report_validation(metrics, score, improved)
        acc.wait_for_everyone()
        patience = t_cfg.early_stopping_patience
        return patience is not None and state.evals_since_best >= patience

    def _report_validation(self, metrics: dict[str, Any], score: float, improved: bool) -> None:
        state = self.state
        row = {"step": state.step, "epoch": state.epoch, "split": "val", "elapsed_s": time.time() - self.loop.t_start}
        row.update({f"val_{k}": v for k, v in metrics.items() if not isinstance(v, dict)})
        self.logs.write_row(row)
        self.logs.write_validation(state.step, state.epoch, metrics)
        best = state.best_metric if state.best_metric is not None else float("nan")
        if self.cfg.ecg_only:  # no pairs: the pair metrics do not exist (they printed as nan)
            logger.info(
                "step %d validation: selection %.4f (best %.4f at step %s) | val_objective_loss %.4f on %d ECGs",
                state.step, score, best, state.best_step, metrics["objective_loss"], metrics["n_items"],
            )  # fmt: skip
        else:
            logger.info(
                "step %d validation: selection %.4f (best %.4f at step %s) | e2r R@1 %.3f | zero-shot AUROC %.3f",
                state.step, score, best, state.best_step, metrics.get("ecg2report_recall@1", float("nan")),
                metrics.get("zero_shot_macro_auroc", float("nan")),
            )  # fmt: skip
        if self.trackers:
            self.accelerator.log(
                {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.step
            )
        if improved:
            card = self._card({
                "selected at step": state.step,
                **{f"held-out {k}": round(float(metrics[k]), 4) for k in (*SELECTION_METRICS, "objective_loss")
                   if k in metrics},
                "held-out pairs": metrics.get("n_pairs"),
            })  # fmt: skip
            export_model(self.setup.inner_model, self.output / "best", card, self.setup.processor)

    # --------------------------------------------------------------------------------------------- end
    def _finish(self) -> TrainResult:
        state, output, logs = self.state, self.output, self.logs
        samples_per_s = self.loop.samples_per_s
        if self.main:
            card = self._card({"final step": state.step, "best held-out selection": state.best_metric})
            with self.averaged():
                export_model(self.setup.inner_model, output / "final", card, self.setup.processor)
            if logs.skipped:
                logger.warning(
                    "%d record(s) skipped for lack of beats; listed in %s", len(logs.skipped), output / SKIPPED_CSV
                )
            logs.close()
        self.accelerator.wait_for_everyone()
        if self.trackers:
            self.accelerator.end_training()
        best_dir = output / "best"
        return TrainResult(
            output_dir=output,
            steps=state.step,
            best_metric=state.best_metric,
            best_step=state.best_step,
            best_dir=best_dir if best_dir.is_dir() else None,
            final_dir=output / "final",
            stopped_early=state.stopped_early,
            skipped=dict(logs.skipped),
            excluded=list(self.setup.data.excluded),
            samples_per_s=samples_per_s,
            failed=list(self.setup.data.failed),
        )


def train(cfg: PretrainConfig, output_dir: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """Run (or resume) the pretraining described by `cfg`; returns a `TrainResult` (see `Trainer`)."""
    return Trainer(cfg, output_dir=output_dir, resume=resume).train()


# ================================================================================================= CLI
def run(args: argparse.Namespace) -> int:
    """Handler of `ecglang pretrain`."""
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, output_dir=args.output, resume=args.resume)
    report_result(result)
    # The main process alone lists them and exits 1: torchrun ends the other processes when one fails, which could
    # cut the main one off before it listed them (and the list would be printed once per process)
    main = PartialState().is_main_process
    return 1 if list_unusable(result, say=main) and main else 0


#: Unusable records named one by one at the end of a run; the rest are counted (all are in the CSV files).
LISTED_AT_END = 20


def list_unusable(result: TrainResult, say: bool = True) -> int:
    """Log (when `say`), last, the records of this run whose files could not be read or preprocessed, or that had
    no beats (a batch run goes past bad records but must not end as if there were none); returns their count."""
    bad = [*result.failed, *result.skipped.items()]
    if bad and say:
        where = ", ".join(str(result.output_dir / name) for name, part in ((EXCLUDED_CSV, result.failed),
                          (SKIPPED_CSV, result.skipped)) if part)  # fmt: skip
        shown = "".join(f"\n  {record_id}: {reason}" for record_id, reason in bad[:LISTED_AT_END])
        more = f"\n  ... and {len(bad) - LISTED_AT_END} more" if len(bad) > LISTED_AT_END else ""
        logger.error(
            "%d record(s) could not be used (the models were trained and saved without them; listed in %s):%s%s",
            len(bad), where, shown, more,
        )  # fmt: skip
    return len(bad)


def report_result(result: TrainResult) -> None:
    """Say where the models are; and when no validation gave a selection score, that best/ is missing and why
    (a held-out part of one pair scores NaN: the run used to end with only final/ and no word about it)."""
    if result.best_dir is not None:
        logger.info("best model (step %s, selection %.4f): %s", result.best_step, result.best_metric, result.best_dir)
    else:
        logger.warning(
            "no best/ model: no validation gave a selection score (it needs a held-out part of the pairs with at "
            "least 2 pairs, or in ECG-only runs 1 held-out ECG: data.val_folds or data.val_fraction); final/ holds "
            "the model of the last step"
        )
    logger.info("final model: %s", result.final_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ecglang.training.trainer` (what `accelerate launch` and `torchrun` start)."""
    parser = argparse.ArgumentParser(
        prog="python -m ecglang.training.trainer", description="ECG–report contrastive pretraining"
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except EcgLangError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


__all__ = ["TrainResult", "Trainer", "main", "run", "train"]

if __name__ == "__main__":
    sys.exit(main())

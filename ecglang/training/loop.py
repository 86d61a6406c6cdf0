"""The step loop of pretraining: epochs of batches, optimizer steps, train logging, and the calls to
validation and checkpointing at their intervals.

Distributed. With `loss.local_loss=False` (the default) every process gathers all embeddings
(`ecglang.encoders.loss.gather_with_grad`) and computes the loss of the whole global batch, with gradient flowing
into its own shard only. DDP then AVERAGES parameter gradients over processes, so the towers would get `1/N` of
the global-batch gradient, and the loss module's own parameters (the logit scales, which every process
differentiates through the full matrix) exactly the full one. The loop therefore backpropagates `N × loss` and
divides the loss module's gradients by N after the all-reduce: every parameter then gets exactly the
single-process gradient of the global batch (tests/training/test_multinode.py checks this). With
`local_loss=True` each process computes its own rows only and no rescaling is done (open_clip's arrangement;
its gradient is an approximation of the global one).

ECG-only objectives (`objectives` in the config): the model is `ecglang.training.objectives.PretrainObjectives`,
whose forward gives the contrastive losses of the items with a report and the ECG-only losses of every item;
after each optimizer step its EMA targets follow the ECG tower. A term a micro-batch could not compute (no item
with a report in it) is NaN there and left out of the step's mean. The ECG-only losses are means over each
process's own items, so DDP's average of their gradients is already the global batch's: only the gathered
contrastive part is multiplied by N (`ObjectivesOutput.ddp_loss`), and an ECG-only run is not rescaled at all.

Logged losses: each process's step mean is averaged over processes (the gathered contrastive terms are the same on
every process; the `local_loss=True` terms and the ECG-only objectives are each process's own). `loss` is never
scaled by N.

Resume. The loop skips the batches of the current epoch that were already trained on
(`accelerator.skip_first_batches`); the data order and augmentations are pure functions of (seed, epoch,
index), so a resumed run continues exactly as if it had not been stopped.

Weight average (`optim.ema_decay`): updated after each optimizer step; validation and exports swap it in
(`ecglang.training.weight_ema`), training never sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ecglang.errors import ConfigError
from ecglang.training.checkpoints import TrainerState
from ecglang.training.config import PretrainConfig
from ecglang.training.logs import SKIPPED_CSV, RunLogs
from ecglang.training.objectives import NOT_MODEL_INPUTS
from ecglang.training.setup import TrainingSetup

if TYPE_CHECKING:  # for hints only: accelerate is imported where training starts
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


class StepLoop:
    """Runs optimizer steps until `total_steps` or early stopping.

    `validate()` returns True when early stopping says stop; `save()` writes a checkpoint of `state`."""

    def __init__(
        self,
        cfg: PretrainConfig,
        setup: TrainingSetup,
        accelerator: Accelerator,
        state: TrainerState,
        logs: RunLogs,
        validate: Callable[[], bool],
        save: Callable[[], None],
        log_tracker: bool,
    ) -> None:
        self.cfg, self.setup, self.accelerator, self.state, self.logs = cfg, setup, accelerator, state, logs
        self.validate, self.save, self.log_tracker = validate, save, log_tracker
        self.world = accelerator.num_processes
        self.main = accelerator.is_main_process
        self.loss_module = setup.inner_model.loss_fn
        self.loss_names = setup.loss_names
        self.scale_for_ddp = self.world > 1 and not bool(setup.inner_model.config.loss["local_loss"])
        self.t_start = self.window_t = self.rate_t0 = time.time()
        self.window_samples = self.rate_samples = 0
        self.micro_losses: list[torch.Tensor] = []
        self.grad_norm: float | None = None
        self.objectives = setup.objectives
        self.contrastive = setup.objectives is None or setup.objectives.contrastive
        self.step_pairs = 0  # items the contrastive losses saw in this optimizer step (ECG-only objective runs)

    @property
    def samples_per_s(self) -> float:
        """Training throughput (pairs per second, all processes) since the loop started."""
        return self.rate_samples / max(time.time() - self.rate_t0, 1e-9)

    def run(self, resumed: bool) -> None:
        """Train to the end, then validate and checkpoint the last step unless that was done already."""
        state, total = self.state, self.setup.total_steps
        self.t_start = self.window_t = self.rate_t0 = time.time()
        self.bar = tqdm(
            total=total, initial=state.step, desc=f"pretrain {self.cfg.name}", unit="step",
            disable=not (self.main and self.cfg.logging.progress), dynamic_ncols=True,
        )  # fmt: skip
        self.last_eval_step = self.last_ckpt_step = state.step if resumed else -1
        done = state.step >= total or state.stopped_early
        while not done:
            done = self._epoch()
        self.bar.close()
        if self.last_eval_step != state.step and not state.stopped_early:
            self.validate()
        if self.last_ckpt_step != state.step:
            self.save()

    def _epoch(self) -> bool:
        """Train the rest of `state.epoch`; True when the run is done."""
        state, setup = self.state, self.setup
        setup.sampler.set_epoch(state.epoch)
        setup.train_loader.set_epoch(state.epoch)
        loader = setup.train_loader
        if state.batch_in_epoch:
            loader = self.accelerator.skip_first_batches(setup.train_loader, state.batch_in_epoch)
        batches_seen = batches_trained = 0
        for batch in loader:
            batches_seen += 1
            state.batch_in_epoch += 1
            counts, paired = self._usable_counts(batch)
            if self._too_few(counts, paired):
                logger.warning("epoch %d batch %d: too few usable pairs after skips (%s); batch not trained on",
                               state.epoch, state.batch_in_epoch, counts)  # fmt: skip
                continue
            batches_trained += 1
            self._micro_step(batch, sum(counts))
            if self.accelerator.sync_gradients and self._after_step():
                return True
        if batches_seen and not batches_trained:  # every batch was skipped: the run would never end
            raise ConfigError(
                f"epoch {state.epoch}: no batch had usable pairs ({len(self.logs.skipped)} records without beats, "
                f"listed in {self.logs.output / SKIPPED_CSV}); check the data and processor.beats settings"
            )
        state.epoch += 1
        state.batch_in_epoch = 0
        return False

    def _too_few(self, counts: list[int], paired: list[int]) -> bool:
        """Whether a batch cannot be trained on: without ECG-only objectives every process needs a pair and the
        batch two; with them every process needs an item, and (under several processes, where every process
        must run the text tower) one with a report when the contrastive losses are on."""
        if self.objectives is None:
            return min(counts) == 0 or sum(counts) < 2
        if min(counts) == 0:
            return True
        return self.contrastive and self.world > 1 and min(paired) == 0

    def _usable_counts(self, batch: dict[str, Any]) -> tuple[list[int], list[int]]:
        """Usable items and items with a report of this global batch on each process; notes the skipped records."""
        n_local = len(batch["ids"])
        has_report = batch.get("has_report")
        p_local = n_local if has_report is None else int(has_report.sum())
        if self.world > 1:
            from accelerate.utils import gather_object  # accelerate is slow to import; loaded when training

            info = gather_object([(n_local, p_local, batch["skipped"])])
            counts, paired = [c for c, _, _ in info], [p for _, p, _ in info]
            batch_skipped = [s for _, _, ss in info for s in ss]
        else:
            counts, paired, batch_skipped = [n_local], [p_local], batch["skipped"]
        if self.main and batch_skipped:
            self.logs.note_skipped(batch_skipped)
        return counts, paired

    def _micro_step(self, batch: dict[str, Any], n_global: int) -> None:
        """Forward and backward of one micro-batch; the optimizer steps when accumulation is complete."""
        setup, accelerator, world = self.setup, self.accelerator, self.world
        if self.objectives is None:
            model_inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k not in NOT_MODEL_INPUTS}
        else:  # the objectives wrapper reads has_report: which items the contrastive losses may use
            model_inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "index"}
        with accelerator.accumulate(setup.model):
            out = setup.model(**model_inputs)
            accelerator.backward(self._backward_loss(out))
            if accelerator.sync_gradients:
                if self.scale_for_ddp:  # see the module docstring: logit scales got N × their gradient
                    for p in self.loss_module.parameters():
                        if p.grad is not None:
                            p.grad.div_(world)
                clip = self.cfg.train.clip_grad_norm
                if clip:
                    norm = accelerator.clip_grad_norm_(setup.model.parameters(), clip)
                    self.grad_norm = float(norm) if norm is not None else None
            setup.optimizer.step()
            if accelerator.sync_gradients and self.objectives is not None:
                self.objectives.update_targets()  # EMA targets follow the weights just stepped
            if accelerator.sync_gradients and setup.weight_ema is not None:
                setup.weight_ema.update()
            setup.scheduler.step()
            setup.optimizer.zero_grad(set_to_none=True)
        nan = out.loss.detach().new_tensor(float("nan"))
        terms = [out.losses[n].detach() if n in out.losses else nan for n in self.loss_names]
        self.micro_losses.append(torch.stack([out.loss.detach(), *terms]))
        if self.objectives is not None:
            self.step_pairs += int(out.n_pairs)
        self.window_samples += n_global
        self.rate_samples += n_global
        self.state.samples_seen += n_global

    def _backward_loss(self, out: Any) -> torch.Tensor:
        """What to backpropagate (see the module docstring): `out.loss`, or under DDP with the gathered contrastive
        loss N × its contrastive part (the ECG-only objectives, per-process means, are not rescaled)."""
        if not self.scale_for_ddp:
            return out.loss
        if self.objectives is None:
            return out.loss * self.world
        return out.ddp_loss(self.world)

    def _after_step(self) -> bool:
        """Log one optimizer step; validate and checkpoint at their intervals. True when the run is done."""
        state, total, t_cfg = self.state, self.setup.total_steps, self.cfg.train
        state.step += 1
        mean = torch.stack(self.micro_losses).nanmean(0)
        self.micro_losses = []
        if self.world > 1:  # the local terms (local_loss, ECG-only objectives) differ between processes
            mean = self.accelerator.reduce(mean, reduction="mean")
        values = mean.float().cpu().tolist()
        now = time.time()
        rate = self.window_samples / max(now - self.window_t, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{values[0]:.4f}", samples_s=f"{self.rate_samples / max(now - self.rate_t0, 1e-9):.1f}"
        )
        if self.main and (state.step % self.cfg.logging.log_every == 0 or state.step == total):
            self._log_train_row(values, rate, now)
        self.step_pairs = 0
        stop = False
        if state.step % t_cfg.eval_every == 0 or state.step >= total:
            stop = self.validate()
            self.last_eval_step = state.step
            if stop:
                state.stopped_early = True
                logger.info("early stopping: no improvement in %d validations", state.evals_since_best)
        if state.step % t_cfg.checkpoint_every == 0 or state.step >= total or stop:
            self.save()
            self.last_ckpt_step = state.step
        return state.step >= total or stop

    def _log_train_row(self, values: list[float], rate: float, now: float) -> None:
        state = self.state
        row = {
            "step": state.step, "epoch": state.epoch, "split": "train", "loss": values[0],
            **{f"loss_{n}": v for n, v in zip(self.loss_names, values[1:], strict=True)},
            "lr": self.setup.scheduler.get_last_lr()[0], "grad_norm": self.grad_norm,
            "logit_scale": float(self.loss_module.scale("rhythm").detach()),
            "samples_per_s": rate, "elapsed_s": now - self.t_start,
        }  # fmt: skip
        if self.objectives is not None:
            row["contrastive_pairs"] = self.step_pairs
        self.logs.write_row(row)
        if self.log_tracker:
            self.accelerator.log({f"train/{k}": v for k, v in row.items() if isinstance(v, float)}, step=state.step)
        self.window_samples, self.window_t = 0, now


__all__ = ["StepLoop"]

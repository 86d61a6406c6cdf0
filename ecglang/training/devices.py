"""The processes and devices of a pretraining run: accelerate's `Accelerator` (`create_accelerator`) with its mixed
precision (`mixed_precision_mode` resolves "auto"; fp16 without a GPU is refused before training) and its DDP options
(`allow_unused_parameters`: `find_unused_parameters` for configs whose losses leave trainable parameters without a
gradient), and how the contrastive loss is split over processes (`resolve_local_loss`).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ecglang.errors import ConfigError
from ecglang.training.config import PretrainConfig

if TYPE_CHECKING:  # for hints only: accelerate is imported where training starts
    from accelerate import Accelerator

logger = logging.getLogger(__name__)
T = TypeVar("T")


def mixed_precision_mode(value: str) -> str:
    """accelerate's mixed-precision mode for `train.mixed_precision`. "auto" is what `accelerate launch
    --mixed_precision fp16|bf16` (or its config file) chose, else bf16 on a GPU that has it, fp16 on another GPU and
    "no" on CPU. `accelerate launch` exports ACCELERATE_MIXED_PRECISION=no whenever neither names a mode, so "no"
    there is no choice: it left `auto` fp32 on bf16 GPUs. fp32 on a GPU is `train.mixed_precision: "no"`."""
    if value != "auto":
        return value
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    if launched not in ("", "no"):
        return launched
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def has_accelerator() -> bool:
    """A GPU (or other torch accelerator) is present; without one the run is a CPU run (gloo for >1 process)."""
    probe = getattr(torch, "accelerator", None)
    if probe is not None and hasattr(probe, "is_available"):
        return bool(probe.is_available())
    return torch.cuda.is_available()


def check_fp16_device(value: str, mode: str) -> None:
    """`ConfigError` for fp16 on a machine without a GPU: accelerate trains it in float32 there (logging fp16) and
    validation refuses fp16 on CPU, so the run died at its first validation, before any checkpoint."""
    if mode != "fp16" or has_accelerator():
        return
    source = (
        "train.mixed_precision=fp16"
        if value == "fp16"
        else "ACCELERATE_MIXED_PRECISION=fp16 (from `accelerate launch --mixed_precision` or its config file, which "
        "train.mixed_precision=auto follows)"
    )
    raise ConfigError(
        f'{source} needs a GPU, and this machine has none: on CPU set train.mixed_precision=bf16 or "no" (or auto)'
    )


LOCAL_LOSS_MIN_WORLD = 3  # "auto": from 3 processes on, local rows save ~N/2 of the token loss (docs/TRAINING.md)


def resolve_local_loss(value: bool | str, world: int) -> bool:
    """`train.local_loss` for a run of `world` processes: "auto" is local from `LOCAL_LOSS_MIN_WORLD` processes on
    (with 2 the local rows cost as much as the whole batch, so the exact gradient is kept)."""
    if value == "auto":
        return world >= LOCAL_LOSS_MIN_WORLD
    return bool(value)


def create_accelerator(cfg: PretrainConfig, output: Path, trackers: list[str] | None = None) -> Any:
    """The `accelerate.Accelerator` of the run, with the process-wide torch settings of `cfg.train`."""
    # accelerate is slow to import; loaded when a run starts
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    t_cfg = cfg.train
    mode = mixed_precision_mode(t_cfg.mixed_precision)
    check_fp16_device(t_cfg.mixed_precision, mode)
    accelerator = Accelerator(
        mixed_precision=mode,
        gradient_accumulation_steps=t_cfg.grad_accum,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(output / "tensorboard")),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        kwargs_handlers=[
            # `allow_unused_parameters` turns the option on for configs that need it, once the model is built
            DistributedDataParallelKwargs(find_unused_parameters=cfg.model.find_unused_parameters),
            # The work before the first step (table, cache check) must not hit the 10-minute NCCL default.
            InitProcessGroupKwargs(timeout=timedelta(seconds=int(t_cfg.process_group_timeout_s))),
        ],
        # Without it accelerate treats `torchrun` processes on a machine without GPU as independent runs.
        cpu=not has_accelerator(),
    )
    world = accelerator.num_processes
    if t_cfg.batch_size % world:
        raise ConfigError(f"train.batch_size={t_cfg.batch_size} must be a multiple of the {world} processes")
    if t_cfg.threads:
        torch.set_num_threads(int(t_cfg.threads))
    if t_cfg.deterministic and accelerator.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return accelerator


def main_process_value(value: T) -> T:
    """The main process's `value` (any picklable object), on every process; every process must call it."""
    from accelerate.utils import broadcast_object_list  # accelerate is slow to import; loaded when a run starts

    box = [value]
    broadcast_object_list(box)
    return box[0]


def unused_parameters_reason(cfg: PretrainConfig, model: Any) -> str | None:
    """Why the losses of `cfg` leave some trainable parameters of `model` (an `EcgLangModel`) without a gradient;
    None when they reach every one. DDP waits for a gradient of each parameter, so without `find_unused_parameters`
    such a run fails at its second step.

    - ECG-only objectives train the tower's beat tokens: its whole-ECG pooling is never used (nor the lead pooling
      by masked beats); the text side is frozen (`freeze_all_but_ecg_tower`).
    - A contrastive loss weighted 0 is not computed, but the model still builds its projections (and the rhythm
      loss's logit scale; rhythm also uses the whole-ECG pooling).

    Read from the config rather than found by a trial step (which would draw from the run's random streams). It can
    fire where nothing is left out (a tower with `pooling: mean`, whose pooling has no weights): DDP then searches
    the graph at each step for nothing, a small cost."""
    if cfg.ecg_only:
        return "the ECG-only objectives (no contrastive loss) leave the tower's whole-ECG pooling unused"
    possible = ["rhythm", "beat", "token"] if model.config.is_beat_model else ["rhythm"]
    off = [name for name in possible if name not in model.loss_fn.weights]
    if off:
        return f"the contrastive loss weight of {', '.join(off)} is 0, so its projections get no gradient"
    return None


def allow_unused_parameters(accelerator: Accelerator, cfg: PretrainConfig, model: Any) -> None:
    """Before `accelerator.prepare` wraps the model: DDP's `find_unused_parameters` on when
    `unused_parameters_reason` names a reason (said once, in runs of several processes, where DDP is used)."""
    reason = unused_parameters_reason(cfg, model)
    handler = accelerator.ddp_handler  # the DistributedDataParallelKwargs of `create_accelerator`
    if reason is None or handler is None or handler.find_unused_parameters:
        return
    handler.find_unused_parameters = True
    if accelerator.num_processes > 1 and accelerator.is_main_process:
        logger.info("DDP find_unused_parameters is on: %s (model.find_unused_parameters)", reason)


__all__ = [
    "LOCAL_LOSS_MIN_WORLD",
    "allow_unused_parameters",
    "check_fp16_device",
    "create_accelerator",
    "has_accelerator",
    "main_process_value",
    "mixed_precision_mode",
    "resolve_local_loss",
    "unused_parameters_reason",
]

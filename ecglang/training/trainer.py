"""Contrastive ECG–report pretraining on `accelerate` (CPU, one GPU, many GPUs or nodes).

    ecglang pretrain --config configs/pretrain/ptbxl-mini.yaml [--output DIR] [--resume] [key=value ...]
    accelerate launch -m ecglang.training.trainer --config configs/pretrain/mimic-base.yaml [--resume]
    torchrun --nproc_per_node 2 -m ecglang.training.trainer --config ...

`accelerate.Accelerator` does device placement, DDP, mixed precision, gradient accumulation and
clipping; nothing here is home-made except what contrastive learning needs (see "Distributed" below).
docs/TRAINING.md describes the config file, the output folder and the numbers to expect.

Batches. `train.batch_size` is the GLOBAL batch of one optimizer micro-step: the dataloader is prepared
with `split_batches=True`, so each of the N processes gets `batch_size / N` pairs of the same global batch,
and the run sees the same pairs in the same order whatever N is. Gradient accumulation (`grad_accum`)
adds micro-steps per optimizer step; each micro-step is its own contrastive problem (negatives come from
that micro-batch only).

Distributed. With `loss.local_loss=False` (the default) every process gathers all embeddings
(`ecglang.encoders.loss.gather_with_grad`) and computes the loss of the whole global batch, with gradient flowing
into its own shard only. DDP then AVERAGES parameter gradients over processes, so the towers would get
`1/N` of the global-batch gradient, and the loss module's own parameters (the logit scales, which every
process differentiates through the full matrix) exactly the full one. The trainer therefore backpropagates
`N × loss` and divides the loss module's gradients by N after the all-reduce: every parameter then gets
exactly the single-process gradient of the global batch (tests/test_distributed.py checks this). With
`local_loss=True` each process computes its own rows only and no rescaling is done (open_clip's
arrangement; its gradient is an approximation of the global one).

Checkpoints. `checkpoint-<step>/` holds `accelerator.save_state` (the model's trainable weights, optimiser,
scheduler, RNG states of every process; the frozen pretrained text weights are rebuilt on resume and
checked against a hash), `trainer_state.json` (step, epoch, batches done in the epoch, best metric, data seed,
early-stopping counter) and `checksums.json` (sha256 of every file). It is written as
`checkpoint-<step>.tmp/` and renamed with `os.replace` only when complete, so a kill never leaves a
half-written checkpoint under the final name; `.tmp` folders are ignored (and removed) on resume, and a
checksum mismatch raises `ModelLoadError` naming the file. `--resume` restores everything and skips the
batches of the current epoch that were already trained on (`accelerator.skip_first_batches`); the data
order and augmentations are pure functions of (seed, epoch, index), so the run continues exactly as if it
had not been stopped.

Validation. Held-out ECG–report pairs only: ECG↔report retrieval recall@1/5/10 in both directions, and
zero-shot macro AUROC of the held-out ECGs against the label names of `ecglang.text.labels`, whose
ground truth is read from those pairs' own reports. The selection metric (checkpoint choice and early
stopping) is the mean of `selection.metrics` (default: ECG→report recall@1 and the zero-shot AUROC).
No downstream label set is ever read: the validation data holds ECGs and report texts, nothing else.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ecglang.core.checksums import verify_checksums, write_checksums
from ecglang.core.paths import repo_root, resource_dir
from ecglang.errors import ConfigError, EcgLangError, ModelLoadError
from ecglang.evaluation.metrics import macro_auroc, per_class_auroc
from ecglang.text.labels import report_label_matrix, report_label_names
from ecglang.training.pairs import (
    AugmentConfig,
    EpochSampler,
    PairTable,
    PretrainCollator,
    PretrainPairs,
    ReportTokenizer,
    heldout_split,
)

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
METRICS_CSV = "metrics.csv"
VALIDATION_LOG = "validation.jsonl"
SKIPPED_CSV = "skipped_records.csv"
EXCLUDED_CSV = "excluded_records.csv"
RESOLVED_CONFIG = "config.yaml"

# Metrics a selection may combine: all computed from held-out ECG–report pairs.
SELECTION_METRICS = (
    "ecg2report_recall@1",
    "ecg2report_recall@5",
    "ecg2report_recall@10",
    "report2ecg_recall@1",
    "report2ecg_recall@5",
    "report2ecg_recall@10",
    "zero_shot_macro_auroc",
)
RECALL_K = (1, 5, 10)


# =============================================================================================== config
@dataclass
class DataSection:
    """Where the pairs come from and which of them are held out (see docs/TRAINING.md)."""

    builder: str = "ptbxl"  # "ptbxl" (ecglang.data.builders.build_ptbxl) | "mimic_ecg" (build_mimic_ecg)
    root: str | None = None  # dataset folder; relative paths: current folder first, then the repository root
    builder_args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the builder
    cache_dir: str | None = None  # signal cache folder; default <output>/signal-cache
    limit: int | None = None  # use only the first N builder rows (smoke tests)
    val_folds: list[int] | None = None  # held-out selection by the dataset's fold column ...
    val_fraction: float | None = None  # ... or a seeded fraction of the groups in val_group
    val_group: str | None = None  # e.g. patient_id (PTB-XL), subject_id (MIMIC): no patient on both sides
    val_max: int | None = None  # cap on held-out pairs (a seeded choice; the rest is not trained on)
    num_workers: int = 0  # DataLoader worker processes (beat tokenization and report tokenization run there)
    cache_workers: int = 0  # processes that build the signal cache


@dataclass
class ModelSection:
    """Which model to train: a name from configs/model (ecglang.encoders.registry), a .json config, or a checkpoint."""

    name: str = "ecglang-small"
    overrides: dict[str, Any] = field(default_factory=dict)  # merged into the model config (nested dicts)
    text_dropout: float | None = None  # sets p of every Dropout inside the text transformer (None: keep)
    find_unused_parameters: bool = False  # DDP option, for configs that leave a head unused


@dataclass
class OptimSection:
    lr: float = 3e-4
    weight_decay: float = 0.05  # not applied to biases, norms and logit scales (parameters with ndim < 2)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8


@dataclass
class ScheduleSection:
    warmup_steps: int = 0
    max_steps: int | None = None  # optimizer steps; takes precedence over epochs
    epochs: float | None = None  # when max_steps is null: epochs × optimizer steps per epoch


@dataclass
class TrainSection:
    batch_size: int = 32  # GLOBAL pairs per micro-step (all processes together)
    grad_accum: int = 1
    clip_grad_norm: float | None = 1.0
    mixed_precision: str = "auto"  # auto (bf16 on GPUs that have it, else fp16 on GPU; no on CPU) | no | fp16 | bf16
    eval_every: int = 100  # optimizer steps between validations (and one at the end)
    eval_batch_size: int | None = None  # default: batch_size
    checkpoint_every: int = 100  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 2  # checkpoints kept
    early_stopping_patience: int | None = None  # validations without improvement before stopping
    deterministic: bool = True  # torch.use_deterministic_algorithms(True, warn_only=True) on CPU
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)


@dataclass
class SelectionSection:
    """Checkpoint selection / early stopping: the mean of these held-out pair metrics (NaNs ignored)."""

    metrics: list[str] = field(default_factory=lambda: ["ecg2report_recall@1", "zero_shot_macro_auroc"])


@dataclass
class LoggingSection:
    log_every: int = 1  # optimizer steps between rows of metrics.csv
    tensorboard: bool = True  # through accelerate's tracker, when the tensorboard package is importable
    progress: bool = True  # tqdm bar on the main process


@dataclass
class PretrainConfig:
    """A whole pretraining run (YAML file; see configs/pretrain/*.yaml and docs/TRAINING.md)."""

    name: str = "pretrain"
    seed: int = 0
    output_dir: str | None = None  # default runs/<name>
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    selection: SelectionSection = field(default_factory=SelectionSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    source: str | None = None  # the YAML file it was read from (not a config key)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            if f.name == "source":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, AugmentConfig) else (asdict(v) if is_dataclass(v) else v)
        return json.loads(json.dumps(out))  # tuples → lists, a plain YAML-able tree

    def validate(self) -> None:
        t, s = self.train, self.schedule
        where = self.source or "config"
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "keep_last"):
            v = getattr(t, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where}: train.{name} must be an int >= 1, got {v!r}")
        if t.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"{where}: train.mixed_precision must be auto|no|fp16|bf16, got {t.mixed_precision!r}")
        if s.max_steps is None and s.epochs is None:
            raise ConfigError(f"{where}: set schedule.max_steps or schedule.epochs")
        if s.max_steps is not None and int(s.max_steps) < 1:
            raise ConfigError(f"{where}: schedule.max_steps must be >= 1, got {s.max_steps!r}")
        if s.epochs is not None and float(s.epochs) <= 0:
            raise ConfigError(f"{where}: schedule.epochs must be > 0, got {s.epochs!r}")
        if int(s.warmup_steps) < 0:
            raise ConfigError(f"{where}: schedule.warmup_steps must be >= 0")
        if self.optim.lr <= 0:
            raise ConfigError(f"{where}: optim.lr must be > 0, got {self.optim.lr!r}")
        if len(self.optim.betas) != 2:
            raise ConfigError(f"{where}: optim.betas must be [beta1, beta2]")
        unknown = [m for m in self.selection.metrics if m not in SELECTION_METRICS]
        if unknown or not self.selection.metrics:
            raise ConfigError(
                f"{where}: selection.metrics {unknown or '[]'} not allowed; choose from held-out pair metrics "
                f"{list(SELECTION_METRICS)}"
            )
        if self.data.builder not in BUILDERS:
            raise ConfigError(f"{where}: data.builder must be one of {sorted(BUILDERS)}, got {self.data.builder!r}")
        if self.data.num_workers < 0 or self.data.cache_workers < 0:
            raise ConfigError(f"{where}: data.num_workers and data.cache_workers must be >= 0")
        if (self.data.val_folds is None) == (self.data.val_fraction is None):
            raise ConfigError(f"{where}: set exactly one of data.val_folds and data.val_fraction")
        if self.logging.log_every < 1:
            raise ConfigError(f"{where}: logging.log_every must be >= 1")


_SECTIONS = {
    "data": DataSection,
    "model": ModelSection,
    "optim": OptimSection,
    "schedule": ScheduleSection,
    "train": TrainSection,
    "selection": SelectionSection,
    "logging": LoggingSection,
}


def _section(cls: type, values: Any, name: str, where: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: section {name!r} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in section {name!r}; known: {sorted(known)}")
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: invalid section {name!r}: {exc}") from exc
    return obj


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(items: Sequence[str]) -> list[tuple[str, Any]]:
    """`["train.batch_size=64", "model.overrides.ecg_tower.d_model=96"]` → `[(key, value)]` (values parsed as YAML)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.batch_size=64)")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        out.append((key.strip(), value))
    return out


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML file path, or the name of a shipped config (`configs/pretrain/<name>.yaml`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.suffix == "" and len(path.parts) == 1:
        try:
            shipped = resource_dir("configs") / "pretrain" / f"{path.name}.yaml"
        except FileNotFoundError:
            shipped = None
        if shipped is not None and shipped.is_file():
            return shipped
    raise ConfigError(f"{path}: pretraining config not found (a YAML file, or a name in configs/pretrain/)")


def config_from_dict(tree: Mapping[str, Any], source: str | None = None) -> PretrainConfig:
    """Build and validate a `PretrainConfig` from a nested dict (unknown keys raise `ConfigError`)."""
    where = source or "config"
    tree = dict(tree)
    known = {f.name for f in fields(PretrainConfig)} - {"source"}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {unknown}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {k: v for k, v in tree.items() if k in ("name", "seed", "output_dir")}
    for name, cls in _SECTIONS.items():
        kwargs[name] = _section(cls, tree.get(name), name, where)
    try:
        kwargs["augment"] = AugmentConfig.from_dict(tree.get("augment"))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    cfg = PretrainConfig(**kwargs, source=source)
    cfg.optim.betas = tuple(float(b) for b in cfg.optim.betas)  # type: ignore[assignment]
    cfg.validate()
    return cfg


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read a pretraining YAML config and apply `key=value` overrides (dotted keys, YAML values)."""
    path = resolve_config_path(name_or_path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a pretraining config must be a mapping at the top level")
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    return config_from_dict(tree, source=str(path))


def _resolve_path(value: str, what: str) -> Path:
    """Relative paths: the current folder first, then the repository root (configs shipped with the repo
    name `../shared/data/...` relative to it)."""
    path = Path(value).expanduser()
    if path.exists():
        return path.resolve()
    repo = (repo_root() / path).resolve()
    if not path.is_absolute() and repo.exists():
        return repo
    where = "" if path.is_absolute() else f" (relative paths are tried from {Path.cwd()} and {repo_root()})"
    raise ConfigError(f"{path}: {what} not found{where}")


# ================================================================================================ model
def build_model(section: ModelSection) -> Any:
    """Create the model to pretrain: `ecglang.encoders.registry.create_model(name, **overrides)` (weights of the ECG
    tower drawn from the current torch seed), or `from_pretrained` when `name` is a checkpoint folder."""
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.encoders.registry import create_model

    path = Path(section.name).expanduser()
    if path.is_dir():  # continue from a checkpoint
        if section.overrides:
            raise ConfigError(f"{path}: model.overrides cannot change a pretrained checkpoint's architecture")
        model = EcgLangModel.from_pretrained(path)
    else:
        model = create_model(section.name, **(section.overrides or {}))
    if section.text_dropout is not None:
        p = float(section.text_dropout)
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"model.text_dropout must be in [0, 1), got {p!r}")
        for module in model.text_tower.base_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = p
        # transformers' attention reads the dropout probability from the config or the module
        for module in model.text_tower.base_model.modules():
            if hasattr(module, "dropout_prob"):
                module.dropout_prob = p
            if hasattr(module, "attention_dropout") and isinstance(module.attention_dropout, float):
                module.attention_dropout = p
        model.text_tower.base_model.config.attention_probs_dropout_prob = p
        model.text_tower.base_model.config.hidden_dropout_prob = p
    model.train()
    return model


def _processor(model: Any) -> Any:
    """The model's `EcgProcessor` (its preprocessing contract): the cache and the beats follow it."""
    if model.config.processor is None:
        raise ConfigError("the model has no processor contract (config.processor is None); pretraining needs one")
    return model.get_processor()


# ================================================================================================= data
def _build_ptbxl(root: Path, **kwargs: Any) -> Any:
    from ecglang.data.builders import build_ptbxl

    return build_ptbxl(root, **kwargs)


def _build_mimic(root: Path, **kwargs: Any) -> Any:
    from ecglang.data.builders import build_mimic_ecg

    return build_mimic_ecg(root, **kwargs)


BUILDERS = {"ptbxl": _build_ptbxl, "mimic_ecg": _build_mimic}


@dataclass
class PretrainData:
    """Everything the loop needs about the data."""

    cache: Any
    train: PairTable
    val: PairTable
    excluded: list[tuple[str, str]]  # (record id, reason): left out before training
    description: str


def prepare_data(cfg: PretrainConfig, model: Any, output: Path, accelerator: Any) -> PretrainData:
    """Build the pairs, the signal cache (main process first) and the held-out split."""
    from ecglang.data.cache import SignalCache

    d = cfg.data
    if not d.root:
        raise ConfigError(f"{cfg.source or 'config'}: data.root is not set; pass data.root=/path/to/the/dataset")
    root = _resolve_path(d.root, f"data.root of builder {d.builder!r}")
    main = accelerator.is_main_process
    builder_kwargs = {"progress": main and cfg.logging.progress, **(d.builder_args or {})}
    result = BUILDERS[d.builder](root, **builder_kwargs)
    dataset, report = result
    excluded = [(str(f.record_id), f.reason) for f in report.failures]
    if d.limit is not None:
        dataset = dataset.select(range(min(int(d.limit), len(dataset))))
    train_idx, val_idx = heldout_split(
        dataset, d.val_folds, d.val_fraction, d.val_group, seed=cfg.seed, val_max=d.val_max
    )
    keep = np.zeros(len(dataset), dtype=bool)
    keep[train_idx] = keep[val_idx] = True
    n_capped = int((~keep).sum())
    # Only what pretraining may see leaves this function: ids, paths (for the cache) and report texts.
    ids = [str(x) for x in dataset["id"]]
    reports = [str(x) for x in dataset["report"]]
    cache_dir = Path(d.cache_dir).expanduser() if d.cache_dir else output / "signal-cache"
    preprocess_cfg = _processor(model).preprocess_config
    with accelerator.main_process_first():
        if main:
            cache = SignalCache.build(
                list(zip(ids, [str(p) for p in dataset["path"]], strict=True)), cache_dir, preprocess_cfg,
                num_workers=d.cache_workers, seed=cfg.seed, progress=cfg.logging.progress,
            )  # fmt: skip
        else:
            cache = SignalCache.open(cache_dir)
    status_ok = np.zeros(len(ids), dtype=bool)
    status_ok[cache.ok_rows] = True
    failed_reason = dict(zip(cache.failures["id"].astype(str), cache.failures["reason"], strict=True))

    def table(index: np.ndarray, split: str) -> PairTable:
        rows = []
        for i in index:
            if not reports[i].strip():
                excluded.append((ids[i], f"{split}: empty report"))
            elif not status_ok[i]:
                excluded.append((ids[i], f"{split}: signal cache failed: {failed_reason.get(ids[i], '?')}"))
            else:
                rows.append(int(i))
        rows_arr = np.asarray(rows, dtype=np.int64)
        return PairTable(rows_arr, [ids[i] for i in rows], [reports[i] for i in rows])

    train, val = table(train_idx, "train"), table(val_idx, "val")
    if len(val) < 2 and accelerator.is_main_process:
        logger.warning("%d held-out pairs: no validation, no checkpoint selection (best/ is not written)", len(val))
    if len(train) == 0:
        raise ConfigError(f"{root}: no usable training pairs (see {EXCLUDED_CSV})")
    how = f"folds {d.val_folds}" if d.val_folds is not None else f"{d.val_fraction:.0%} of {d.val_group or 'rows'}"
    description = (
        f"{len(train)} ECG–report pairs of {d.builder} ({root.name}) for training, {len(val)} held out "
        f"({how}); {len(excluded)} records left out (listed in {EXCLUDED_CSV})"
        + (f", {n_capped} beyond data.val_max unused" if n_capped else "")
    )
    return PretrainData(cache=cache, train=train, val=val, excluded=excluded, description=description)


# ========================================================================================== validation
def _group_ids(reports: Sequence[str]) -> np.ndarray:
    """Identical report texts share a group id: retrieving any of them counts as correct."""
    lookup: dict[str, int] = {}
    return np.array([lookup.setdefault(r, len(lookup)) for r in reports], dtype=np.int64)


def grouped_recall(sim: np.ndarray, query_group: np.ndarray, item_group: np.ndarray, ks: Sequence[int]) -> dict:
    """Recall@k where an item is correct when it belongs to the query's group.

    Held-out reports repeat ("sinus rhythm. normal ecg." is a third of PTB-XL): identical texts have
    identical embeddings, so a per-pair recall would count them as errors. Here items of the same text
    are one correct answer; the rank is 1 + the number of wrong items that score at least as high as the
    best correct one (ties counted pessimistically, as `ecglang.evaluation.metrics.retrieval_recall`)."""
    correct = query_group[:, None] == item_group[None, :]
    best = np.where(correct, sim, -np.inf).max(axis=1)
    rank = 1 + (np.where(correct, -np.inf, sim) >= best[:, None]).sum(axis=1)
    return {int(k): float(np.mean(rank <= k)) for k in ks}


def pair_metrics(
    ecg_embeds: np.ndarray,
    text_embeds: np.ndarray,
    reports: Sequence[str],
    label_embeds: np.ndarray,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """Validation figures of held-out pairs (row i of `ecg_embeds` and `text_embeds` is pair i).

    - `ecg2report_recall@k` / `report2ecg_recall@k`: retrieval among the held-out pairs (`grouped_recall`:
      identical report texts are one answer; ECG→report ranks the distinct texts).
    - `zero_shot_macro_auroc`: cosine of each ECG with each label name's text embedding, against the labels
      read from that pair's own report (`ecglang.text.labels`); macro over labels with both classes.
    Returns floats plus `per_label_auroc` and `skipped_labels` (dicts) and counts."""
    e = ecg_embeds / np.clip(np.linalg.norm(ecg_embeds, axis=1, keepdims=True), 1e-12, None)
    t = text_embeds / np.clip(np.linalg.norm(text_embeds, axis=1, keepdims=True), 1e-12, None)
    n = len(reports)
    if e.shape[0] != n or t.shape[0] != n:
        raise ConfigError(f"pair_metrics: {e.shape[0]} ECGs, {t.shape[0]} reports, {n} report texts")
    groups = _group_ids(reports)
    _, first = np.unique(groups, return_index=True)  # one column per distinct report text
    sim = e @ t.T
    out: dict[str, Any] = {"n_pairs": n, "n_distinct_reports": len(first)}
    e2r = grouped_recall(sim[:, first], groups, groups[first], RECALL_K)
    r2e = grouped_recall(sim.T, groups, groups, RECALL_K)
    for k in RECALL_K:
        out[f"ecg2report_recall@{k}"] = e2r[k]
        out[f"report2ecg_recall@{k}"] = r2e[k]
    y = report_label_matrix(reports, label_names)
    lab = label_embeds / np.clip(np.linalg.norm(label_embeds, axis=1, keepdims=True), 1e-12, None)
    scores = e @ lab.T
    per_label, skipped = per_class_auroc(y, scores, list(label_names))
    out["zero_shot_macro_auroc"] = macro_auroc(y, scores, list(label_names)) if per_label else float("nan")
    out["n_labels_scored"] = len(per_label)
    out["per_label_auroc"] = per_label
    out["skipped_labels"] = skipped
    return out


def selection_score(metrics: Mapping[str, Any], names: Sequence[str]) -> float:
    """Mean of the named metrics, NaNs ignored; NaN when none is defined."""
    values = [float(metrics[m]) for m in names if m in metrics and math.isfinite(float(metrics[m]))]
    return float(np.mean(values)) if values else float("nan")


@torch.no_grad()
def evaluate(
    model: Any,
    dataset: PretrainPairs,
    collate: PretrainCollator,
    accelerator: Any,
    batch_size: int,
    num_workers: int,
    selection: Sequence[str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Embed the held-out pairs (sharded over processes), gather them, and compute `pair_metrics`.

    Returns `(metrics with "selection", skipped records)`; every process gets the same result."""
    from accelerate.utils import gather_object, send_to_device

    inner = accelerator.unwrap_model(model)
    was_training = inner.training
    inner.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    loader = torch.utils.data.DataLoader(
        shard, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(0),  # the loader must not draw from the global RNG
    )  # fmt: skip
    index, ecg, text, skipped = [], [], [], []
    for batch in loader:
        skipped.extend(batch["skipped"])
        if not batch["ids"]:
            continue
        inputs = send_to_device({k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}, accelerator.device)
        with accelerator.autocast():
            e = inner.encode_ecg(**inputs).rhythm_embeds
            t = inner.encode_text(
                {k: inputs[k] for k in ("input_ids", "attention_mask", "token_mask", "sentence_ids")}
            ).text_embeds
        index.extend(batch["index"].tolist())
        ecg.append(e.float().cpu().numpy())
        text.append(t.float().cpu().numpy())
    with accelerator.autocast():
        label_names = report_label_names()
        labels = inner.encode_text(label_names).text_embeds.float().cpu().numpy()
    if was_training:
        inner.train()
    local = {
        "index": index,
        "ecg": np.concatenate(ecg) if ecg else None,
        "text": np.concatenate(text) if text else None,
        "skipped": skipped,
    }
    parts = gather_object([local]) if world > 1 else [local]
    idx = np.concatenate([np.asarray(p["index"], dtype=np.int64) for p in parts])
    skipped_all = [s for p in parts for s in p["skipped"]]
    if len(idx) < 2:
        return {"n_pairs": len(idx), "selection": float("nan")}, skipped_all
    order = np.argsort(idx, kind="stable")
    ecg_all = np.concatenate([p["ecg"] for p in parts if p["ecg"] is not None])[order]
    text_all = np.concatenate([p["text"] for p in parts if p["text"] is not None])[order]
    reports = [dataset.pairs.reports[i] for i in idx[order]]
    metrics = pair_metrics(ecg_all, text_all, reports, labels, label_names)
    metrics["selection"] = selection_score(metrics, selection)
    return metrics, skipped_all


# ========================================================================================= checkpoints
def verify_checkpoint(folder: Path) -> None:
    """Check `checksums.json` of a training checkpoint; `ModelLoadError` naming the bad file otherwise."""
    verify_checksums(
        folder, required=True, what="training checkpoint",
        hint="; delete this checkpoint folder to resume from an earlier one",
    )  # fmt: skip


def _checkpoint_step(path: Path) -> int | None:
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX) or not path.is_dir():
        return None
    tail = name[len(CHECKPOINT_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def list_checkpoints(output: Path) -> list[Path]:
    """Complete checkpoint folders (`checkpoint-<step>`, no `.tmp`), oldest first."""
    if not output.is_dir():
        return []
    found = [(s, p) for p in output.iterdir() if (s := _checkpoint_step(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output: Path) -> Path | None:
    ckpts = list_checkpoints(output)
    return ckpts[-1] if ckpts else None


# =============================================================================================== state
@dataclass
class TrainerState:
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


def _sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _identity(cfg: PretrainConfig) -> dict[str, Any]:
    """What must not change on --resume: the data, the model, the augmentation and the batch layout."""
    t = cfg.to_dict()
    return {
        "seed": t["seed"],
        "data": {k: v for k, v in t["data"].items() if k not in ("num_workers", "cache_workers", "cache_dir", "root")},
        "model": t["model"],
        "augment": t["augment"],
        "batch": [t["train"]["batch_size"], t["train"]["grad_accum"]],
    }


# ================================================================================================ logs
class CsvLog:
    """Append-only CSV with a fixed header, flushed after every row (readable while the run goes on)."""

    def __init__(self, path: Path, columns: Sequence[str], keep_until_step: int) -> None:
        self.path, self.columns = path, list(columns)
        rows: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= keep_until_step]
        self.file = path.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")
        self.writer.writeheader()
        for r in rows:
            self.writer.writerow(r)
        self.file.flush()

    def write(self, row: Mapping[str, Any]) -> None:
        self.writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def _truncate_jsonl(path: Path, until_step: int) -> None:
    if not path.is_file():
        return
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= until_step]
    path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        return False
    return True


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


# =============================================================================================== train
def _mixed_precision(value: str) -> str:
    if value != "auto":
        return value
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):  # set by `accelerate launch --mixed_precision`
        return os.environ["ACCELERATE_MIXED_PRECISION"]
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _has_accelerator() -> bool:
    """A GPU (or other torch accelerator) is present; without one the run is a CPU run (gloo for >1 process)."""
    probe = getattr(torch, "accelerator", None)
    if probe is not None and hasattr(probe, "is_available"):
        return bool(probe.is_available())
    return torch.cuda.is_available()


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _frozen_sha256(model: torch.nn.Module) -> str:
    """Hash of every frozen tensor (the pretrained text model under LoRA): checkpoints leave them out, so a
    resume must rebuild exactly the same ones."""
    h = hashlib.sha256()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    for name, tensor in model.state_dict().items():
        if name not in trainable:
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _drop_frozen_weights(models: list[torch.nn.Module], weights: list[dict[str, Any]], _: str) -> None:
    """`accelerator.save_state` pre-hook: keep only trainable tensors in the saved model state. Frozen ones
    (87 MB of MiniLM under LoRA) are rebuilt by `build_model`; `frozen_sha256` guards that on resume."""
    from accelerate.utils import extract_model_from_parallel

    for model, state in zip(models, weights, strict=True):
        inner = extract_model_from_parallel(model)  # saved keys are those of the unwrapped model
        trainable = {n for n, p in inner.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trainable]:
            del state[key]


def _load_checkpoint(accelerator: Any, model: torch.nn.Module, ckpt: Path) -> None:
    """`accelerator.load_state` of a checkpoint holding the trainable weights only (checked key by key)."""
    from safetensors import safe_open

    weights = ckpt / "model.safetensors"
    try:
        with safe_open(str(weights), framework="pt") as f:
            saved = set(f.keys())
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ModelLoadError(weights, f"cannot read the checkpoint weights: {exc}") from exc
    inner = accelerator.unwrap_model(model)  # accelerate saves and loads the unwrapped model's keys
    trainable = {n for n, p in inner.named_parameters() if p.requires_grad}
    if saved != trainable:
        missing, unexpected = sorted(trainable - saved)[:3], sorted(saved - trainable)[:3]
        raise ModelLoadError(
            weights, f"checkpoint does not match the model: missing {missing}, unexpected {unexpected}"
        )
    accelerator.load_state(str(ckpt), strict=False)  # frozen tensors keep the values build_model gave them


def _save_checkpoint(accelerator: Any, output: Path, state: TrainerState, keep_last: int) -> Path:
    """Write checkpoint-<step> atomically (via .tmp + os.replace) and prune to the last `keep_last`."""
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
        for p in tmp.rglob("*"):  # on disk before the rename makes the checkpoint visible
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(output)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _export(model: Any, target: Path, card: Mapping[str, Any], processor: Any) -> None:
    """`save_pretrained` into `target` via a temporary folder, replacing an older export only when complete."""
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    model.save_pretrained(tmp, processor=processor, card=card)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old)


def train(
    cfg: PretrainConfig,
    output_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> TrainResult:
    """Run (or resume) the pretraining described by `cfg`; returns a `TrainResult`.

    Works unchanged under `accelerate launch` / `torchrun` (one process per device) and in a plain process.
    Output folder layout: docs/TRAINING.md."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import ProjectConfiguration, gather_object, set_seed
    from transformers import get_cosine_schedule_with_warmup

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' threads + DataLoader forks deadlock
    if not cfg.data.root:  # before anything slow: the one setting a shipped config cannot know
        raise ConfigError(f"{cfg.source or 'config'}: data.root is not set; pass data.root=/path/to/the/dataset")
    _resolve_path(cfg.data.root, f"data.root of builder {cfg.data.builder!r}")
    output = Path(output_dir or cfg.output_dir or Path("runs") / cfg.name).expanduser().resolve()
    t_cfg = cfg.train
    use_tb = cfg.logging.tensorboard and _tensorboard_available()
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(t_cfg.mixed_precision),
        gradient_accumulation_steps=t_cfg.grad_accum,
        log_with="tensorboard" if use_tb else None,
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(output / "tensorboard")),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.model.find_unused_parameters)],
        # Without it accelerate treats `torchrun` processes on a machine without GPU as independent runs.
        cpu=not _has_accelerator(),
    )
    main = accelerator.is_main_process
    world = accelerator.num_processes
    if not main:
        logger.setLevel(logging.WARNING)
    if t_cfg.batch_size % world:
        raise ConfigError(f"train.batch_size={t_cfg.batch_size} must be a multiple of the {world} processes")
    if t_cfg.threads:
        torch.set_num_threads(int(t_cfg.threads))
    if t_cfg.deterministic and accelerator.device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    if main:
        output.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    # -------------------------------------------------------------------------- resume point
    identity_sha = _sha_of(_identity(cfg))
    ckpt: Path | None = None
    if resume:
        if main:
            for stale in output.glob(f"{CHECKPOINT_PREFIX}*.tmp"):
                logger.warning("removing %s: a checkpoint that was never completed (interrupted write)", stale)
                shutil.rmtree(stale, ignore_errors=True)
        accelerator.wait_for_everyone()
        ckpt = latest_checkpoint(output)
        if ckpt is None:
            logger.warning("--resume: no complete checkpoint in %s; starting from scratch", output)
        else:
            verify_checkpoint(ckpt)
    state = TrainerState(data_seed=cfg.seed, config_sha256=identity_sha)
    if ckpt is not None:
        state = TrainerState.from_file(ckpt / TRAINER_STATE)
        if state.config_sha256 and state.config_sha256 != identity_sha:
            raise ConfigError(
                f"{ckpt}: this checkpoint was made with a different data/model/augment/batch configuration; "
                "resume with the config it was trained with, or use another --output"
            )
    elif latest_checkpoint(output) is not None:
        raise ConfigError(f"{output} already holds checkpoints; pass --resume to continue, or use another --output")

    # -------------------------------------------------------------------------- model and data
    set_seed(cfg.seed)
    model = build_model(cfg.model)
    model_cfg = model.config
    data = prepare_data(cfg, model, output, accelerator)
    processor = _processor(model)
    beat_cfg = processor.beat_config
    inputs = "beats" if model_cfg.is_beat_model else "signal"
    train_ds = PretrainPairs(data.cache, data.train, beat_cfg, cfg.augment, seed=cfg.seed, inputs=inputs)
    val_ds = PretrainPairs(data.cache, data.val, beat_cfg, None, seed=cfg.seed, inputs=inputs)
    collate = PretrainCollator(ReportTokenizer(model.text_tower))
    sampler = EpochSampler(len(train_ds), seed=cfg.seed, shuffle=True)
    nw = cfg.data.num_workers
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=t_cfg.batch_size, sampler=sampler, drop_last=True, collate_fn=collate,
        num_workers=nw, persistent_workers=nw > 0,
        generator=torch.Generator().manual_seed(cfg.seed),  # iterator creation must not consume the global RNG
    )  # fmt: skip
    if len(train_loader) == 0:
        raise ConfigError(f"{len(train_ds)} training pairs are fewer than train.batch_size={t_cfg.batch_size}")
    micro_per_epoch = len(train_loader)
    steps_per_epoch = math.ceil(micro_per_epoch / t_cfg.grad_accum)
    sched = cfg.schedule
    total_steps = int(sched.max_steps) if sched.max_steps else max(1, math.ceil(sched.epochs * steps_per_epoch))

    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(sched.warmup_steps), total_steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    accelerator.register_save_state_pre_hook(_drop_frozen_weights)
    frozen = _frozen_sha256(accelerator.unwrap_model(model))
    if ckpt is not None:
        if state.frozen_sha256 and state.frozen_sha256 != frozen:
            raise ModelLoadError(
                ckpt,
                "the frozen weights (the pretrained text model) differ from those this checkpoint was trained "
                "with; reinstall the same text model package version to resume",
            )
        _load_checkpoint(accelerator, model, ckpt)
        logger.info(
            "resumed from %s (step %d, epoch %d, batch %d)", ckpt, state.step, state.epoch, state.batch_in_epoch
        )
    state.frozen_sha256 = frozen
    loss_module = accelerator.unwrap_model(model).loss_fn
    scale_for_ddp = world > 1 and not bool(model_cfg.loss["local_loss"])

    # -------------------------------------------------------------------------- logs
    loss_names = list(accelerator.unwrap_model(model).loss_fn.weights)
    val_columns = [f"val_{m}" for m in SELECTION_METRICS] + ["val_selection", "val_n_pairs"]
    columns = ["step", "epoch", "split", "loss", *(f"loss_{n}" for n in loss_names), "lr", "grad_norm",
               "logit_scale", "samples_per_s", "elapsed_s", *val_columns]  # fmt: skip
    csv_log = skipped_file = None
    skipped: dict[str, str] = {}
    if main:
        # On resume, rows the interrupted run wrote after its last checkpoint are dropped (they are redone).
        csv_log = CsvLog(output / METRICS_CSV, columns, keep_until_step=state.step if ckpt is not None else -1)
        if ckpt is not None:
            _truncate_jsonl(output / VALIDATION_LOG, state.step)
        else:
            (output / VALIDATION_LOG).write_text("", encoding="utf-8")
        (output / RESOLVED_CONFIG).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        with (output / EXCLUDED_CSV).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "reason"])
            w.writerows(data.excluded)
        skipped_path = output / SKIPPED_CSV
        if ckpt is not None and skipped_path.is_file():
            with skipped_path.open(newline="", encoding="utf-8") as f:
                skipped = {r["id"]: r["reason"] for r in csv.DictReader(f)}
        skipped_file = skipped_path.open("w", newline="", encoding="utf-8")
        skipped_writer = csv.writer(skipped_file)
        skipped_writer.writerow(["id", "reason"])
        skipped_writer.writerows(skipped.items())
        skipped_file.flush()
        logger.info("%s", data.description)
        logger.info(
            "%d processes on %s, mixed precision %s; global batch %d × %d accumulation; %d steps (%d per epoch)",
            world, accelerator.device, accelerator.mixed_precision, t_cfg.batch_size, t_cfg.grad_accum,
            total_steps, steps_per_epoch,
        )  # fmt: skip
    if use_tb:
        accelerator.init_trackers(cfg.name, config=_flat(cfg.to_dict()))

    def note_skipped(items: Sequence[tuple[str, str]]) -> None:
        new = [(i, r) for i, r in items if i not in skipped]
        for i, r in new:
            skipped[i] = r
            logger.warning("skipped record %s: %s", i, r)
        if new and skipped_file is not None:
            skipped_writer.writerows(new)
            skipped_file.flush()

    card_base = {
        "training_data": data.description,
        "notes": (
            f"Pretrained with `ecglang pretrain` (config {cfg.name!r}). Checkpoint selected on held-out "
            f"ECG–report pairs only: mean of {', '.join(cfg.selection.metrics)}."
        ),
    }

    def run_validation() -> bool:
        """Validate, log, export the best model. Returns True when early stopping says stop."""
        if len(val_ds) == 0:
            return False
        metrics, val_skipped = evaluate(
            model, val_ds, collate, accelerator, t_cfg.eval_batch_size or t_cfg.batch_size, nw, cfg.selection.metrics
        )
        if main:
            note_skipped(val_skipped)
        score = float(metrics.get("selection", float("nan")))
        improved = math.isfinite(score) and (state.best_metric is None or score > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = score, state.step, 0
        else:
            state.evals_since_best += 1
        if main:
            row = {"step": state.step, "epoch": state.epoch, "split": "val", "elapsed_s": time.time() - t_start}
            row.update({f"val_{k}": v for k, v in metrics.items() if not isinstance(v, dict)})
            csv_log.write(row)
            with (output / VALIDATION_LOG).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.step, "epoch": state.epoch, **metrics}, default=float) + "\n")
            logger.info(
                "step %d validation: selection %.4f (best %.4f at step %s) | e2r R@1 %.3f | zero-shot AUROC %.3f",
                state.step, score, state.best_metric if state.best_metric is not None else float("nan"),
                state.best_step, metrics.get("ecg2report_recall@1", float("nan")),
                metrics.get("zero_shot_macro_auroc", float("nan")),
            )  # fmt: skip
            if use_tb:
                accelerator.log(
                    {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=state.step
                )
            if improved:
                card = {**card_base, "metrics": {
                    "selected at step": state.step,
                    **{f"held-out {k}": round(float(metrics[k]), 4) for k in SELECTION_METRICS if k in metrics},
                    "held-out pairs": metrics.get("n_pairs"),
                }}  # fmt: skip
                _export(accelerator.unwrap_model(model), output / "best", card, processor)
        accelerator.wait_for_everyone()
        patience = t_cfg.early_stopping_patience
        return patience is not None and state.evals_since_best >= patience

    # -------------------------------------------------------------------------- loop
    t_start = time.time()
    bar = tqdm(total=total_steps, initial=state.step, desc=f"pretrain {cfg.name}", unit="step",
               disable=not (main and cfg.logging.progress), dynamic_ncols=True)  # fmt: skip
    window_samples, window_t = 0, time.time()
    rate_samples, rate_t0 = 0, time.time()
    micro_losses: list[torch.Tensor] = []
    grad_norm: float | None = None
    done = state.step >= total_steps or state.stopped_early
    last_eval_step = last_ckpt_step = state.step if ckpt is not None else -1
    while not done:
        sampler.set_epoch(state.epoch)
        train_loader.set_epoch(state.epoch)
        loader = (
            accelerator.skip_first_batches(train_loader, state.batch_in_epoch) if state.batch_in_epoch else train_loader
        )
        batches_seen = batches_trained = 0
        for batch in loader:
            batches_seen += 1
            state.batch_in_epoch += 1
            n_local = len(batch["ids"])
            if world > 1:
                info = gather_object([(n_local, batch["skipped"])])
                counts, batch_skipped = [c for c, _ in info], [s for _, ss in info for s in ss]
            else:
                counts, batch_skipped = [n_local], batch["skipped"]
            if main and batch_skipped:
                note_skipped(batch_skipped)
            if min(counts) == 0 or sum(counts) < 2:
                logger.warning("epoch %d batch %d: too few usable pairs after skips (%s); batch not trained on",
                               state.epoch, state.batch_in_epoch, counts)  # fmt: skip
                continue
            batches_trained += 1
            model_inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and k != "index"}
            with accelerator.accumulate(model):
                out = model(**model_inputs)
                accelerator.backward(out.loss * world if scale_for_ddp else out.loss)
                if accelerator.sync_gradients:
                    if scale_for_ddp:  # see the module docstring: logit scales got N × their gradient
                        for p in loss_module.parameters():
                            if p.grad is not None:
                                p.grad.div_(world)
                    if t_cfg.clip_grad_norm:
                        norm = accelerator.clip_grad_norm_(model.parameters(), t_cfg.clip_grad_norm)
                        grad_norm = float(norm) if norm is not None else None
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(torch.stack([out.loss.detach(), *(out.losses[n].detach() for n in loss_names)]))
            n_global = sum(counts)
            window_samples += n_global
            rate_samples += n_global
            state.samples_seen += n_global
            if not accelerator.sync_gradients:
                continue
            # ---------------------------------------------------------------- one optimizer step done
            state.step += 1
            mean = torch.stack(micro_losses).mean(0)
            micro_losses = []
            if world > 1 and not scale_for_ddp:
                mean = accelerator.reduce(mean, reduction="mean")
            values = mean.float().cpu().tolist()
            now = time.time()
            rate = window_samples / max(now - window_t, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{values[0]:.4f}", samples_s=f"{rate_samples / max(now - rate_t0, 1e-9):.1f}")
            if main and (state.step % cfg.logging.log_every == 0 or state.step == total_steps):
                row = {
                    "step": state.step, "epoch": state.epoch, "split": "train", "loss": values[0],
                    **{f"loss_{n}": v for n, v in zip(loss_names, values[1:], strict=True)},
                    "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                    "logit_scale": float(loss_module.scale("rhythm").detach()),
                    "samples_per_s": rate, "elapsed_s": now - t_start,
                }  # fmt: skip
                csv_log.write(row)
                if use_tb:
                    accelerator.log({f"train/{k}": v for k, v in row.items() if isinstance(v, float)}, step=state.step)
                window_samples, window_t = 0, now
            stop = False
            if state.step % t_cfg.eval_every == 0 or state.step >= total_steps:
                stop = run_validation()
                last_eval_step = state.step
                if stop:
                    state.stopped_early = True
                    logger.info("early stopping: no improvement in %d validations", state.evals_since_best)
            if state.step % t_cfg.checkpoint_every == 0 or state.step >= total_steps or stop:
                _save_checkpoint(accelerator, output, state, t_cfg.keep_last)
                last_ckpt_step = state.step
            if state.step >= total_steps or stop:
                done = True
                break
        else:
            if batches_seen and not batches_trained:  # every batch was skipped: the run would never end
                raise ConfigError(
                    f"epoch {state.epoch}: no batch had usable pairs ({len(skipped)} records without beats, listed in "
                    f"{output / SKIPPED_CSV}); check the data and processor.beats settings"
                )
            state.epoch += 1
            state.batch_in_epoch = 0
    bar.close()
    if last_eval_step != state.step and not state.stopped_early:
        run_validation()
    if last_ckpt_step != state.step:
        _save_checkpoint(accelerator, output, state, t_cfg.keep_last)
    elapsed = max(time.time() - rate_t0, 1e-9)
    if main:
        card = {**card_base, "metrics": {"final step": state.step, "best held-out selection": state.best_metric}}
        _export(accelerator.unwrap_model(model), output / "final", card, processor)
        if skipped:
            logger.warning("%d record(s) skipped for lack of beats; listed in %s", len(skipped), output / SKIPPED_CSV)
        csv_log.close()
        skipped_file.close()
    accelerator.wait_for_everyone()
    if use_tb:
        accelerator.end_training()
    best_dir = output / "best"
    return TrainResult(
        output_dir=output,
        steps=state.step,
        best_metric=state.best_metric,
        best_step=state.best_step,
        best_dir=best_dir if best_dir.is_dir() else None,
        final_dir=output / "final",
        stopped_early=state.stopped_early,
        skipped=dict(skipped),
        excluded=list(data.excluded),
        samples_per_s=rate_samples / elapsed,
    )


# ================================================================================================= CLI
def run(args: argparse.Namespace) -> int:
    """Handler of `ecglang pretrain`."""
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per saved file otherwise
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, output_dir=args.output, resume=args.resume)
    if result.best_dir is not None:
        logger.info("best model (step %s, selection %.4f): %s", result.best_step, result.best_metric, result.best_dir)
    logger.info("final model: %s", result.final_dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from ecglang.cli.pretrain import add_arguments

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


__all__ = [
    "PretrainConfig",
    "TrainResult",
    "build_model",
    "config_from_dict",
    "evaluate",
    "grouped_recall",
    "latest_checkpoint",
    "load_config",
    "pair_metrics",
    "prepare_data",
    "selection_score",
    "train",
    "verify_checkpoint",
]

if __name__ == "__main__":
    sys.exit(main())

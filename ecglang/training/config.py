"""The pretraining config: a YAML file (configs/pretrain/*.yaml) plus `key=value` overrides, and the
command-line options of `ecglang pretrain` / `python -m ecglang.training.trainer` (defined once, here).

Every section is an `ecglang.core.config.DictConfig` dataclass: unknown keys are errors naming the file (or,
for a key that came from an override, the override), and `PretrainConfig.validate` checks the values.
docs/TRAINING.md describes each key.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import math
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ecglang.core.config import DictConfig, check_value, config_to_dict, parse_overrides, set_dotted
from ecglang.core.outputs import output_folder
from ecglang.core.paths import resource_dir
from ecglang.data.registry import (
    DatasetSpec,
    buildable_datasets,
    dataset_names,
    find_dataset,
    pretraining_sources,
)
from ecglang.errors import ConfigError
from ecglang.signal.augment import AugmentConfig

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


@dataclass
class DataSection(DictConfig):
    """Where the pairs come from and which of them are held out (see docs/TRAINING.md)."""

    # a source of ecglang.data.registry: "ptbxl" | "mimic_ecg" | "pairs" (with reports), or one without reports
    # ("physionet": a folder of WFDB records) for a run of ECG-only objectives (objectives.contrastive=false)
    builder: str = "ptbxl"
    root: str | None = None  # dataset folder (pairs: the CSV/parquet/JSONL file); relative: current folder, then repo
    builder_args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the builder
    prepared: str | None = None  # a folder from `ecglang data build` (table + cache); then builder/root are not used
    cache_dir: str | None = None  # signal cache folder; default $ECGLANG_CACHE/signal-cache/<records+preprocess key>
    max_inline_records: int = 20_000  # above this, a multi-process run refuses to build its cache (prepare it)
    limit: int | None = None  # use only the first N builder rows (smoke tests)
    val_folds: list[int] | None = None  # held-out selection by the dataset's fold column ...
    val_fraction: float | None = None  # ... or a seeded fraction of the groups in val_group
    val_group: str | None = None  # e.g. patient_id (PTB-XL), subject_id (MIMIC): no patient on both sides
    val_max: int | None = None  # cap on held-out pairs (a seeded choice; the rest is not trained on)
    num_workers: int = 0  # DataLoader worker processes (beat tokenization and report tokenization run there)
    # ECGs without reports mixed into the training batches (ECG-only objectives only; never held out)
    unpaired_root: str | None = None
    unpaired_builder: str = "physionet"  # the builder of unpaired_root
    cache_workers: int = 0  # processes that build the signal cache
    # Seed of the training order and augmentations (null: the run's `seed`, which also seeds the initial weights):
    # set apart, it tells the two sources of seed-to-seed spread apart.
    order_seed: int | None = None

    def order(self, seed: int) -> int:
        """The seed of the data order and augmentations of a run seeded `seed`."""
        return seed if self.order_seed is None else int(self.order_seed)


@dataclass
class ModelSection(DictConfig):
    """Which model to train: a name from configs/model (ecglang.encoders.registry), a .json config, or a checkpoint."""

    name: str = "ecglang-small"
    overrides: dict[str, Any] = field(default_factory=dict)  # merged into the model config (nested dicts)
    text_dropout: float | None = None  # sets p of every Dropout inside the text transformer (None: keep)
    find_unused_parameters: bool = False  # DDP option, for configs that leave a head unused


@dataclass
class OptimSection(DictConfig):
    lr: float = 3e-4
    weight_decay: float = 0.05  # not applied to biases, norms and logit scales (parameters with ndim < 2)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    # Validate and export an exponential moving average of the weights (ecglang.training.weight_ema); null: off.
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.betas, (list, tuple)) or len(self.betas) != 2:
            raise ConfigError("optim.betas must be [beta1, beta2]")
        self.betas = (float(self.betas[0]), float(self.betas[1]))


@dataclass
class ScheduleSection(DictConfig):
    warmup_steps: int = 0
    max_steps: int | None = None  # optimizer steps; takes precedence over epochs
    epochs: float | None = None  # when max_steps is null: epochs × optimizer steps per epoch


@dataclass
class TrainSection(DictConfig):
    batch_size: int = 32  # GLOBAL pairs per micro-step (all processes together)
    grad_accum: int = 1
    clip_grad_norm: float | None = 1.0
    # auto (bf16 on GPUs that have it, else fp16 on GPU; no on CPU) | no | fp16 | bf16; YAML's unquoted no (False): no
    mixed_precision: str | bool = "auto"
    eval_every: int = 100  # optimizer steps between validations (and one at the end)
    eval_batch_size: int | None = None  # default: batch_size
    checkpoint_every: int = 100  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 2  # checkpoints kept
    early_stopping_patience: int | None = None  # validations without improvement before stopping
    deterministic: bool = True  # torch.use_deterministic_algorithms(True, warn_only=True) on CPU
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    # Contrastive losses under N processes: "auto" (local when N > 2), true (each process its own rows: ~N/2 times
    # cheaper token loss, approximate gradient), false (the whole gathered batch: exact gradient). docs/TRAINING.md.
    local_loss: bool | str = "auto"
    gradient_checkpointing: bool = False  # recompute tower activations in backward: less memory, ~30 % more compute
    process_group_timeout_s: int = 7200  # distributed timeout: covers the table/cache work before the first step

    def __post_init__(self) -> None:
        if self.mixed_precision is False:  # YAML 1.1 reads an unquoted `no` (or off/false) as False
            self.mixed_precision = "no"


@dataclass
class SelectionSection(DictConfig):
    """Checkpoint selection / early stopping: the mean of these held-out pair metrics (NaNs ignored)."""

    metrics: list[str] = field(default_factory=lambda: ["ecg2report_recall@1", "zero_shot_macro_auroc"])


@dataclass
class LoggingSection(DictConfig):
    log_every: int = 1  # optimizer steps between rows of metrics.csv
    tensorboard: bool = True  # through accelerate's tracker, when the tensorboard package is importable
    log_with: list[str] | str | None = None  # more accelerate trackers: wandb, mlflow, comet_ml, aim, ... or "all"
    progress: bool = True  # tqdm bar on the main process


@dataclass
class MaskedBeatsSection(DictConfig):
    """Masked-beat reconstruction (ecglang.encoders.objectives.MaskedBeatReconstruction); on when weight > 0."""

    weight: float = 0.0
    mask_ratio: float = 0.3


@dataclass
class LatentBeatsSection(DictConfig):
    """Latent prediction of masked beats against an EMA target tower (ecglang.encoders.objectives
    .LatentBeatPrediction); on when weight > 0."""

    weight: float = 0.0
    mask_ratio: float = 0.3
    ema: float = 0.996  # target momentum: target <- ema * target + (1 - ema) * online, after each optimizer step


@dataclass
class ObjectivesSection(DictConfig):
    """What the run trains on: the contrastive ECG–report losses (the model config's loss weights) on items
    with a report, and the ECG-only objectives (all off by default) on every item."""

    contrastive: bool = True  # false: ECG-only objectives alone (no text tower forward; data without reports)
    masked_beats: MaskedBeatsSection = field(default_factory=MaskedBeatsSection)
    latent_beats: LatentBeatsSection = field(default_factory=LatentBeatsSection)

    def active(self) -> dict[str, Any]:
        """The ECG-only objectives switched on (weight > 0): name → section."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "contrastive" and getattr(self, f.name).weight > 0
        }


@dataclass
class PretrainConfig(DictConfig):
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
    objectives: ObjectivesSection = field(default_factory=ObjectivesSection)
    source: str | None = field(default=None, init=False)  # the YAML file it was read from (not a config key)

    def to_dict(self) -> dict[str, Any]:
        out = config_to_dict(self)
        out.pop("source", None)
        return out

    def validate(self) -> None:
        """Check the values (types and keys were checked by `from_dict`); `ConfigError` naming the file."""
        where = self.source or "config"
        self._validate_train(where)
        s = self.schedule
        if s.max_steps is None and s.epochs is None:
            raise ConfigError(f"{where}: set schedule.max_steps or schedule.epochs")
        if s.max_steps is not None and int(s.max_steps) < 1:
            raise ConfigError(f"{where}: schedule.max_steps must be >= 1, got {s.max_steps!r}")
        if s.epochs is not None and not 0 < float(s.epochs) < math.inf:  # NaN and inf fail too (int() of them did)
            raise ConfigError(f"{where}: schedule.epochs must be a finite number > 0, got {s.epochs!r}")
        if not 0 <= self.seed < 2**32:  # numpy's range: a traceback before
            raise ConfigError(f"{where}: seed must be in 0..2**32-1, got {self.seed!r}")
        if int(s.warmup_steps) < 0:
            raise ConfigError(f"{where}: schedule.warmup_steps must be >= 0")
        if self.optim.lr <= 0:
            raise ConfigError(f"{where}: optim.lr must be > 0, got {self.optim.lr!r}")
        unknown = [m for m in self.selection.metrics if m not in SELECTION_METRICS]
        if unknown or not self.selection.metrics:
            raise ConfigError(
                f"{where}: selection.metrics {unknown or '[]'} not allowed; choose from held-out pair metrics "
                f"{list(SELECTION_METRICS)}"
            )
        self._validate_data(where)
        self._validate_objectives(where)
        if self.logging.log_every < 1:
            raise ConfigError(f"{where}: logging.log_every must be >= 1")

    def _validate_train(self, where: str) -> None:
        t = self.train
        # eval_batch_size and early_stopping_patience may be null; checked here, not at the first validation (after
        # training) or as "stop at once" (patience 0 or below)
        optional = ("eval_batch_size", "early_stopping_patience")
        for name in ("batch_size", "grad_accum", "eval_every", "checkpoint_every", "keep_last", *optional):
            v = getattr(t, name)
            if v is None and name in optional:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                null = " or null" if name in optional else ""
                raise ConfigError(f"{where}: train.{name} must be an int >= 1{null}, got {v!r}")
        if t.local_loss not in ("auto", True, False):
            raise ConfigError(f"{where}: train.local_loss must be auto|true|false, got {t.local_loss!r}")
        if t.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"{where}: train.mixed_precision must be auto|no|fp16|bf16, got {t.mixed_precision!r}")
        if t.clip_grad_norm is not None and not 0 < t.clip_grad_norm < math.inf:
            raise ConfigError(f"{where}: train.clip_grad_norm must be a number > 0 or null, got {t.clip_grad_norm!r}")
        if t.threads is not None and t.threads < 1:
            raise ConfigError(f"{where}: train.threads must be >= 1 or null, got {t.threads!r}")
        o = self.optim  # `not x > 0` rather than `x <= 0`: NaN fails it too
        if not 0 < o.lr < math.inf or not 0 < o.eps < math.inf or not 0 <= o.weight_decay < math.inf:
            raise ConfigError(
                f"{where}: optim.lr and optim.eps must be finite numbers > 0 and optim.weight_decay >= 0, "
                f"got lr={o.lr!r}, eps={o.eps!r}, weight_decay={o.weight_decay!r}"
            )
        if not all(0 <= b < 1 for b in o.betas):
            raise ConfigError(f"{where}: optim.betas must be two numbers in [0, 1), got {list(o.betas)}")
        if o.ema_decay is not None and not 0 < o.ema_decay < 1:
            raise ConfigError(f"{where}: optim.ema_decay must be a number in (0, 1) or null, got {o.ema_decay!r}")

    def _validate_data(self, where: str) -> None:
        d = self.data
        # An alias (mimic, ptb-xl, cinc) names the same source as its canonical name: `data build` uses them too.
        spec = source_spec(d.builder, "data.builder", where)
        if spec.name not in pretraining_sources() and self.objectives.contrastive:
            raise ConfigError(
                f"{where}: data.builder={d.builder!r} has no reports, so the contrastive losses have nothing to "
                "align: set objectives.contrastive=false and switch on an ECG-only objective "
                "(objectives.masked_beats.weight / objectives.latent_beats.weight)"
            )
        if d.limit is not None and (isinstance(d.limit, bool) or d.limit < 1):
            raise ConfigError(f"{where}: data.limit must be an int >= 1 (or null for all rows), got {d.limit!r}")
        if d.unpaired_root is not None:
            source_spec(d.unpaired_builder, "data.unpaired_builder", where)
            if not self.objectives.active():
                raise ConfigError(
                    f"{where}: data.unpaired_root gives ECGs without reports, which only the ECG-only objectives "
                    "train on: set objectives.masked_beats.weight or objectives.latent_beats.weight > 0"
                )
        if d.num_workers < 0 or d.cache_workers < 0:
            raise ConfigError(f"{where}: data.num_workers and data.cache_workers must be >= 0")
        if d.val_max is not None and (isinstance(d.val_max, bool) or d.val_max < 0):
            raise ConfigError(f"{where}: data.val_max must be an int >= 0 or null, got {d.val_max!r}")
        params = inspect.signature(spec.builder_function()).parameters if d.builder_args else {}
        accepted = set(params) - {"root"}
        unknown = (
            [] if any(p.kind is p.VAR_KEYWORD for p in params.values()) else sorted(set(d.builder_args) - accepted)
        )
        if unknown:  # the builder's TypeError, as a traceback, before
            raise ConfigError(
                f"{where}: data.builder_args {unknown} are not arguments of the {spec.name} builder; it takes "
                f"{sorted(accepted)}"
            )
        if (d.val_folds is None) == (d.val_fraction is None):
            raise ConfigError(f"{where}: set exactly one of data.val_folds and data.val_fraction")

    def _validate_objectives(self, where: str) -> None:
        o = self.objectives
        if not o.contrastive and not o.active():
            raise ConfigError(
                f"{where}: objectives.contrastive=false leaves nothing to train: set "
                "objectives.masked_beats.weight or objectives.latent_beats.weight > 0"
            )
        for name in ("masked_beats", "latent_beats"):
            section = getattr(o, name)
            if not 0 <= section.weight < math.inf:  # NaN counted as off and inf trained on NaN losses before
                raise ConfigError(
                    f"{where}: objectives.{name}.weight must be a finite number >= 0, got {section.weight!r}"
                )
            if not 0.0 < float(section.mask_ratio) < 1.0:
                raise ConfigError(
                    f"{where}: objectives.{name}.mask_ratio must be in (0, 1), got {section.mask_ratio!r}"
                )
        if not 0.0 <= float(o.latent_beats.ema) < 1.0:
            raise ConfigError(f"{where}: objectives.latent_beats.ema must be in [0, 1), got {o.latent_beats.ema!r}")

    @property
    def ecg_only(self) -> bool:
        """No contrastive loss: the run trains the ECG-only objectives alone (checkpoint selection on their
        held-out loss)."""
        return not self.objectives.contrastive


def source_spec(name: str, key: str, where: str) -> DatasetSpec:
    """The registry entry of the data source that config key `key` names (a name, `data build`'s name or an alias:
    mimic → mimic_ecg); `ConfigError` naming the key, with the closest known name, for one that cannot be built."""
    spec = find_dataset(name)
    if spec is not None and spec.builder is not None:
        return spec
    names = sorted(n for n in dataset_names(with_aliases=True) if find_dataset(n).builder is not None)
    close = difflib.get_close_matches(str(name).strip().lower(), names, n=1)
    hint = f"; did you mean {find_dataset(close[0]).name}?" if close else ""
    raise ConfigError(
        f"{where}: {key} must be one of {sorted(buildable_datasets())} (or an alias of one), got {name!r}{hint}"
    )


def config_from_tree(tree: Mapping[str, Any], source: str | None = None) -> PretrainConfig:
    """Build and validate a `PretrainConfig` from a nested dict (unknown keys raise `ConfigError` naming `source`)."""
    cfg = PretrainConfig.from_dict(tree, where=source or "config")
    cfg.source = source
    cfg.validate()
    return cfg


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


def check_override_key(key: str, value: Any, item: str) -> None:
    """Raise `ConfigError` naming the override `item` when its dotted `key` is not a `PretrainConfig` key
    (or, when it sets a whole section to a mapping, when that mapping holds an unknown key), or when its value
    is not of the key's type.

    Keys under a free-form mapping (`model.overrides.*`, `data.builder_args.*`) are not checked here: the
    model registry and the builder check them."""
    cls: Any = PretrainConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        if part not in known:
            section = ".".join(parts[:depth])
            where = f" in section {section!r}" if section else " at the top level"
            raise ConfigError(f"override {item!r}: unknown key(s) [{part!r}]{where}; known: {sorted(known)}")
        hint = typing.get_type_hints(cls)[part]
        if not dataclasses.is_dataclass(hint):
            if depth == len(parts) - 1:  # a wrong type is the override's mistake, not the file's
                check_value(hint, value, f"override {item!r}: {key}")
            return
        if depth == len(parts) - 1 and isinstance(value, Mapping):
            known = {f.name for f in dataclasses.fields(hint) if f.init}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ConfigError(
                    f"override {item!r}: unknown key(s) {unknown} in section {key!r}; known: {sorted(known)}"
                )
        cls = hint


class SafeNoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: nine nested anchors of nine aliases each (a few hundred bytes, under a
    free-form section such as `data.builder_args`) grew past 2.8 GB when the config was copied; no shipped config
    uses them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not allowed in a config (write the value out)", event.start_mark
            )
        return super().compose_node(parent, index)


def load_config(name_or_path: str | os.PathLike, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read a pretraining YAML config and apply `key=value` overrides (dotted keys, YAML values).

    A mistake in the file is reported against the file; an unknown key in an override against the override."""
    path = resolve_config_path(name_or_path)
    try:
        tree = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeNoAliasLoader) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a pretraining config must be a mapping at the top level")
    # Overrides are checked against the schema first, so an unknown key left in the merged tree is the file's.
    for (key, value), item in zip(parse_overrides(overrides), overrides, strict=True):
        check_override_key(key, value, item)
        set_dotted(tree, key, value)
    try:
        return config_from_tree(tree, source=str(path))
    except ConfigError as exc:  # a value out of range may be an override's: say which settings were merged in
        if not overrides:
            raise
        raise ConfigError(f"{exc} (the file with overrides {' '.join(overrides)})") from None


class IntermixedArgumentParser(argparse.ArgumentParser):
    """A parser that takes its positionals anywhere between the options: `--config smoke a=1 --output DIR b=2`.
    Plain argparse takes one run of positionals and refused `b=2` as an "unrecognized argument"."""

    _in_intermixed = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        # Also what a parent parser calls for a subcommand; parse_known_intermixed_args parses in two passes,
        # which come back here and must be plain ones.
        if self._in_intermixed:
            return super().parse_known_args(args, namespace)
        self._in_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._in_intermixed = False


@functools.cache
def _intermixed(parser_class: type) -> type:
    """`parser_class` taking its positionals anywhere (`IntermixedArgumentParser` first in the method order)."""
    if parser_class is argparse.ArgumentParser:
        return IntermixedArgumentParser
    return type(f"Intermixed{parser_class.__name__}", (IntermixedArgumentParser, parser_class), {})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ecglang pretrain` (also `python -m ecglang.training.trainer`, under `accelerate launch`).

    `key=value` overrides may come before, between or after the options: the parser becomes an
    `IntermixedArgumentParser` (a subcommand's parser is created by its parent, so its class is switched here,
    to one that is both: the CLI's own parser class records which command ran)."""
    if not isinstance(parser, IntermixedArgumentParser):
        parser.__class__ = _intermixed(type(parser))
    parser.add_argument("--config", required=True, help="YAML file, or a name in configs/pretrain/ (e.g. ptbxl-mini)")
    parser.add_argument(
        "--output",
        "--out",  # the other commands' name for it
        default=None,
        type=output_folder,
        help="output folder (default: output_dir of the config, or runs/<name>)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest complete checkpoint in --output"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value",
        help="config overrides with dotted keys, e.g. train.batch_size=64 data.root=/data/ptbxl schedule.max_steps=10",
    )  # fmt: skip


__all__ = [
    "SELECTION_METRICS",
    "DataSection",
    "IntermixedArgumentParser",
    "LatentBeatsSection",
    "LoggingSection",
    "MaskedBeatsSection",
    "ModelSection",
    "ObjectivesSection",
    "OptimSection",
    "PretrainConfig",
    "ScheduleSection",
    "SelectionSection",
    "TrainSection",
    "add_arguments",
    "check_override_key",
    "config_from_tree",
    "load_config",
    "resolve_config_path",
    "source_spec",
]

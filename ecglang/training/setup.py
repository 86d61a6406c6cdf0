"""Setting up a pretraining run: the model, the data (pairs, signal cache, held-out split), the accelerator, the
data loaders, and the optimizer and schedule. `build_training` returns them together as a `TrainingSetup`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ecglang.core.paths import source_checkout
from ecglang.data.cache import SignalCache, cache_is_complete, default_cache_dir
from ecglang.data.prepared import PreparedDataset
from ecglang.data.registry import build_dataset, find_dataset
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.registry import create_model, load_model_config
from ecglang.encoders.text_encoder import count_truncated
from ecglang.errors import ConfigError, EcgLangError
from ecglang.record.demographics import demographic_codes
from ecglang.record.ecg import RECORD_SUFFIXES
from ecglang.signal.preprocess import PreprocessConfig
from ecglang.training.checkpoints import drop_frozen_weights
from ecglang.training.config import ModelSection, PretrainConfig
from ecglang.training.devices import (  # the run's devices and processes: their names stay importable from here
    LOCAL_LOSS_MIN_WORLD,
    allow_unused_parameters,
    create_accelerator,
    has_accelerator,
    main_process_value,
    mixed_precision_mode,
    resolve_local_loss,
    unused_parameters_reason,
)
from ecglang.training.logs import EXCLUDED_CSV, write_excluded
from ecglang.training.objectives import EmaTargets, PretrainObjectives
from ecglang.training.pairs import (
    ConcatPairs,
    Demographics,
    EpochSampler,
    PairTable,
    PretrainCollator,
    PretrainPairs,
    ReportTokenizer,
    heldout_split,
)
from ecglang.training.weight_ema import WeightEMA

if TYPE_CHECKING:  # for hints only: accelerate is imported where training starts
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


def resolve_data_path(value: str, what: str) -> Path:
    """Relative paths: the current folder first, then the repository root (configs shipped with the repo
    name `../shared/data/...` relative to it)."""
    path = Path(value).expanduser()
    if path.exists():
        return path.resolve()
    checkout = source_checkout()
    if checkout is not None and not path.is_absolute() and (checkout / path).exists():
        return (checkout / path).resolve()
    if path.is_absolute():
        where = ""
    elif checkout is not None:
        where = f" (relative paths are tried from {Path.cwd()} and the repository root {checkout})"
    else:  # an installed package: the shipped configs' ../shared/data paths hold only in a checkout
        where = f" (relative to {Path.cwd()}; give the folder's full path, e.g. data.root=/data/ptbxl)"
    raise ConfigError(f"{path}: {what} not found{where}")


def build_model(section: ModelSection) -> Any:
    """Create the model to pretrain: `ecglang.encoders.registry.create_model(name, **overrides)` (weights of the ECG
    tower drawn from the current torch seed), or `from_pretrained` when `name` is a checkpoint folder."""
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


def model_processor(model: Any) -> Any:
    """The model's `EcgProcessor` (its preprocessing contract): the cache and the beats follow it."""
    if model.config.processor is None:
        raise ConfigError("the model has no processor contract (config.processor is None); pretraining needs one")
    return model.get_processor()


@dataclass
class PretrainData:
    """Everything the loop needs about the data."""

    cache: Any
    train: PairTable
    val: PairTable
    excluded: list[tuple[str, str]]  # (record id, reason): left out before training
    description: str
    # The part of `excluded` whose files failed to read or preprocess in this run (not the empty reports, nor the
    # failures of a prepared folder's build, which that build reported): the run then exits non-zero.
    failed: list[tuple[str, str]] = field(default_factory=list)
    unpaired: PairTable | None = None  # data.unpaired_root: ECGs without reports (training only)
    unpaired_cache: Any = None
    # "train", "val", "unpaired" → age/sex of that table's items; empty unless the tower reads them
    demographics: dict[str, Demographics] = field(default_factory=dict)


def uses_demographics(model: Any) -> bool:
    """The model's ECG tower reads age and sex (`ecg_tower.demographics: true`)."""
    return bool(model.config.ecg_tower.get("demographics", False))


def demographic_arrays(dataset: Any) -> Demographics:
    """Age (float32, NaN unknown) and sex (int64, 0 unknown / 1 male / 2 female) of every builder row, from its
    `age`/`sex` columns (all unknown where a source has none)."""
    n = len(dataset)
    ages = dataset["age"] if "age" in dataset.column_names else [None] * n
    sexes = dataset["sex"] if "sex" in dataset.column_names else [None] * n
    codes = [demographic_codes(a, x) for a, x in zip(ages, sexes, strict=True)]
    return Demographics(
        np.array([c[0] for c in codes], dtype=np.float32), np.array([c[1] for c in codes], dtype=np.int64)
    )


def prepare_data(cfg: PretrainConfig, model: Any, output: Path, accelerator: Accelerator) -> PretrainData:
    """The pairs, their signal cache and the held-out split: read from `data.prepared` (built beforehand by
    `ecglang data build`), or built here (the table on every process, the cache on the main one)."""
    d = cfg.data
    preprocess_cfg = model_processor(model).preprocess_config
    if d.prepared:
        dataset, cache, excluded, source, where = open_prepared(
            cfg, preprocess_cfg, output, accelerator.is_main_process
        )
    else:
        if not d.root:
            raise ConfigError(
                f"{cfg.source or 'config'}: set data.prepared=DIR (`ecglang data build`) or data.root=/path/to/data"
            )
        root = resolve_data_path(d.root, f"data.root of builder {d.builder!r}")
        builder_kwargs = {"progress": accelerator.is_main_process and cfg.logging.progress, **(d.builder_args or {})}
        dataset, report = build_dataset(d.builder, root, **builder_kwargs)
        excluded = [(str(f.record_id), f.reason) for f in report.failures]
        source, where = d.builder, root
    failed = [] if d.prepared else list(excluded)
    n_rows = len(dataset)  # rows past data.limit: counted in the data line, not failures, listed nowhere
    if d.limit is not None:
        dataset = dataset.select(range(min(int(d.limit), n_rows)))
    if len(dataset) == 0:  # every row failed in the builder: the held-out split has nothing to draw from
        path = _write_excluded(output, excluded, accelerator)
        raise ConfigError(f"{where}: no records to train on: all {len(excluded)} rows were left out (listed in {path})")
    train_idx, val_idx = heldout_split(
        dataset, d.val_folds, d.val_fraction, d.val_group, seed=cfg.seed, val_max=d.val_max
    )
    keep = np.zeros(len(dataset), dtype=bool)
    keep[train_idx] = keep[val_idx] = True
    n_capped = int((~keep).sum())
    # Only what pretraining may see leaves this function: ids, paths (for the cache) and report texts.
    ids = [str(x) for x in dataset["id"]]
    reports = [str(x) for x in dataset["report"]]
    demo = demographic_arrays(dataset) if uses_demographics(model) else None
    keep_unpaired = bool(cfg.objectives.active())  # the ECG-only objectives train on ECGs without a report
    if not d.prepared:
        records = list(zip(ids, [str(p) for p in dataset["path"]], strict=True))
        cache = inline_cache(cfg, records, preprocess_cfg, output, accelerator)
    status_ok = np.zeros(len(ids), dtype=bool)
    ok_rows = np.asarray(cache.ok_rows)
    status_ok[ok_rows[ok_rows < len(ids)]] = True  # a prepared cache may hold more rows than data.limit keeps
    failed_reason = dict(zip(cache.failures["id"].astype(str), cache.failures["reason"], strict=True))

    demographics: dict[str, Demographics] = {}
    train_left_out: Counter[str] = Counter()  # why training records were left out, for the error when all were

    def table(index: np.ndarray, split: str) -> PairTable:
        rows = []
        for i in index:
            # Held out for pair metrics, an ECG needs its report; ECG-only runs validate on the objective loss.
            if not reports[i].strip() and not (keep_unpaired and (split == "train" or cfg.ecg_only)):
                why = "empty report"
            elif not status_ok[i]:
                why = "signal cache failed"
            else:
                rows.append(int(i))
                continue
            detail = f": {failed_reason.get(ids[i], '?')}" if why == "signal cache failed" else ""
            excluded.append((ids[i], f"{split}: {why}{detail}"))
            if detail and not d.prepared:
                failed.append(excluded[-1])
            if split == "train":
                train_left_out[why] += 1
        rows_arr = np.asarray(rows, dtype=np.int64)
        if demo is not None:
            demographics[split] = demo.subset(rows_arr)
        return PairTable(rows_arr, [ids[i] for i in rows], [reports[i] for i in rows])

    train, val = table(train_idx, "train"), table(val_idx, "val")
    if len(train) == 0:
        listed = _write_excluded(output, excluded, accelerator)
        raise ConfigError(no_training_pairs(where, source, len(train_idx), train_left_out, listed))
    if accelerator.is_main_process and not cfg.ecg_only:
        warn_truncated_reports(model, train.reports)
    if accelerator.is_main_process:
        # ECG-only runs validate on the objectives' loss, which one held-out ECG gives; pair metrics need two pairs.
        if cfg.ecg_only and len(val) == 0:
            logger.warning("no held-out ECGs: no validation, no checkpoint selection (best/ is not written)")
        elif not cfg.ecg_only and len(val) < 2:
            logger.warning("%d held-out pairs: no validation, no checkpoint selection (best/ is not written)", len(val))
    how = f"folds {d.val_folds}" if d.val_folds is not None else f"{d.val_fraction:.0%} of {d.val_group or 'rows'}"
    what = "ECGs (ECG-only objectives)" if cfg.ecg_only else "ECG–report pairs"
    description = f"{len(train)} {what} of {source} ({Path(where).name}) for training, {len(val)} held out ({how})"
    data = PretrainData(cache=cache, train=train, val=val, excluded=excluded, description=description,
                        failed=failed, demographics=demographics)  # fmt: skip
    n_paired_out = len(excluded)
    left_out = f"; {n_paired_out} records left out"
    if d.unpaired_root is not None:
        # after the unpaired ECGs: the count must cover those left out of them too
        paths = dataset["path"]
        paired = {record_key(paths[int(i)]): split for split, t in (("training", train), ("held-out", val))
                  for i in t.rows}  # fmt: skip
        n_unpaired_out, n_unpaired = add_unpaired(cfg, model, output, accelerator, data, paired)
        left_out += f", {n_unpaired_out} of {n_unpaired} unpaired ECGs left out"
    data.description += f"{left_out} (listed in {EXCLUDED_CSV})" + (
        f", {n_capped} beyond data.val_max unused" if n_capped else ""
    ) + (f", {n_rows - len(dataset)} of {n_rows} rows beyond data.limit={d.limit} unused (not failures)"
         if len(dataset) < n_rows else "")  # fmt: skip
    return data


#: Reports whose token count is measured before training (a sample of a large set: the share is what matters).
TRUNCATION_SAMPLE = 10_000


def warn_truncated_reports(model: Any, reports: list[str], sample: int = TRUNCATION_SAMPLE) -> int:
    """Warn when reports are longer than the text tower reads (`max_length` tokens; the rest is cut, silently at
    each step); returns the count among the reports measured (the first `sample` non-empty ones)."""
    texts = [r for r in reports if r.strip()][:sample]
    cfg = model.config.text_tower
    n = count_truncated(model.get_tokenizer(), texts, cfg)
    if n:
        logger.warning(
            "%d of %d reports%s are longer than text_tower.max_length=%d tokens and are cut there; raise it with "
            "model.overrides.text_tower.max_length=N", n, len(texts), " measured" if len(texts) == sample else "",
            int(cfg["max_length"]),
        )  # fmt: skip
    return n


def _write_excluded(output: Path, excluded: list[tuple[str, str]], accelerator: Accelerator) -> Path:
    """`excluded_records.csv` written now (main process): the run stops before its logs are opened."""
    if accelerator.is_main_process:
        write_excluded(output, excluded)
    return output / EXCLUDED_CSV


def no_training_pairs(where: Path | str, source: str, n_train: int, reasons: Counter[str], listed: Path) -> str:
    """The message of a run whose every training record was left out: how many, why, and what to do."""
    counts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    message = (
        f"{where}: no usable training pairs: {n_train} of {n_train} training records left out ({counts}; "
        f"all listed in {listed})"
    )
    if reasons.get("empty report") == n_train:
        message += (
            f"; the records of {source} here have no reports: to pretrain on them, set objectives.contrastive=false "
            "and switch on an ECG-only objective (objectives.masked_beats.weight=1)"
        )
    return message


def record_key(path: str) -> str:
    """One record's files, whatever path names it: resolved, without a WFDB extension (`.hea`, `.dat`, `.mat`)."""
    resolved = os.path.realpath(os.path.expanduser(path))
    stem, ext = os.path.splitext(resolved)
    return stem if ext.lower() in (".hea", ".dat", ".mat") else resolved


def add_unpaired(
    cfg: PretrainConfig,
    model: Any,
    output: Path,
    accelerator: Accelerator,
    data: PretrainData,
    paired: dict[str, str] | None = None,
) -> tuple[int, int]:
    """`data.unpaired_root`: a folder of ECGs whose reports (if any) are not used, built by
    `data.unpaired_builder` into its own signal cache; all of them train the ECG-only objectives, except the ECGs
    of this run's pairs (`paired`: `record_key` → "training" or "held-out"): a held-out ECG would be trained on,
    a training one seen twice an epoch (the folder may be the pairs' own, e.g. MIMIC's files/).

    Returns (ECGs of the folder left out, ECGs of the folder); those left out are added to `data.excluded`."""
    d = cfg.data
    root = resolve_data_path(d.unpaired_root, f"data.unpaired_root of builder {d.unpaired_builder!r}")
    dataset, report = build_dataset(
        d.unpaired_builder, root, progress=accelerator.is_main_process and cfg.logging.progress
    )
    unreadable = [(str(f.record_id), f"unpaired: {f.reason}") for f in report.failures]
    ids, paths = [str(x) for x in dataset["id"]], [str(p) for p in dataset["path"]]
    paired = paired or {}
    sides = [paired.get(record_key(p)) for p in paths]
    n_paired = sum(map(bool, sides))
    if n_paired:
        # not failures (the run's exit status is not theirs), but listed with the records left out
        data.excluded += [(i, f"unpaired: the ECG of a {side} pair of this run") for i, side in zip(ids, sides,
                          strict=True) if side]  # fmt: skip
        n_held = sum(side == "held-out" for side in sides)
        data.description += (f"; {n_paired} of {len(ids)} unpaired ECGs are pairs of this run "
                             f"({n_held} held out), left out")  # fmt: skip
        keep = [j for j, side in enumerate(sides) if not side]
        ids, paths = [ids[j] for j in keep], [paths[j] for j in keep]
        dataset = dataset.select(keep)
    # Own cache folder: under data.cache_dir a subfolder, so the paired cache is never overwritten.
    sub = cfg.data.cache_dir and str(Path(cfg.data.cache_dir).expanduser() / "unpaired")
    cache = inline_cache(cfg, list(zip(ids, paths, strict=True)), model_processor(model).preprocess_config,
                         output, accelerator, cache_dir=sub, unpaired=True)  # fmt: skip
    failed = dict(zip(cache.failures["id"].astype(str), cache.failures["reason"], strict=True))
    ok = np.asarray(sorted(int(r) for r in np.asarray(cache.ok_rows) if r < len(ids)), dtype=np.int64)
    unreadable += [(i, f"unpaired: signal cache failed: {r}") for i, r in failed.items()]
    data.excluded += unreadable
    data.failed += unreadable  # built in this run, always
    if uses_demographics(model):
        data.demographics["unpaired"] = demographic_arrays(dataset).subset(ok)
    data.unpaired = PairTable(ok, [ids[i] for i in ok], [""] * len(ok))  # no report: no contrastive loss
    data.unpaired_cache = cache
    data.description += f"; {len(ok)} ECGs without reports of {d.unpaired_builder} ({root.name}) mixed in"
    return len(report.failures) + len(failed) + n_paired, len(dataset) + len(report.failures) + n_paired


def open_prepared(
    cfg: PretrainConfig, preprocess_cfg: Any, output: Path | None = None, main: bool = True
) -> tuple[Any, Any, list[tuple[str, str]], str, Path]:
    """(table, cache, excluded, source name, folder) of `data.prepared`; its preprocessing must be the model's
    (otherwise a `ConfigError` with the command that rebuilds it, see `rebuild_command`)."""
    folder = resolve_data_path(cfg.data.prepared, "data.prepared")
    prepared = PreparedDataset(folder)
    # As built (a setting added since reads as its value then): a folder from before it is not refused with "{}".
    built, wanted = prepared.preprocess_config.to_dict(), preprocess_cfg.to_dict()
    if built != wanted:
        changed = {k: (built.get(k), wanted[k]) for k in sorted(wanted) if built.get(k) != wanted[k]}
        command = rebuild_command(cfg, prepared.table_meta, preprocess_cfg, output, main)
        raise ConfigError(
            f"{folder} was prepared with other preprocessing than the model's processor (prepared, model): {changed}; "
            f"rebuild it into a new folder with `{command}` and train with data.prepared=NEW_FOLDER"
        )
    failures = folder / "build_failures.csv"
    excluded = []
    if failures.is_file():
        frame = pd.read_csv(failures, dtype=str, keep_default_na=False)
        excluded = list(zip(frame["record_id"], frame["reason"], strict=True))
    return prepared.table, prepared.cache, excluded, prepared.table_meta["source"], folder


MODEL_PREPROCESS_JSON = "model_preprocess.json"


def rebuild_command(
    cfg: PretrainConfig, table_meta: dict[str, Any], preprocess_cfg: Any, output: Path | None, main: bool = True
) -> str:
    """`ecglang data build` of a prepared folder's source and root with the model's preprocessing: `--model NAME`
    when the named model config has it, else `--preprocess FILE` of a JSON written into `output` (main process)."""
    spec = find_dataset(str(table_meta.get("source", "")))
    parts = ["ecglang data build", (spec.command_name or spec.name) if spec else "SOURCE",
             str(table_meta.get("root") or "ROOT"), "--out NEW_FOLDER"]  # fmt: skip
    builder_args = table_meta.get("builder_args") or {}
    for option, placeholder in spec.required_options.items() if spec else ():  # e.g. CPSC's --reference
        value = builder_args.get(spec.cli_options.get(option, option)) or placeholder
        parts.append(f"--{option.replace('_', '-')} {value}")
    name = cfg.model.name
    if not Path(name).expanduser().is_dir():  # a checkpoint's preprocessing may be overridden here: written out
        try:
            named = load_model_config(name).processor["preprocess"]
            if PreprocessConfig.from_dict(named).to_dict() == preprocess_cfg.to_dict():
                return " ".join([*parts, f"--model {name}"])
        except (EcgLangError, KeyError, TypeError):
            pass  # model.overrides or a checkpoint changed the preprocessing: write it out instead
    if output is None:
        return " ".join([*parts, "--preprocess MODEL_PREPROCESS.json"])
    path = output / MODEL_PREPROCESS_JSON
    if main:
        output.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(preprocess_cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return " ".join([*parts, f"--preprocess {path}"])


def record_files_sha256(paths: list[str]) -> str:
    """sha256 of the name, size and mtime of every file of these records (a WFDB base path stands for its
    `.hea`/`.dat`, a `.mat` for itself and a `.hea` beside it): a record replaced, truncated or fixed on disk
    changes it. One listing per folder and one os.stat per record file (DirEntry.stat); nothing is read.
    A record whose files are missing counts as no files (it fails in the cache, and gets in once it appears)."""
    wanted: dict[str, set[str]] = {}
    bases = []
    for path in paths:
        p = Path(path).expanduser()
        base = p.with_suffix("") if p.suffix.lower() in RECORD_SUFFIXES else p
        bases.append((str(base.parent), base.name))
        wanted.setdefault(str(base.parent), set()).add(base.name)
    found: dict[tuple[str, str], list[tuple[str, int, int]]] = {}
    for folder, names in wanted.items():
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    key = entry.name if entry.name in names else entry.name.rsplit(".", 1)[0]
                    if key in names:
                        st = entry.stat()  # the one os.stat of this file
                        found.setdefault((folder, key), []).append((entry.name, st.st_size, st.st_mtime_ns))
        except OSError:
            continue  # a folder gone (or a file removed while listing): those records fail in the cache
    h = hashlib.sha256()
    for base in bases:
        h.update(json.dumps(sorted(found.get(base, []))).encode())
    return h.hexdigest()


def inline_cache(
    cfg: PretrainConfig,
    records: list[tuple[str, str]],
    preprocess_cfg: Any,
    output: Path,
    accelerator: Accelerator,
    cache_dir: str | None = None,
    unpaired: bool = False,
) -> SignalCache:
    """The signal cache built inside the run (main process first). Under several processes a cache of more than
    `data.max_inline_records` records is refused: the others would wait on it behind a barrier. `unpaired`: the
    cache of `data.unpaired_root`'s ECGs, which `ecglang data build` does not prepare (the refusal says so).

    Without `data.cache_dir` the folder is keyed by the records, the preprocessing, the seed and the size and mtime
    of every record file (`record_files_sha256`): a record file changed on disk gets a new cache, never the old
    signal. A folder given in `data.cache_dir` is reused as it is."""
    d = cfg.data
    folder = cache_dir or d.cache_dir
    main = accelerator.is_main_process
    if folder:
        path = Path(folder).expanduser()
    else:
        name = ""
        if main:
            key = default_cache_dir(records, preprocess_cfg, cfg.seed)
            name = str(key.with_name(f"{key.name}-{record_files_sha256([p for _, p in records])[:12]}"))
        if accelerator.num_processes > 1:  # the main process's folder: the others neither stat nor disagree
            name = main_process_value(name)
        path = Path(name)
    too_many = accelerator.num_processes > 1 and len(records) > d.max_inline_records
    if too_many and unpaired and not cache_is_complete(path):
        raise ConfigError(
            f"{len(records)} ECGs of data.unpaired_root={d.unpaired_root}: a {accelerator.num_processes}-process run "
            f"does not build their signal cache inside it (data.max_inline_records={d.max_inline_records}); build it "
            "first with ONE process and the same config (it trains too: schedule.max_steps=1 and another --output "
            "are enough; the cache is found again by its records and preprocessing), or raise data.max_inline_records "
            "(the other processes then wait for it, up to train.process_group_timeout_s)"
        )
    if too_many and not cache_is_complete(path):
        raise ConfigError(
            f"{len(records)} records: prepare the data before a {accelerator.num_processes}-process run instead of "
            f"building their signal cache inside it (data.max_inline_records={d.max_inline_records}):\n"
            f"  ecglang data build {build_command_name(d.builder)} {d.root} --out PREPARED --workers N   "
            "(on each node: --shard i/N)\n"
            f"then train with data.prepared=PREPARED"
        )
    with accelerator.main_process_first():
        if main:
            reused = cache_is_complete(path)
            cache = SignalCache.build(
                records, path, preprocess_cfg, num_workers=d.cache_workers, seed=cfg.seed,
                progress=cfg.logging.progress,
            )  # fmt: skip
            if not reused:
                how = "built"
            elif folder:
                how = "reused as it is (data.cache_dir: delete the folder to rebuild it after record files change)"
            else:
                how = "reused (an earlier run's, for the same record files, sizes and mtimes, and preprocessing)"
            logger.info("signal cache %s: %s", path, how)
            return cache
        return SignalCache.open(path)


def build_command_name(builder: str) -> str:
    """The name `ecglang data build` takes for a `data.builder` (mimic for mimic_ecg)."""
    spec = find_dataset(builder)
    return (spec.command_name or spec.name) if spec else builder


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in backward: the ECG tower's blocks (`torch.utils.checkpoint`, when the tower has
    blocks) and the text transformer's layers (transformers' `gradient_checkpointing_enable`)."""
    if hasattr(model.ecg_tower, "gradient_checkpointing"):
        model.ecg_tower.gradient_checkpointing = True
    else:
        logger.warning("the %s ECG tower has no gradient checkpointing", type(model.ecg_tower).__name__)
    base = model.text_tower.base_model
    if getattr(base, "supports_gradient_checkpointing", False):
        # Non-reentrant: gradients reach LoRA adapters behind frozen embeddings. (Newer transformers renamed it.)
        if hasattr(base, "activation_checkpointing_enable"):
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        logger.warning("the text model %s has no gradient checkpointing", type(base).__name__)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not on biases, norms and logit scales)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainingSetup:
    """Everything the loop works with, prepared by the accelerator."""

    model: Any  # wrapped by accelerate (DDP under several processes)
    processor: Any
    data: PretrainData
    train_ds: PretrainPairs
    val_ds: PretrainPairs
    collate: PretrainCollator
    sampler: EpochSampler
    train_loader: Any
    optimizer: Any
    scheduler: Any
    total_steps: int
    steps_per_epoch: int
    inner_model: Any  # the unwrapped model (what is hashed, saved and exported)
    objectives: PretrainObjectives | None = None  # the unwrapped model + ECG-only objectives (when any is on)
    weight_ema: WeightEMA | None = None  # the averaged weights that validation and exports use (optim.ema_decay)

    @property
    def loss_names(self) -> list[str]:
        if self.objectives is not None:
            return self.objectives.loss_names
        return list(self.inner_model.loss_fn.weights)


def freeze_all_but_ecg_tower(model: Any) -> None:
    """ECG-only runs: the text tower, the projections and the logit scales get no gradient (nothing aligns
    ECGs with text), so they are frozen: not in the optimizer, not waited for by DDP, rebuilt on resume."""
    for name, p in model.named_parameters():
        if not name.startswith("ecg_tower."):
            p.requires_grad_(False)


def keep_beside_checkpoints(accelerator: Accelerator, save: Callable[[Any], None], load: Callable[[Any], None]) -> None:
    """State that accelerate does not track, kept in each checkpoint folder: `save(folder)` by the main process
    as the checkpoint is written, `load(folder)` by every process as it is read."""
    accelerator.register_save_state_pre_hook(
        lambda _models, _weights, folder: save(folder) if accelerator.is_main_process else None
    )
    accelerator.register_load_state_pre_hook(lambda _models, folder: load(folder))


def build_training(cfg: PretrainConfig, output: Path, accelerator: Accelerator) -> TrainingSetup:
    """Seed, build the model and the data, the loaders, the optimizer and the schedule, and prepare them."""
    from accelerate.utils import set_seed  # accelerate is slow to import; loaded when a run starts
    from transformers import get_cosine_schedule_with_warmup  # slow to import, as above

    set_seed(cfg.seed)
    model = build_model(cfg.model)
    # The loss arrangement of this run; the model config records it (the step loop and checkpoints read it there).
    local = resolve_local_loss(cfg.train.local_loss, accelerator.num_processes)
    model.config.loss["local_loss"] = local
    model.loss_fn.cfg["local_loss"] = local
    if cfg.train.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    objectives = None
    if cfg.objectives.active():
        if cfg.ecg_only:
            freeze_all_but_ecg_tower(model)
        objectives = PretrainObjectives(model, cfg.objectives)  # after freezing: the EMA copy is frozen anyway
    allow_unused_parameters(accelerator, cfg, model)
    data = prepare_data(cfg, model, output, accelerator)
    processor = model_processor(model)
    beat_cfg = processor.beat_config
    inputs = "beats" if model.config.is_beat_model else "signal"
    demo = data.demographics
    order = cfg.data.order(cfg.seed)  # the data order and augmentations (the initial weights follow cfg.seed)
    train_ds: Any = PretrainPairs(
        data.cache, data.train, beat_cfg, cfg.augment, seed=order, inputs=inputs, demographics=demo.get("train")
    )
    if data.unpaired is not None:
        unpaired = PretrainPairs(data.unpaired_cache, data.unpaired, beat_cfg, cfg.augment, seed=order + 1,
                                 inputs=inputs, demographics=demo.get("unpaired"))  # fmt: skip
        train_ds = ConcatPairs([train_ds, unpaired])
    val_ds = PretrainPairs(
        data.cache, data.val, beat_cfg, None, seed=cfg.seed, inputs=inputs, demographics=demo.get("val")
    )
    collate = PretrainCollator(None if cfg.ecg_only else ReportTokenizer(model.text_tower))
    sampler = EpochSampler(len(train_ds), seed=order, shuffle=True)
    t_cfg, nw = cfg.train, cfg.data.num_workers
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=t_cfg.batch_size, sampler=sampler, drop_last=True, collate_fn=collate,
        num_workers=nw, persistent_workers=nw > 0, pin_memory=accelerator.device.type == "cuda",
        generator=torch.Generator().manual_seed(order),  # iterator creation must not consume the global RNG
    )  # fmt: skip
    if len(train_loader) == 0:
        raise ConfigError(f"{len(train_ds)} training pairs are fewer than train.batch_size={t_cfg.batch_size}")
    steps_per_epoch = math.ceil(len(train_loader) / t_cfg.grad_accum)
    sched = cfg.schedule
    total_steps = int(sched.max_steps) if sched.max_steps else max(1, math.ceil(sched.epochs * steps_per_epoch))
    if int(sched.warmup_steps) >= total_steps and accelerator.is_main_process:
        logger.warning("schedule.warmup_steps=%s is not below the run's %d optimizer steps: the learning rate only "
                       "ramps up, never reaching optim.lr nor decaying", sched.warmup_steps, total_steps)  # fmt: skip
    trained = model if objectives is None else objectives  # the objective heads train with the model
    optimizer = torch.optim.AdamW(
        param_groups(trained, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
        eps=cfg.optim.eps,
    )  # fmt: skip
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(sched.warmup_steps), total_steps)
    prepared, optimizer, train_loader, scheduler = accelerator.prepare(trained, optimizer, train_loader, scheduler)
    accelerator.register_save_state_pre_hook(drop_frozen_weights)
    if objectives is not None and (ema := EmaTargets(objectives)):
        # frozen, so not in model.safetensors: kept beside it as safetensors (never pickled)
        keep_beside_checkpoints(accelerator, ema.save, ema.load)
    unwrapped = accelerator.unwrap_model(prepared)
    weight_ema = None
    if cfg.optim.ema_decay is not None:
        weight_ema = WeightEMA(unwrapped, cfg.optim.ema_decay)
        # A checkpoint without one (the run was started without it): `Trainer` restarts it from the loaded weights.
        keep_beside_checkpoints(accelerator, weight_ema.save, functools.partial(weight_ema.load, missing_ok=True))
    return TrainingSetup(
        model=prepared, processor=processor, data=data, train_ds=train_ds, val_ds=val_ds, collate=collate,
        sampler=sampler, train_loader=train_loader, optimizer=optimizer, scheduler=scheduler,
        total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        inner_model=unwrapped if objectives is None else unwrapped.model,
        objectives=None if objectives is None else unwrapped, weight_ema=weight_ema,
    )  # fmt: skip


__all__ = [
    "LOCAL_LOSS_MIN_WORLD",
    "MODEL_PREPROCESS_JSON",
    "PretrainData",
    "TrainingSetup",
    "build_command_name",
    "build_model",
    "build_training",
    "create_accelerator",
    "demographic_arrays",
    "enable_gradient_checkpointing",
    "freeze_all_but_ecg_tower",
    "has_accelerator",
    "inline_cache",
    "keep_beside_checkpoints",
    "mixed_precision_mode",
    "model_processor",
    "no_training_pairs",
    "open_prepared",
    "param_groups",
    "prepare_data",
    "rebuild_command",
    "record_files_sha256",
    "record_key",
    "resolve_data_path",
    "resolve_local_loss",
    "unused_parameters_reason",
    "uses_demographics",
]

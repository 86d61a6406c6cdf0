"""Pretraining data: ECG–report pairs from a builder dataset and its signal cache (augmented by
`ecglang.signal.augment`), a seeded epoch sampler, and the collate that runs in DataLoader workers.

Memory is O(batch): `PretrainPairs[i]` reads one memmap row of the `SignalCache`, augments it (training
only), cuts it into beats with `ecglang.beats.tokenize.tokenize_array` (searched in the record only, not in the
padding of a shorter record: `SignalCache.n_valid`, as zero-shot does) and returns numpy arrays plus the report
text; `PretrainCollator` stacks a batch and tokenizes the reports. Both run inside DataLoader workers.

Determinism: the training sampler (`EpochSampler`) yields `(epoch, index)` pairs whose order is a pure
function of `(seed, epoch)`, and the augmentation of a sample draws from `numpy.random.default_rng([seed,
epoch, index])`. What a batch holds therefore depends on neither the number of workers nor on where a
run was resumed, so `--resume` sees exactly the batches the interrupted run would have seen.

A record whose beats cannot be found (fewer than `min_beats`) is not an error for the run: the item comes
back as a *skip* marker, the collate leaves it out of the batch and lists `(id, reason)` in
`batch["skipped"]`, and the trainer logs and saves every skipped record. When only the augmented
signal fails (e.g. random lead masking left a lead without clear QRS), the unaugmented signal is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ecglang.beats.tokenize import BeatConfig, tokenize_array
from ecglang.data.cache import SignalCache
from ecglang.encoders.layers import trim_beat_axis
from ecglang.encoders.text_encoder import TextEncoder
from ecglang.errors import ConfigError, EcgLangError
from ecglang.signal.augment import AugmentConfig, augment_signal

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- sampling
class EpochSampler(Sampler[tuple[int, int]]):
    """Yields `(epoch, index)` for every index of a dataset of size `n`, in an order that is a pure function
    of `(seed, epoch)` (a permutation when `shuffle`). Call `set_epoch` before each epoch.

    Carrying the epoch in the item lets the dataset seed each sample's augmentation from `(seed, epoch,
    index)` without shared state between the main process and the DataLoader workers."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        if n < 1:
            raise ConfigError("the training set is empty")
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The index order of `epoch`."""
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, int(i)) for i in self.order(epoch)])

    def __len__(self) -> int:
        return self.n


# ---------------------------------------------------------------------------------------------- dataset
@dataclass
class PairTable:
    """The pairs of one split: cache rows, record ids and report texts (same length)."""

    rows: np.ndarray
    ids: list[str]
    reports: list[str]  # "" for an ECG without a report (ECG-only objectives only)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> PairTable:
        idx = np.asarray(index, dtype=np.int64)
        return PairTable(self.rows[idx], [self.ids[i] for i in idx], [self.reports[i] for i in idx])


@dataclass
class Demographics:
    """Age and sex of the items of a `PairTable` (same order), for a tower with `demographics: true`. Kept apart
    from the table: validation reads ids, cache rows and report texts only."""

    age: np.ndarray  # float32 years, NaN unknown (ecglang.record.demographics)
    sex: np.ndarray  # int64 0 unknown, 1 male, 2 female

    def subset(self, index: Sequence[int] | np.ndarray) -> Demographics:
        idx = np.asarray(index, dtype=np.int64)
        return Demographics(self.age[idx], self.sex[idx])


class PretrainPairs(Dataset):
    """Map-style dataset of ECG–report pairs.

    Items are dicts of numpy arrays (`beats, beat_mask, lead_mask, rr, times` for the beat tower, or `signal,
    lead_mask` with `inputs="signal"` for the ResNet baseline) plus `report`, `has_report` (False for an ECG
    without one), `id` and `index`, and `age`/`sex` when `demographics` is given (a tower that reads them);
    or a skip marker `{"skip": True, "id", "reason", "index"}` for a record without usable beats.

    Indexing: an int `i` (validation: no augmentation), or `(epoch, i)` from `EpochSampler` (training:
    augmentation seeded by `(seed, epoch, i)`).
    """

    def __init__(
        self,
        cache: SignalCache,
        pairs: PairTable,
        beat_cfg: BeatConfig | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        inputs: str = "beats",
        demographics: Demographics | None = None,
    ) -> None:
        if inputs not in ("beats", "signal"):
            raise ConfigError(f"inputs must be 'beats' or 'signal', got {inputs!r}")
        self.cache = cache
        self.pairs = pairs
        self.beat_cfg = beat_cfg or BeatConfig()
        self.augment = augment if augment is not None and augment.active else None
        self.seed = int(seed)
        self.inputs = inputs
        self.fs = cache.fs
        self.demographics = demographics
        if demographics is not None and len(demographics.age) != len(pairs):
            raise ConfigError(f"{len(demographics.age)} ages for {len(pairs)} items")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = (None, int(key)) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        row, record_id, report = int(self.pairs.rows[i]), self.pairs.ids[i], self.pairs.reports[i]
        try:
            signal, mask = self.cache[row]
        except EcgLangError as exc:
            return {"skip": True, "id": record_id, "reason": str(exc), "index": i}
        item: dict[str, Any] = {"report": report, "has_report": bool(report.strip()), "id": record_id, "index": i}
        if self.demographics is not None:
            item["age"], item["sex"] = np.float32(self.demographics.age[i]), np.int64(self.demographics.sex[i])
        if self.augment is not None and epoch is not None:
            rng = np.random.default_rng([self.seed, epoch, i])
            aug = augment_signal(signal, mask, self.fs, self.augment, rng)
        else:
            aug = None
        if self.inputs == "signal":
            x, m, _ = aug if aug is not None else (signal, mask, None)
            item.update(signal=x, lead_mask=m)
            return item
        tokens = None
        # Beats are searched in the record, not in the padding that preprocessing added (as zero-shot does).
        n_valid = self.cache.n_valid(row)
        if aug is not None:
            # the shift moved that padding (T - n_valid samples at the end) earlier by as much as it zeroed at the end
            shifted = aug[2] if n_valid is None else max(0, aug[2] - (signal.shape[1] - n_valid))
            try:
                tokens = tokenize_array(aug[0], self.fs, aug[1], self.beat_cfg, n_valid=shifted, record=record_id)
            except EcgLangError:
                tokens = None  # the augmentation hid the beats: fall back to the record as cached
        if tokens is None:
            try:
                tokens = tokenize_array(signal, self.fs, mask, self.beat_cfg, n_valid=n_valid, record=record_id)
            except EcgLangError as exc:
                return {"skip": True, "id": record_id, "reason": str(exc), "index": i}
        item.update(
            beats=tokens.beats, beat_mask=tokens.beat_mask, lead_mask=tokens.lead_mask, rr=tokens.rr, times=tokens.times
        )
        return item


# ---------------------------------------------------------------------------------------------- collate
class ReportTokenizer:
    """Picklable report tokenizer with exactly the behaviour of `EcgLangModel.tokenize`.

    The collate runs in DataLoader workers, which must not receive a copy of the model; this object holds
    only the text tower's tokenizer and settings and reuses `TextEncoder.tokenize` (token and sentence
    masks included)."""

    tokenize = TextEncoder.tokenize

    def __init__(self, text_tower: TextEncoder) -> None:
        if text_tower.tokenizer is None:
            raise ConfigError("the model's text tower has no tokenizer attached")
        self.tokenizer = text_tower.tokenizer
        self.cfg = dict(text_tower.cfg)
        self.source = text_tower.source

    def __call__(self, texts: Sequence[str]) -> dict[str, Tensor]:
        return self.tokenize(list(texts))


class ConcatPairs(Dataset):
    """Several `PretrainPairs` (e.g. the pairs and the ECGs without reports) as one dataset for `EpochSampler`:
    index `i` of the whole is index `i - offset` of its part; training keys `(epoch, i)` keep their epoch."""

    def __init__(self, parts: Sequence[PretrainPairs]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])
        first = parts[0]
        self.cache, self.pairs, self.beat_cfg, self.inputs = first.cache, first.pairs, first.beat_cfg, first.inputs

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = (None, int(key)) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        part = int(np.searchsorted(self.offsets, i, side="right")) - 1
        local = i - int(self.offsets[part])
        item = self.parts[part][local if epoch is None else (epoch, local)]
        item["index"] = i
        return item


_ECG_KEYS = ("beats", "beat_mask", "lead_mask", "rr", "times", "signal", "age", "sex")


@dataclass
class PretrainCollator:
    """Stack items into model inputs and tokenize the reports. Skip markers are left out and listed.

    The beat axis is cut to the longest record of the batch (beats `[B, n, 12, L]`, n <= max_beats).

    Output: the ECG tensors present in the items, `input_ids, attention_mask, token_mask, sentence_ids`,
    `ids` (list[str]), `reports` (list[str]), `index` (LongTensor), `has_report` (BoolTensor: which items the
    contrastive losses may use) and `skipped` (list of `(id, reason)`). An all-skipped batch has only
    `ids=[]`, `reports=[]` and `skipped`. `tokenize=None` (ECG-only runs): no report tokens."""

    tokenize: Callable[[Sequence[str]], Mapping[str, Tensor]] | None
    keys: tuple[str, ...] = field(default=_ECG_KEYS)

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        ok = [it for it in items if not it.get("skip")]
        skipped = [(str(it["id"]), str(it["reason"])) for it in items if it.get("skip")]
        batch: dict[str, Any] = {"ids": [it["id"] for it in ok], "reports": [it["report"] for it in ok]}
        batch["skipped"] = skipped
        if not ok:
            return batch
        for key in self.keys:
            if key in ok[0]:
                batch[key] = torch.from_numpy(np.stack([np.asarray(it[key]) for it in ok]))
        if "beat_mask" in batch:
            trim_beat_axis(batch)  # pad to the batch's longest record, not to max_beats
        batch["index"] = torch.tensor([int(it["index"]) for it in ok], dtype=torch.long)
        batch["has_report"] = torch.tensor([bool(it.get("has_report", True)) for it in ok], dtype=torch.bool)
        if self.tokenize is not None:
            batch.update(self.tokenize(batch["reports"]))
        return batch


# ------------------------------------------------------------------------------------------------ split
def heldout_split(
    dataset: datasets.Dataset,
    val_folds: Sequence[int] | None = None,
    val_fraction: float | None = None,
    group_column: str | None = None,
    seed: int = 0,
    val_max: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split builder rows into `(train_index, val_index)` (positions in `dataset`).

    Exactly one of: `val_folds` (rows whose `fold` is listed are held out; PTB-XL's strat_fold keeps a
    patient's records together), or `val_fraction` (a seeded random fraction of the groups in
    `group_column`, e.g. `patient_id` / `subject_id`, so no patient is on both sides; rows when None).
    `val_max` caps the held-out size (a seeded choice among the held-out rows; the rest is not trained on).
    Neither option reads any label column."""
    n = len(dataset)
    if (val_folds is None) == (val_fraction is None):
        raise ConfigError("set exactly one of data.val_folds and data.val_fraction (the held-out selection)")
    if val_folds is not None:
        if "fold" not in dataset.column_names:
            raise ConfigError("data.val_folds needs a 'fold' column in the dataset")
        folds = np.asarray(dataset["fold"])
        is_val = np.isin(folds, np.asarray(list(val_folds), dtype=folds.dtype))
    else:
        frac = float(val_fraction)  # type: ignore[arg-type]
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        if group_column is not None:
            if group_column not in dataset.column_names:
                raise ConfigError(f"data.val_group column {group_column!r} is not in the dataset")
            groups = np.asarray([str(g) for g in dataset[group_column]])
        else:
            groups = np.arange(n).astype(str)
        unique = np.unique(groups)
        rng = np.random.default_rng([int(seed), 7919])
        n_val_groups = max(1, round(frac * len(unique)))
        chosen = rng.choice(unique, size=n_val_groups, replace=False)
        is_val = np.isin(groups, chosen)
    val = np.flatnonzero(is_val)
    train = np.flatnonzero(~is_val)
    if val_max is not None and len(val) > int(val_max):
        rng = np.random.default_rng([int(seed), 104729])
        val = np.sort(rng.choice(val, size=int(val_max), replace=False))
    if len(train) == 0:
        raise ConfigError("the held-out selection leaves no training pairs")
    return train, val


__all__ = [
    "ConcatPairs",
    "Demographics",
    "EpochSampler",
    "PairTable",
    "PretrainCollator",
    "PretrainPairs",
    "ReportTokenizer",
    "heldout_split",
]

"""What readers of preprocessed rows rely on: the `CachedRows` interface that a `SignalCache` and a prepared
folder's shards (`data.prepared.ShardedCache`) both give, and a map-style dataset over such rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ecglang.signal.preprocess import PreprocessConfig


class CachedRows(Protocol):
    """What scoring and embedding read from preprocessed rows: a `SignalCache`, or a prepared folder's shards
    read as one (`data.prepared.ShardedCache`). `rows[i]` → `(signal float32 [12, T], lead_mask bool [12])`."""

    directory: Path

    @property
    def fs(self) -> float: ...
    @property
    def config(self) -> PreprocessConfig: ...
    @property
    def ids(self) -> list[str]: ...
    @property
    def paths(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __getitem__(self, row: int) -> tuple[np.ndarray, np.ndarray]: ...
    def n_valid(self, row: int) -> int | None:
        """How many leading samples of `rows[row]` hold the record, the rest being the padding that preprocessing
        added to a shorter record: beats are searched there only, as zero-shot does (`tokenize_beats` reads the
        same count from `metadata["pad_samples"]`). None where the rows do not say (a cache of format 1)."""
        ...


class SignalCacheDataset:
    """Map-style dataset over some rows of a `SignalCache` or any `CachedRows` (works with
    `torch.utils.data.DataLoader`, whose default collate turns the numpy arrays into tensors). Items:
    `{"signal": float32 [12, T], "lead_mask": bool [12], "row": int}`; memory is one item at a time."""

    def __init__(self, cache: CachedRows, rows: np.ndarray) -> None:
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        signal, mask = self.cache[row]
        return {"signal": signal, "lead_mask": mask, "row": row}


__all__ = ["CachedRows", "SignalCacheDataset"]

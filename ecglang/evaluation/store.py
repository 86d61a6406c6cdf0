"""`EmbeddingStore`: every record of an evaluation encoded once per preprocessing, by every model at once.

Records go through the one records → embeddings pipeline (`ecglang.embeddings.pipeline`); the store keeps
only unit rhythm embeddings and pooled features per model, so memory grows with the number of records, not
with signal length. Records shared by label sets (PTB-XL super/sub/form/rhythm, probe parts, retrieval)
are encoded once. Failed records are kept with the label sets they affect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.embeddings.pipeline import default_processor, embed_records
from ecglang.embeddings.sources import ItemSource
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError, RecordFailure
from ecglang.evaluation.config import PREPROCESS
from ecglang.signal.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from ecglang.encoders.modeling import EcgLangModel


def processor_for(model: EcgLangModel, preprocess: str, dataset: str) -> EcgProcessor:
    """The model's processor (`preprocess="default"`), or its MERL-compatible variant (`"merl_compat"`, same
    beat settings and lead order) for `dataset`; anything else is a `ConfigError`.

    MERL's input depends on the dataset (CPSC 2018: the first 2500 samples, zero-padded to 5000): a model whose
    own contract is MERL's (a converted MERL checkpoint stores `merl_compat()`) gets its `dataset` form by default
    too, as MERL evaluated it. The lead order is always the model's (MERL's weights expect aVF before aVL)."""
    if preprocess not in PREPROCESS:
        raise ConfigError(f"preprocess must be one of {list(PREPROCESS)}, got {preprocess!r}")
    base = model.get_processor() if model.config.processor is not None else default_processor(model)
    if preprocess == "default" and base.preprocess_config.to_dict() != PreprocessConfig.merl_compat().to_dict():
        return base
    return EcgProcessor(
        preprocess=PreprocessConfig.merl_compat(dataset), beats=base.beat_config, return_signal=base.return_signal,
        lead_order=base.lead_order,
    )  # fmt: skip


class EmbeddingStore:
    """Encodes records with several models in one pass and remembers the results.

    Each record is read and processed once per processor (preprocessing contract); the prepared batch goes
    through every model. Only embeddings are kept (`[n, D]` per model); signals live one batch at a time.
    """

    def __init__(
        self,
        models: Mapping[str, EcgLangModel],
        batch_size: int = 64,
        progress: bool = True,
        num_workers: int | None = None,
        keep_leads: np.ndarray | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.models = dict(models)
        self.batch_size = int(batch_size)
        self.progress = progress
        self.num_workers = num_workers
        self.keep_leads = keep_leads  # [12] bool: evaluate as if only these leads were recorded
        self._rows: dict[tuple[str, str], int] = {}
        self._embeds: dict[str, list[np.ndarray]] = {k: [] for k in self.models}
        self._features: dict[str, list[np.ndarray]] = {k: [] for k in self.models}
        self._n = 0
        self.failures: dict[tuple[str, str], RecordFailure] = {}
        self._stacked: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def encode(
        self,
        paths: Sequence[str],
        record_ids: Sequence[str],
        processor: EcgProcessor,
        label_set: str = "",
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> np.ndarray:
        """Row of each record in the store (`-1` for a failed record); encodes the ones not seen yet.

        `metadata`: per record, what its file lacks and the dataset's table knows (PTB-XL age/sex), for a
        tower that reads it. A record's row is kept by path: it must get the same metadata every time."""
        pkey = json.dumps(processor.to_dict(), sort_keys=True)
        extra = dict(zip(paths, metadata, strict=True)) if metadata is not None else {}
        todo = [(p, r) for p, r in dict(zip(paths, record_ids, strict=True)).items() if (pkey, p) not in self._rows]
        todo = [(p, r) for p, r in todo if (pkey, p) not in self.failures]
        if todo:
            desc = f"encoding ECGs{f' ({label_set})' if label_set else ''}"
            self._encode(todo, processor, pkey, desc, [extra.get(p) or {} for p, _ in todo] if extra else None)
        rows = np.array([self._rows.get((pkey, p), -1) for p in paths], dtype=np.int64)
        for p in paths:
            if (pkey, p) in self.failures and label_set and label_set not in self.failures[(pkey, p)].label_sets:
                self.failures[(pkey, p)].label_sets.append(label_set)
        return rows

    def _encode(
        self,
        todo: list[tuple[str, str]],
        processor: EcgProcessor,
        pkey: str,
        desc: str,
        metadata: list[Mapping[str, Any]] | None = None,
    ) -> None:
        todo_paths = [p for p, _ in todo]
        window = processor.preprocess_config.read_window()  # long records are read only as far as used
        source = ItemSource(todo_paths, record_ids=[r for _, r in todo], window=window, keep_leads=self.keep_leads,
                            metadata=metadata)  # fmt: skip
        table = embed_records(source, self.models, processor, batch_size=self.batch_size,
                              num_workers=self.num_workers, progress=self.progress, desc=desc)  # fmt: skip
        for f, pos in zip(table.failures, table.failed_positions, strict=True):
            # Failures are named by path, as the record list of the label set names them.
            path = todo_paths[pos]
            self.failures[(pkey, path)] = RecordFailure(path, f.stage, f.reason, path=path)
        for key in self.models:
            if len(table.positions):
                self._embeds[key].append(table.embeddings[key])
                self._features[key].append(table.features[key])
        for pos in table.positions:
            self._rows[(pkey, todo_paths[pos])] = self._n
            self._n += 1
        self._stacked.clear()

    def _arrays(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._stacked:
            emb = np.concatenate(self._embeds[key]) if self._embeds[key] else np.zeros((0, 0), np.float32)
            feat = np.concatenate(self._features[key]) if self._features[key] else np.zeros((0, 0), np.float32)
            self._embeds[key], self._features[key] = [emb], [feat]
            self._stacked[key] = (emb, feat)
        return self._stacked[key]

    def embeddings(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Unit rhythm embeddings `[len(rows), D]` of model `key`."""
        return self._arrays(key)[0][rows]

    def features(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Pooled ECG-tower features before projection `[len(rows), d]` (for linear probes)."""
        return self._arrays(key)[1][rows]

    def failure_list(self) -> list[RecordFailure]:
        """Every failed record, sorted by name."""
        return sorted(self.failures.values(), key=lambda f: f.record)

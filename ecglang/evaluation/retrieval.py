"""ECG ↔ report retrieval on held-out PTB-XL pairs: recall@1/5/10 in both directions.

Pairs are the PTB-XL records of the chosen `strat_fold`s whose normalised English report is not empty
(`build_ptbxl`). Reports that repeat an earlier pair's report word for word (case and punctuation aside,
`report_key`; PTB-XL has many "sinus rhythm. normal ecg.") are dropped, keeping the first: with two
identical reports the "correct" item is undefined. Recall CIs resample the queries (`--n-boot`, `--seed`).
Similarities are cosines of the rhythm embedding and the report embedding (`encode_text`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.errors import ConfigError
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import parse_data_roots, ptbxl_index, sample_limit
from ecglang.evaluation.metrics import retrieval_recall
from ecglang.evaluation.store import EmbeddingStore, processor_for
from ecglang.scores.prompts import normalize_text

if TYPE_CHECKING:
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.scores.classifier import ZeroShotClassifier

__all__ = ["RetrievalPairs", "load_retrieval_pairs", "report_key", "retrieval_metrics", "run_retrieval"]

log = logging.getLogger(__name__)

KS = (1, 5, 10)


@dataclass
class RetrievalPairs:
    """Held-out ECG–report pairs and what was left out."""

    record_ids: list[str]
    paths: list[str]
    reports: list[str]
    folds: list[int]
    n_candidates: int = 0  # records of the folds in ptbxl_database.csv that are on disk
    n_empty: int = 0
    n_duplicates: int = 0
    n_limited: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    metadata: list[dict[str, Any]] | None = None  # per pair: age/sex from ptbxl_database.csv


def report_key(text: str) -> str:
    """What makes two reports the same for retrieval: words only, case and punctuation aside ("sinus rhythm.
    normal ecg." and "sinus rhythm normal ecg." are one report; both kept, the right one was a coin toss)."""
    return " ".join(re.findall(r"\w+", normalize_text(text)))


def load_retrieval_pairs(
    ptbxl_root: str | Path, folds: Iterable[int], limit: int | None = None, seed: int = 0
) -> RetrievalPairs:
    """PTB-XL records of `folds` with a non-empty, not-repeated report (see the module docstring).

    `limit` keeps a seeded random sample of the pairs (in file order).
    """
    fold_list = sorted({int(f) for f in folds})
    if not fold_list:
        raise ConfigError("retrieval needs at least one PTB-XL fold")
    index = ptbxl_index(ptbxl_root)
    ids = [i for i, f in index.folds.items() if f in fold_list]
    seen: set[str] = set()
    keep, n_empty, n_dup = [], 0, 0
    for rid in ids:
        text = index.reports[rid]
        key = report_key(text)
        if not key:
            n_empty += 1
        elif key in seen:
            n_dup += 1
        else:
            seen.add(key)
            keep.append(rid)
    n_before = len(keep)
    (keep,) = sample_limit(limit, seed, keep)
    return RetrievalPairs(
        record_ids=keep, paths=[index.paths[r] for r in keep], reports=[index.reports[r] for r in keep],
        folds=fold_list, n_candidates=len(ids), n_empty=n_empty, n_duplicates=n_dup,
        n_limited=n_before - len(keep), metadata=[index.demographics.get(r, {}) for r in keep],
    )  # fmt: skip


def retrieval_metrics(
    ecg_embeds: np.ndarray, text_embeds: np.ndarray, ks: Sequence[int] = KS, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Recall@k of ECG→report (`sim`) and report→ECG (`sim.T`), pair i being ECG i with report i; CIs from
    `n_boot` resamples of the queries (none for 0)."""
    e = ecg_embeds / np.maximum(np.linalg.norm(ecg_embeds, axis=1, keepdims=True), 1e-12)
    t = text_embeds / np.maximum(np.linalg.norm(text_embeds, axis=1, keepdims=True), 1e-12)
    sim = e.astype(np.float64) @ t.astype(np.float64).T
    return {direction: retrieval_recall(m, ks, n_resamples=n_boot, seed=seed)
            for direction, m in (("ecg_to_report", sim), ("report_to_ecg", sim.T))}  # fmt: skip


def run_retrieval(
    cfg: EvaluateConfig,
    store: EmbeddingStore,
    classifiers: Mapping[str, ZeroShotClassifier],
    model: EcgLangModel,
) -> dict[str, Any]:
    """Retrieval entry of `results.json` for every model in `classifiers` (same keys as the store)."""
    roots = parse_data_roots(cfg.data_roots)
    root = roots.get("ptbxl") or roots.get("default")
    if root is None:
        return {"status": "retrieval needs a PTB-XL root (--data-root DIR or ptbxl=DIR)"}
    pairs = load_retrieval_pairs(root, cfg.retrieval_folds, cfg.retrieval_limit, cfg.seed)
    entry: dict[str, Any] = {
        "dataset": "ptbxl", "root": str(root), "folds": pairs.folds, "candidates": pairs.n_candidates,
        "dropped_empty_reports": pairs.n_empty, "dropped_duplicate_reports": pairs.n_duplicates,
        "left_out_by_limit": pairs.n_limited,
    }  # fmt: skip
    rows = store.encode(pairs.paths, pairs.record_ids, processor_for(model, cfg.preprocess, "ptbxl"),
                        label_set="retrieval", metadata=pairs.metadata)  # fmt: skip
    ok = rows >= 0
    entry["failed"] = int((~ok).sum())
    entry["pairs"] = int(ok.sum())
    if ok.sum() < 2:
        entry["status"] = (
            f"retrieval skipped: {int(ok.sum())} usable pair(s) in folds {pairs.folds} under {root} "
            f"({pairs.n_candidates} records of those folds in ptbxl_database.csv)"
        )
        log.warning(entry["status"])
        return entry
    reports = [r for r, good in zip(pairs.reports, ok, strict=True) if good]
    for key, clf in classifiers.items():
        text = clf.embed_texts(reports)
        entry[key] = retrieval_metrics(store.embeddings(key, rows[ok]), text, n_boot=cfg.n_boot, seed=cfg.seed)
    n = int(ok.sum())
    entry.update({f"chance_recall@{k}": min(k, n) / n for k in KS})  # 1 where k >= the pairs: no test at all
    return entry

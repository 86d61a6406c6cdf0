"""Held-out validation of pretraining: ECG↔report retrieval and zero-shot AUROC of held-out pairs.

Held-out ECG–report pairs only: ECG↔report retrieval recall@1/5/10 in both directions, and zero-shot macro
AUROC of the held-out ECGs against the label names of `ecglang.text.labels`, whose ground truth is read from
those pairs' own reports. The selection metric (checkpoint choice and early stopping) is the mean of
`selection.metrics` (default: ECG→report recall@1 and the zero-shot AUROC). No downstream label set is ever
read: the validation data holds ECGs and report texts, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ecglang.embeddings.pipeline import embed_cache_rows
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError
from ecglang.evaluation.metrics import macro_auroc, per_class_auroc
from ecglang.record.demographics import demographics_metadata
from ecglang.text.labels import report_label_matrix, report_label_names
from ecglang.training.pairs import PretrainPairs

if TYPE_CHECKING:  # for hints only: accelerate is imported where training starts
    from accelerate import Accelerator

RECALL_K = (1, 5, 10)


def group_ids(reports: Sequence[str]) -> np.ndarray:
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
    groups = group_ids(reports)
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
def encode_heldout_pairs(
    model: Any, dataset: PretrainPairs, accelerator: Accelerator, batch_size: int, num_workers: int
) -> dict[str, Any]:
    """Embed this process's shard of the held-out pairs: ECGs through the one records → embeddings pipeline
    (`ecglang.embeddings.pipeline.embed_cache_rows`, the path zero-shot and evaluation use), reports through
    the text tower.

    Returns `{"index", "ecg", "text", "skipped"}`: pair indices, ECG (rhythm) and report embeddings as
    float32 arrays (None when the shard is empty) and the records without usable beats."""
    inner = accelerator.unwrap_model(model)
    rank, world = accelerator.process_index, accelerator.num_processes
    positions = np.arange(rank, len(dataset), world)
    processor = EcgProcessor(dataset.cache.config, dataset.beat_cfg, return_signal=dataset.inputs == "signal")
    precision = {"bf16": "bf16", "fp16": "fp16"}.get(str(accelerator.mixed_precision), "fp32")
    demo = dataset.demographics  # the table's age/sex, for a tower that reads them (as training batches have)
    metadata = None if demo is None else [demographics_metadata(demo.age[i], demo.sex[i]) for i in positions]
    table = embed_cache_rows(inner, dataset.cache, dataset.pairs.rows[positions], processor=processor,
                             batch_size=batch_size, num_workers=num_workers, precision=precision,
                             metadata=metadata)  # fmt: skip
    skipped = [(dataset.pairs.ids[positions[p]], f.reason) for f, p in zip(table.failures, table.failed_positions,
                                                                            strict=True)]  # fmt: skip
    index = [int(positions[p]) for p in table.positions]
    if not index:
        return {"index": [], "ecg": None, "text": None, "skipped": skipped}
    reports = [dataset.pairs.reports[i] for i in index]
    text = []
    for start in range(0, len(reports), batch_size):
        with accelerator.autocast():
            text.append(inner.encode_text(reports[start : start + batch_size]).text_embeds.float().cpu().numpy())
    return {"index": index, "ecg": table.embeddings["model"], "text": np.concatenate(text), "skipped": skipped}


@torch.no_grad()
def evaluate(
    model: Any,
    dataset: PretrainPairs,
    accelerator: Accelerator,
    batch_size: int,
    num_workers: int,
    selection: Sequence[str],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Embed the held-out pairs (sharded over processes), gather them, and compute `pair_metrics`.

    Returns `(metrics with "selection", skipped records)`; every process gets the same result."""
    from accelerate.utils import gather_object  # accelerate is slow to import; loaded when validating

    inner = accelerator.unwrap_model(model)
    was_training = inner.training
    inner.eval()
    local = encode_heldout_pairs(model, dataset, accelerator, batch_size, num_workers)
    with accelerator.autocast():
        label_names = report_label_names()
        labels = inner.encode_text(label_names).text_embeds.float().cpu().numpy()
    if was_training:
        inner.train()
    parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
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


__all__ = [
    "RECALL_K",
    "encode_heldout_pairs",
    "evaluate",
    "group_ids",
    "grouped_recall",
    "pair_metrics",
    "selection_score",
]

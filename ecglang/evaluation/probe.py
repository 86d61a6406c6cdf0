"""Linear probe on frozen features: a logistic-regression head per label fraction.

The head is one `torch.nn.Linear` trained with `BCEWithLogitsLoss` (multi-label) and AdamW on features
standardised with the mean/std of the training subset actually used. Weights start at zero — the loss is
convex, so no random initialisation is needed and training is deterministic given the seed (which only
picks the subset and the mini-batch order).

The evaluation protocol's probe (`run_probe_for_set`): for one label set, the records of the probe's train
part and test part (each optionally restricted to PTB-XL folds) are encoded through the shared
`EmbeddingStore`, so records already encoded for zero-shot cost nothing. The features are `rhythm_features`:
the pooled ECG-tower output before the projection head, the representation a downstream user would
fine-tune from. The same is done for the random-encoder baseline (same records, same head training), which
shows what the architecture alone gives.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ecglang.errors import ConfigError
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import LabelSetData, load_label_set, load_labels_csv, parse_data_roots, sample_limit
from ecglang.evaluation.metrics import (
    EvalResult,
    as_labels,
    evaluate_scores,
    label_names_from,
    macro_auroc,
    skip_reason,
)
from ecglang.evaluation.results import MODEL, RANDOM
from ecglang.evaluation.store import EmbeddingStore

if TYPE_CHECKING:
    from ecglang.encoders.ecg_processing import EcgProcessor

__all__ = ["ProbeSkipped", "fraction_label", "linear_probe", "probe_parts", "run_probe_for_set", "stratified_subset"]

log = logging.getLogger(__name__)


def stratified_subset(y: Any, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of about `fraction` of the records.

    "Stratified-ish": before filling up at random, one random positive and one random negative of every
    class are taken (rarest class first) wherever the full set has them, so each class can be learned
    and evaluated even at 1 %. When there are more classes than the target size allows, the subset grows
    beyond `ceil(fraction * N)` to keep that guarantee. `fraction >= 1` returns every record.
    """
    labels = as_labels(y, "train_y")
    n = labels.shape[0]
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ConfigError(f"label fraction must lie in (0, 1], got {fraction!r}")
    if fraction >= 1:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    target = max(1, math.ceil(fraction * n))
    chosen = np.zeros(n, dtype=bool)
    for c in np.argsort(labels.sum(axis=0), kind="stable"):
        for value in (True, False):
            if (labels[chosen, c] == value).any():
                continue
            candidates = perm[labels[perm, c] == value]  # in permutation order, i.e. a random one first
            if candidates.size:
                chosen[candidates[0]] = True
    missing = target - int(chosen.sum())
    if missing > 0:
        rest = perm[~chosen[perm]]
        chosen[rest[:missing]] = True
    return np.flatnonzero(chosen)


def _as_features(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric [N, D] array: {exc}") from None
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ConfigError(f"{name} must be a non-empty [N, D] array, got shape {a.shape}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ConfigError(
            f"{name} has non-finite values in {int(bad.sum())} rows (first: {np.flatnonzero(bad)[:5].tolist()})"
        )
    return a


def _check_split(x: Any, y: Any, name: str, dim: int | None, n_cls: int | None) -> tuple[np.ndarray, np.ndarray]:
    xa = _as_features(x, f"{name}_x")
    ya = as_labels(y, f"{name}_y")
    if ya.shape[0] != xa.shape[0]:
        raise ConfigError(f"{name}_x has {xa.shape[0]} records but {name}_y has {ya.shape[0]}")
    if dim is not None and xa.shape[1] != dim:
        raise ConfigError(f"{name}_x has {xa.shape[1]} features but train_x has {dim}")
    if n_cls is not None and ya.shape[1] != n_cls:
        raise ConfigError(f"{name}_y has {ya.shape[1]} classes but train_y has {n_cls}")
    return xa, ya


def _train_head(
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int | None,
    seed: int,
    val: tuple[np.ndarray, np.ndarray] | None,
    eval_every: int,
    progress: bool | None,
    desc: str,
) -> tuple[torch.nn.Linear, dict[str, Any]]:
    """Train the head on standardised features; with `val`, keep the state of best validation macro AUROC."""
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y.astype(np.float32))
    head = torch.nn.Linear(x.shape[1], y.shape[1])
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    bs = n if batch_size is None else min(batch_size, n)
    best = (-math.inf, 0, None)  # (val macro AUROC, epoch, state)
    meta: dict[str, Any] = {}
    disable = None if progress is None else not progress
    for epoch in tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=disable, leave=False):
        order = torch.randperm(n, generator=gen) if bs < n else None
        for start in range(0, n, bs):
            idx = order[start : start + bs] if order is not None else slice(None)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(head(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if val is not None and (epoch % eval_every == 0 or epoch == epochs):
            with torch.no_grad():
                s = head(torch.from_numpy(val[0])).numpy()
            score = macro_auroc(val[1], s)
            if not math.isnan(score) and score > best[0]:
                best = (score, epoch, {k: v.clone() for k, v in head.state_dict().items()})
    meta["final_train_loss"] = float(loss.detach())
    if val is not None:
        if best[2] is None:
            log.warning("validation split has no class with both values; using the last epoch")
            meta["best_epoch"] = epochs
        else:
            head.load_state_dict(best[2])
            meta["best_epoch"], meta["val_macro_auroc"] = best[1], best[0]
    return head, meta


def linear_probe(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    seed: int = 0,
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    val_x: Any = None,
    val_y: Any = None,
    *,
    label_names: Sequence[str] | None = None,
    batch_size: int | None = None,
    eval_every: int = 10,
    n_boot: int = 1000,
    num_threads: int | None = None,
    progress: bool | None = None,
) -> dict[float, EvalResult]:
    """Fit a linear head on frozen features for each label fraction and evaluate it on the test split.

    Args:
        train_x, test_x, val_x: `[N, D]` frozen features. train_y, test_y, val_y: `[N, C]` 0/1 labels.
        fractions: label fractions in (0, 1]; each draws its subset with
            `stratified_subset(train_y, f, seed)`.
        epochs, lr, weight_decay: AdamW schedule (constant lr). batch_size: None = full batch.
        val_x, val_y: optional validation split; then the epoch with the best validation macro AUROC
            (checked every `eval_every` epochs) is kept, otherwise the last one.
        n_boot: bootstrap resamples for the test CIs (seeded with `seed`).
        num_threads: torch intra-op threads while training (restored afterwards); None leaves torch's
            setting. A ~256-d head gains little from threads, and on a busy machine 1 is often fastest.

    Returns:
        `{fraction: EvalResult}` on the test split, scored by logits (so max-F1 thresholds are logits);
        `meta` holds the subset size, its positives per class, the best epoch and the final training loss.
    """
    if epochs < 1 or lr <= 0 or weight_decay < 0 or eval_every < 1:
        raise ConfigError(
            f"need epochs >= 1, lr > 0, weight_decay >= 0, eval_every >= 1; got epochs={epochs}, lr={lr}, "
            f"weight_decay={weight_decay}, eval_every={eval_every}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be positive or None, got {batch_size}")
    if not fractions:
        raise ConfigError("fractions is empty")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ConfigError(f"label fractions must lie in (0, 1], got {f!r}")
    tr_x, tr_y = _check_split(train_x, train_y, "train", None, None)
    te_x, te_y = _check_split(test_x, test_y, "test", tr_x.shape[1], tr_y.shape[1])
    if (val_x is None) != (val_y is None):
        raise ConfigError("give both val_x and val_y, or neither")
    val = None if val_x is None else _check_split(val_x, val_y, "val", tr_x.shape[1], tr_y.shape[1])
    names = label_names_from(train_y, tr_y.shape[1], label_names)
    if num_threads is not None and num_threads < 1:
        raise ConfigError(f"num_threads must be positive or None, got {num_threads}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _probe_fractions(
            (tr_x, tr_y),
            (te_x, te_y),
            val,
            names,
            fractions,
            seed=seed,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            eval_every=eval_every,
            n_boot=n_boot,
            progress=progress,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _probe_fractions(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    names: list[str],
    fractions: Sequence[float],
    *,
    seed: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int | None,
    eval_every: int,
    n_boot: int,
    progress: bool | None,
) -> dict[float, EvalResult]:
    (tr_x, tr_y), (te_x, te_y) = train, test
    results: dict[float, EvalResult] = {}
    for f in fractions:
        idx = stratified_subset(tr_y, f, seed)
        x_sub = tr_x[idx].astype(np.float64)
        mean = x_sub.mean(axis=0)
        std = x_sub.std(axis=0)
        std[std < 1e-8] = 1.0  # constant features (common at 1 %) stay at zero instead of dividing by 0

        def z(a: np.ndarray, mean: np.ndarray = mean, std: np.ndarray = std) -> np.ndarray:
            return ((a - mean) / std).astype(np.float32)

        head, meta = _train_head(
            z(x_sub),
            tr_y[idx],
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            seed=seed,
            val=None if val is None else (z(val[0]), val[1]),
            eval_every=eval_every,
            progress=progress,
            desc=f"probe {f:g}",
        )
        with torch.no_grad():
            # logits, not sigmoid: the sigmoid saturates to exactly 1.0 for confident records, which would
            # turn distinct scores into ties; the ranking (AUROC) is the same either way
            scores = head(torch.from_numpy(z(te_x))).numpy()
        # A class single-valued in the training subset was never trained (its head's ranking is noise): not scored
        n_sub = int(idx.size)
        untrained = {n: f"not trained: {why} in the probe's training subset"
                     for n, p in zip(names, tr_y[idx].sum(axis=0), strict=True)
                     if (why := skip_reason(int(p), n_sub))}  # fmt: skip
        res = evaluate_scores(te_y, scores, names, n_boot=n_boot, seed=seed, skip=untrained)
        res.meta.update(
            fraction=float(f),
            n_train=n_sub,
            train_positives={n: int(v) for n, v in zip(names, tr_y[idx].sum(axis=0), strict=True)},
            epochs=int(epochs),
            **meta,
        )
        results[float(f)] = res
    return results


# ------------------------------------------------------------------------ the protocol's probe
FEATURES = "rhythm_features (pooled ECG-tower output before the projection head), standardised per subset"


class ProbeSkipped(Exception):
    """The probe cannot run for this label set (reported as its status; not an error of the run)."""


def fraction_label(f: float) -> str:
    """`0.01` → `"1 %"` (a table column)."""
    return f"{100 * f:g} %"


def _select_folds(data: LabelSetData, folds: list[int] | None, part: str) -> LabelSetData:
    if folds is None:
        return data
    if (data.folds < 0).all():
        raise ProbeSkipped("the records have no fold information, so --probe-*-folds cannot select them")
    return data.subset(np.isin(data.folds, folds), part=part)


def _sampled(data: LabelSetData, limit: int | None, seed: int) -> LabelSetData:
    """A seeded sample of `limit` of `data`'s records (all when it has no more), as `sample_limit` draws them."""
    n = len(data.record_ids)
    (kept,) = sample_limit(limit, seed, list(range(n)))
    if len(kept) == n:
        return data
    keep = np.zeros(n, dtype=bool)
    keep[kept] = True
    return data.subset(keep)


def probe_parts(data: LabelSetData, cfg: EvaluateConfig) -> tuple[LabelSetData, LabelSetData]:
    """The probe's train and test records of a label set (published split parts, or folds of a labels CSV).

    Raises `ConfigError` when the chosen parts/folds can share records (a leak that would inflate the
    figures) and `ProbeSkipped` when the label set gives no way to select them.
    """
    limit = cfg.probe_limit if cfg.probe_limit is not None else cfg.limit
    tr_folds, te_folds = cfg.probe_train_folds, cfg.probe_test_folds
    if data.task is None and (tr_folds is None or te_folds is None):
        raise ProbeSkipped("a labels CSV needs --probe-train-folds and --probe-test-folds (and a fold column)")
    if data.task is not None and (tr_folds or te_folds) and data.dataset != "ptbxl":
        raise ProbeSkipped(f"--probe-*-folds select PTB-XL strat_folds; the {data.name} split has none")
    same_part = data.task is None or cfg.probe_train == cfg.probe_test or "all" in (cfg.probe_train, cfg.probe_test)
    same_folds = tr_folds is None or te_folds is None or bool(set(tr_folds) & set(te_folds))
    if same_part and same_folds:
        raise ConfigError(
            f"{data.name}: probe train ({cfg.probe_train}, folds {tr_folds}) and test ({cfg.probe_test}, folds "
            f"{te_folds}) would share records; choose disjoint parts or folds"
        )
    if data.task is not None:  # a published split: load the requested parts
        roots = parse_data_roots(cfg.data_roots)

        def part(p: str, folds: list[int] | None) -> LabelSetData:
            return load_label_set(data.name, cfg.split_root, roots, part=p, limit=limit, folds=folds, seed=cfg.seed)

        train, test = part(cfg.probe_train, tr_folds), part(cfg.probe_test, te_folds)
    else:  # a labels CSV has no parts: its fold column splits it, each part sampled to the probe's limit
        # `data` holds the --limit sample of zero-shot: the probe's parts come from the whole CSV
        whole = data if cfg.limit is None else load_labels_csv(
            cfg.labels_csv, cfg.records, id_column=cfg.id_column, prompt_set=cfg.prompt_set, seed=cfg.seed
        )  # fmt: skip
        train = _sampled(_select_folds(whole, tr_folds, "train"), limit, cfg.seed)
        test = _sampled(_select_folds(whole, te_folds, "test"), limit, cfg.seed)
    shared = set(train.paths) & set(test.paths)
    if shared:  # published parts are disjoint by construction; this guards against a broken split file
        raise ConfigError(f"{data.name}: probe train and test parts share {len(shared)} records")
    return train, test


def run_probe_for_set(
    data: LabelSetData, cfg: EvaluateConfig, store: EmbeddingStore, processor: EcgProcessor
) -> tuple[dict[str, Any], dict[str, dict[float, EvalResult]]]:
    """Linear probe of model and random encoder on one label set.

    Returns `(entry, curves)`: `entry` for `results.json` (`model`/`random` → `{"1 %": EvalResult}`, the
    parts, record counts; or `status` saying why it did not run) and `curves` for `plot_probe_curve`
    (`{"model": {fraction: EvalResult}, "random": {...}}`, empty when skipped).
    """
    try:
        train, test = probe_parts(data, cfg)
    except ProbeSkipped as exc:
        return {"status": str(exc)}, {}
    entry: dict[str, Any] = {"features": FEATURES, "fractions": list(cfg.probe_fractions), "epochs": cfg.probe_epochs}
    sides = {}
    for name, part_data, folds, part in (
        ("train", train, cfg.probe_train_folds, cfg.probe_train),
        ("test", test, cfg.probe_test_folds, cfg.probe_test),
    ):
        rows = store.encode(part_data.paths, part_data.record_ids, processor, label_set=f"{data.name} (probe {name})",
                            metadata=part_data.metadata)  # fmt: skip
        ok = rows >= 0
        entry[name] = {
            "part": part, "folds": folds, "rows": part_data.n_rows, "found": part_data.n_found,
            "missing": len(part_data.missing), "left_out_by_limit": part_data.n_limited,
            "failed": int((~ok).sum()), "records": int(ok.sum()),
        }  # fmt: skip
        sides[name] = (rows[ok], part_data.labels[ok])
    (tr_rows, tr_y), (te_rows, te_y) = sides["train"], sides["test"]
    if len(tr_rows) < 2 or len(te_rows) < 2:
        entry["status"] = (
            f"not enough records (train {len(tr_rows)}, test {len(te_rows)}) in {cfg.probe_train}"
            f"{f' folds {cfg.probe_train_folds}' if cfg.probe_train_folds else ''} / {cfg.probe_test}"
            f"{f' folds {cfg.probe_test_folds}' if cfg.probe_test_folds else ''}"
        )
        log.warning("%s: linear probe skipped: %s", data.name, entry["status"])
        return entry, {}
    curves: dict[str, dict[float, EvalResult]] = {}
    for key in (MODEL, RANDOM):
        res = linear_probe(
            store.features(key, tr_rows), tr_y, store.features(key, te_rows), te_y,
            fractions=tuple(cfg.probe_fractions), seed=cfg.seed, epochs=cfg.probe_epochs,
            label_names=data.label_codes, n_boot=cfg.n_boot, progress=False,
        )  # fmt: skip
        curves[key] = res
        entry[key] = {fraction_label(f): r for f, r in res.items()}
    return entry, curves

"""Linear probe of the evaluation protocol: frozen ECG-tower features → `linear_probe` per label fraction.

For one label set, the records of the probe's train part and test part (each optionally restricted to
PTB-XL folds) are encoded through the shared `EmbeddingStore`, so records already encoded for zero-shot
cost nothing. The features are `rhythm_features`: the pooled ECG-tower output before the projection head,
the representation a downstream user would fine-tune from. The same is done for the random-encoder
baseline (same records, same head training), which shows what the architecture alone gives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.errors import ConfigError
from ecglang.evaluation.datasets import LabelSetData, load_label_set, parse_data_roots
from ecglang.evaluation.metrics import EvalResult

if TYPE_CHECKING:
    from ecglang.encoders.processing import EcgProcessor
    from ecglang.evaluation.protocol import EmbeddingStore, EvaluateConfig

__all__ = ["ProbeSkipped", "fraction_label", "probe_parts", "run_probe_for_set"]

log = logging.getLogger(__name__)

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
    else:  # a labels CSV has no parts: its fold column splits it
        train = _select_folds(data, tr_folds, "train")
        test = _select_folds(data, te_folds, "test")
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
    from ecglang.evaluation.probe import linear_probe
    from ecglang.evaluation.protocol import MODEL, RANDOM

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
        rows = store.encode(part_data.paths, part_data.record_ids, processor, label_set=f"{data.name} (probe {name})")
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

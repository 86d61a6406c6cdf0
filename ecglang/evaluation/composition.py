"""How knowledge prompts join a label's own prompts, chosen without any downstream label.

Zero-shot means that no label of the evaluated sets chooses anything, the way knowledge prompts are
combined included. This check compares compositions on a criterion that reads only ECG–report pairs of the
pretraining folds: the report-derived labels of `ecglang.text.labels` (read off each pair's own report) on
PTB-XL folds 1–7 (every record with a report), scored as free-text labels (their names, with knowledge
retrieved for the names). The compositions differ only in how a label's embedding is made from the unit
embeddings of its own prompts (here: the name) and of its knowledge prompts (one per snippet criterion):

* ``names``: the own prompts alone (no knowledge);
* ``blend w``: `unit((1 − w) · mean(own) + w · mean(knowledge))`, for several `w`;
* ``ensemble``: CLIP-style prompt ensembling, `unit(mean(own ∪ knowledge))`: every prompt counts once;
* ``knowledge only``: the knowledge prompts replace the label's own words (for reference).

Run: `python -m ecglang.evaluation.composition [--help]` (about 40 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecglang.encoders.modeling import load_model
from ecglang.evaluation.compare import paired_difference
from ecglang.evaluation.datasets import ptbxl_index
from ecglang.evaluation.metrics import bootstrap_ci, macro_auroc, per_class_auroc
from ecglang.evaluation.store import EmbeddingStore, processor_for
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import PROMPT_CACHE, embed_texts, mean_unit, unit
from ecglang.text.labels import report_label_matrix, report_label_names

__all__ = ["compose_variants", "main", "run_check"]

WEIGHTS = (0.25, 0.5, 0.75)


def compose_variants(own: list[np.ndarray], know: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The label embedding of every composition of the module docstring, from unit prompt embeddings."""
    base = mean_unit(own)
    out = {"names": base}
    if not know:  # no knowledge found: every composition falls back to the label's own words
        out.update({f"blend {w}": base for w in WEIGHTS})
        out.update({"ensemble": base, "knowledge only": base})
        return out
    k = mean_unit(know)
    out.update({f"blend {w}": unit((1 - w) * base + w * k) for w in WEIGHTS})
    out["ensemble"] = mean_unit([*own, *know])
    out["knowledge only"] = k
    return out


def run_check(
    model: Any, ptbxl_root: str, folds: Sequence[int] = (1, 2, 3, 4, 5, 6, 7), k: int = 3, n_boot: int = 1000
) -> dict[str, Any]:
    """Macro AUROC (bootstrap CI) of each composition on the report-derived labels of `folds`."""
    index = ptbxl_index(ptbxl_root)
    ids = [i for i, f in index.folds.items() if f in set(folds) and index.reports[i].strip()]
    store = EmbeddingStore({"model": model}, progress=False)
    paths = [index.paths[i] for i in ids]
    rows = store.encode(paths, ids, processor_for(model, "default", "ptbxl"), label_set="check",
                        metadata=[index.demographics.get(i, {}) for i in ids])  # fmt: skip
    ok = rows >= 0
    ecg = store.embeddings("model", rows[ok])
    reports = [index.reports[i] for i, keep in zip(ids, ok, strict=True) if keep]
    names = report_label_names()
    y = report_label_matrix(reports, names).astype(bool)
    clf = ZeroShotClassifier(model, knowledge=True, k=k)
    specs = clf.label_specs(labels=names)
    embed_texts(model, [t for s in specs.values() for t in (*s.prompts, *s.knowledge_prompts)])
    cache = PROMPT_CACHE[model]
    per_label = {}
    for lab, spec in specs.items():
        own = [cache[("text", t)] for t in spec.prompts]
        per_label[lab] = compose_variants(own, [cache[("text", t)] for t in spec.knowledge_prompts])
    variants = list(next(iter(per_label.values())))
    result: dict[str, Any] = {
        "records": int(ok.sum()),
        "folds": list(folds),
        "labels_with_both_classes": len(per_class_auroc(y, np.zeros(y.shape), names)[0]),
        "labels_with_knowledge": sorted(lab for lab, s in specs.items() if s.knowledge_prompts),
        "variants": {},
    }
    scores = {v: ecg @ np.stack([per_label[lab][v] for lab in names]).T for v in variants}
    for v in variants:
        result["variants"][v] = {
            "macro_auroc": bootstrap_ci(macro_auroc, y, scores[v], n_resamples=n_boot, seed=0).to_dict(),
            "minus_names": paired_difference(y, scores[v], scores["names"], n_resamples=n_boot, seed=0)["difference"],
        }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """`--model DIR --ptbxl-root DIR [--folds 1 .. 7] [-k 3]`: print the check's JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/ecglang-mini")
    ap.add_argument("--ptbxl-root", default="../shared/data/ptbxl-sample")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7])
    ap.add_argument("-k", type=int, default=3)
    args = ap.parse_args(argv)
    out = run_check(load_model(args.model), args.ptbxl_root, args.folds, args.k)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""How knowledge prompts join a label's own prompts, chosen without any downstream label.

Zero-shot means that no label of the evaluated sets chooses anything, the way knowledge prompts are
combined included. This check compares compositions on a criterion that reads only ECG–report pairs of the
pretraining folds: the report-derived labels of `ecglang.text.labels` (read off each pair's own report) on
PTB-XL folds 1–7 (every record with a report), scored as free-text labels (their names, with knowledge
retrieved for the names). The compositions differ in how many snippets are retrieved per label (`k`) and in
how a label's embedding is made from the unit embeddings of its own prompts (here: the name) and of its
knowledge prompts (one per snippet criterion, at most 3·k):

* ``names``: the own prompts alone (no knowledge);
* ``k=K · blend w``: `unit((1 − w) · mean(own) + w · mean(knowledge))`, for several `w`;
* ``k=K · ensemble``: CLIP-style prompt ensembling, `unit(mean(own ∪ knowledge))`: every prompt counts once;
* ``k=K · knowledge only``: the knowledge prompts replace the label's own words (for reference).

With one model, the records of every fold are scored by it (the bundled checkpoint trained on these pairs).
Cross-fitted (`--crossfit PATTERN`, one model per fold, such as `scripts/crossfit.py` trains), each fold's
records are scored by the model that never trained on them; each fold's scores are z-scored per label
(scores only, no labels) before they are pooled, as `scripts/crossfit.py` does.

Run: `python -m ecglang.evaluation.composition [--help]` (about 1 min on 2 cores; cross-fitted about 6 min).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.encoders.modeling import load_model
from ecglang.evaluation.compare import paired_difference
from ecglang.evaluation.datasets import ptbxl_index
from ecglang.evaluation.metrics import bootstrap_ci, macro_auroc, per_class_auroc
from ecglang.evaluation.store import EmbeddingStore, processor_for
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import embed_texts, mean_unit, prompt_cache, resolve_knowledge, unit
from ecglang.text.labels import report_label_matrix, report_label_names

if TYPE_CHECKING:
    from ecglang.knowledge.index import KnowledgeIndex

__all__ = ["compose_variants", "main", "run_check"]

WEIGHTS = (0.25, 0.5, 0.75)
KS = (1, 2, 3)


def compose_variants(own: list[np.ndarray], know: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The label embedding of every composition of the module docstring (one `k`), from unit prompt embeddings."""
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


def _score_block(
    model: Any, index: Any, knowledge: KnowledgeIndex, ids: list[str], names: list[str], ks: Sequence[int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Report-derived truth `[n, labels]` and every composition's scores for the records `ids`, by `model`."""
    store = EmbeddingStore({"model": model}, progress=False)
    rows = store.encode([index.paths[i] for i in ids], ids, processor_for(model, "default", "ptbxl"),
                        label_set="check", metadata=[index.demographics.get(i, {}) for i in ids])  # fmt: skip
    ok = rows >= 0
    ecg = store.embeddings("model", rows[ok])
    y = report_label_matrix([index.reports[i] for i, keep in zip(ids, ok, strict=True) if keep], names).astype(bool)
    embeddings: dict[str, list[np.ndarray]] = {}
    for k in ks:
        specs = ZeroShotClassifier(model, knowledge=knowledge, k=k).label_specs(labels=names)
        embed_texts(model, [t for s in specs.values() for t in (*s.prompts, *s.knowledge_prompts)])
        cache = prompt_cache(model)
        for lab in names:
            spec = specs[lab]
            composed = compose_variants([cache[("text", t)] for t in spec.prompts],
                                        [cache[("text", t)] for t in spec.knowledge_prompts])  # fmt: skip
            for variant, emb in composed.items():
                if variant == "names" and k != ks[0]:
                    continue  # the same for every k
                embeddings.setdefault(variant if variant == "names" else f"k={k} · {variant}", []).append(emb)
    return y, {variant: ecg @ np.stack(embs).T for variant, embs in embeddings.items()}


def run_check(
    model: Any | Mapping[int, Any],
    ptbxl_root: str,
    folds: Sequence[int] = (1, 2, 3, 4, 5, 6, 7),
    ks: Sequence[int] = KS,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Macro AUROC (bootstrap CI) of each composition on the report-derived labels of `folds`.

    `model`: one model for every fold, or `{fold: model}` (cross-fitted: each fold scored by its own model,
    scores z-scored per fold and label before pooling)."""
    index = ptbxl_index(ptbxl_root)
    names = report_label_names()
    knowledge = resolve_knowledge(True)  # loaded once: every fold and k retrieves from the same index
    per_fold = isinstance(model, Mapping)
    groups = [(model[f], {f}) for f in folds] if per_fold else [(model, set(folds))]
    truths, scored = [], []
    for block_model, block_folds in groups:
        ids = [i for i, f in index.folds.items() if f in block_folds and index.reports[i].strip()]
        y, scores = _score_block(block_model, index, knowledge, ids, names, ks)
        if per_fold:  # each model has its own scale: z-score per label (reads scores only) before pooling
            scores = {v: (s - s.mean(0)) / np.where(s.std(0) > 0, s.std(0), 1.0) for v, s in scores.items()}
        truths.append(y)
        scored.append(scores)
    y = np.concatenate(truths)
    scores = {v: np.concatenate([s[v] for s in scored]) for v in scored[0]}
    result: dict[str, Any] = {
        "records": len(y),
        "folds": list(folds),
        "cross_fitted": per_fold,
        "labels_with_both_classes": len(per_class_auroc(y, np.zeros(y.shape), names)[0]),
        "variants": {},
    }
    for v, s in scores.items():
        result["variants"][v] = {
            "macro_auroc": bootstrap_ci(macro_auroc, y, s, n_resamples=n_boot, seed=0).to_dict(),
            "minus_names": paired_difference(y, s, scores["names"], n_resamples=n_boot, seed=0)["difference"],
        }
    best = max((v for v in scores if "knowledge only" not in v and v != "names"),
               key=lambda v: result["variants"][v]["macro_auroc"]["point"])  # fmt: skip
    result["best_keeping_the_labels_words"] = best
    result["variants_minus_best"] = {
        v: paired_difference(y, s, scores[best], n_resamples=n_boot, seed=0)["difference"] for v, s in scores.items()
    }
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """`--model DIR --ptbxl-root DIR [--folds 1 .. 7] [--ks 1 2 3] [--crossfit PATTERN]`: print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/ecglang-mini")
    ap.add_argument("--ptbxl-root", default="../shared/data/ptbxl-sample")
    ap.add_argument("--folds", type=int, nargs="+", default=None, help="default 1–7 (cross-fitted: 1–8)")
    ap.add_argument("--ks", type=int, nargs="+", default=list(KS), help="snippets per label to compare")
    ap.add_argument("--crossfit", metavar="PATTERN",
                    help="one checkpoint per held-out fold, '{fold}' in the path "
                         "(e.g. runs/crossfit/ecglang-mini-s0-f{fold}/train/best)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.crossfit:
        folds = args.folds or list(range(1, 9))
        model: Any = {f: load_model(args.crossfit.format(fold=f), "cpu") for f in folds}
    else:
        folds = args.folds or list(range(1, 8))
        model = load_model(args.model)
    print(json.dumps(run_check(model, args.ptbxl_root, folds, args.ks), indent=1))


if __name__ == "__main__":
    main()

"""`EvaluationRun`: what an evaluation run produced, between the protocol that makes it and the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecglang.errors import RecordFailure
from ecglang.evaluation.metrics import EvalResult

# Keys of the model and of its random-encoder baseline in the store and in the results.
MODEL = "model"
RANDOM = "random"


@dataclass
class RecordScores:
    """One label set's per-record zero-shot scores (`ecglang evaluate --save-scores`): what the metrics read."""

    record_ids: list[str]
    label_codes: list[str]
    labels: np.ndarray  # [n_records, n_labels] 0/1 truth, columns in label_codes order
    scores: dict[tuple[str, str], tuple[list[str], np.ndarray]]  # (source, model|random) → (codes, [n, len(codes)])


@dataclass
class EvaluationRun:
    """What `run_evaluation` produced: the JSON-able result tree, the inputs of the figures, failures."""

    tree: dict[str, Any]
    failures: list[RecordFailure]
    missing: dict[str, list[RecordFailure]]  # label set → records missing from disk (stage "missing")
    roc: dict[str, tuple[np.ndarray, dict[str, np.ndarray], list[str]]]  # label set → (y, scores, codes)
    probe_curves: dict[str, dict[str, dict[float, EvalResult]]]
    record_scores: dict[str, RecordScores] = field(default_factory=dict)  # label set → scores (--save-scores)

    @property
    def evaluated_any(self) -> bool:
        return any(ls.get("sources") for ls in self.tree["label_sets"].values())

    @property
    def unmeasured(self) -> list[str]:
        """Label sets that had records but no zero-shot figure: every class single-valued among them (all
        positive or all negative), so no source has a macro AUROC."""
        return [name for name, ls in self.tree["label_sets"].items()
                if ls.get("sources") and not any(_has_auroc(r.get(MODEL)) for r in ls["sources"].values())]  # fmt: skip

    @property
    def measured_any(self) -> bool:
        """True when some figure was computed: a zero-shot macro AUROC, or retrieval (needs no labels)."""
        ret = self.tree.get("retrieval")
        measured = [n for n, ls in self.tree["label_sets"].items() if ls.get("sources") and n not in self.unmeasured]
        return bool(measured) or bool(ret and not ret.get("status"))


def _has_auroc(result: Any) -> bool:
    """Whether a source's result (an `EvalResult`, or its dict from results.json) has a finite macro AUROC."""
    if isinstance(result, EvalResult):
        point = result.macro_auroc.point
    elif isinstance(result, dict):
        point = (result.get("macro_auroc") or {}).get("point")
    else:
        return False
    return point is not None and bool(np.isfinite(point))

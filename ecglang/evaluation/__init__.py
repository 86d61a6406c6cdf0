"""Model-independent evaluation: metrics with bootstrap CIs, the linear probe, report writers.

`metrics` and `report` need only numpy/scipy (matplotlib is imported when plotting); `linear_probe`
needs torch and is imported on first use so that `import ecglang.evaluation` stays light.
"""

from __future__ import annotations

from typing import Any

from ecglang.evaluation.metrics import (
    CI,
    EvalResult,
    auroc,
    bootstrap_ci,
    evaluate_scores,
    macro_accuracy,
    macro_auroc,
    macro_max_f1,
    max_f1,
    per_class_auroc,
    retrieval_recall,
    roc_curve,
)
from ecglang.evaluation.writers import markdown_table, plot_probe_curve, plot_roc_curves, write_json

__all__ = [
    "CI",
    "EvalResult",
    "auroc",
    "bootstrap_ci",
    "evaluate_scores",
    "linear_probe",
    "macro_accuracy",
    "macro_auroc",
    "macro_max_f1",
    "markdown_table",
    "max_f1",
    "per_class_auroc",
    "plot_probe_curve",
    "plot_roc_curves",
    "retrieval_recall",
    "roc_curve",
    "stratified_subset",
    "write_json",
]

_LAZY = {"linear_probe", "stratified_subset"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # torch is heavy: load the probe module only when asked for
        from ecglang.evaluation import probe

        return getattr(probe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

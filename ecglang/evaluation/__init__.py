"""Model-independent evaluation: metrics with bootstrap CIs, the linear probe, report writers.

Every name here is imported on first use, so that `import ecglang.evaluation.config` (which the CLI's
parser needs) stays light: `metrics` needs numpy/scipy, the report writers (`ecglang.evaluation.writers`)
matplotlib when plotting, and `linear_probe` torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_METRICS = "ecglang.evaluation.metrics"
_PROBE = "ecglang.evaluation.probe"
_REPORT = "ecglang.evaluation.writers"
_LAZY = {
    **dict.fromkeys(
        (
            "CI",
            "EvalResult",
            "auroc",
            "bootstrap_ci",
            "evaluate_scores",
            "macro_accuracy",
            "macro_auroc",
            "macro_max_f1",
            "max_f1",
            "per_class_auroc",
            "retrieval_recall",
            "roc_curve",
        ),
        _METRICS,
    ),
    "linear_probe": _PROBE,
    "stratified_subset": _PROBE,
    **dict.fromkeys(("markdown_table", "plot_probe_curve", "plot_roc_curves", "write_json"), _REPORT),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # scipy, torch and matplotlib are heavy: load a module only when one of its names is used
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""ecglang: beat-level ECG-language models with zero-shot prompting.

The public face: `Ecg` and `load_ecg` (records), `EcgLangModel`, `EcgLangConfig`, `EcgLangProcessor`,
`load_model` and `list_checkpoints` (trained checkpoints), `create_model` and `list_models` (architecture configs,
untrained), `list_pretrained` (published models and how to convert them), `ZeroShotClassifier` (scores), and the
typed errors.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from ecglang.errors import (
    ConfigError,
    EcgLangError,
    EcgQualityError,
    EcgReadError,
    KnowledgeError,
    ModelLoadError,
    PromptError,
    RecordFailure,
    UsageError,
)
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS

__version__ = "0.1.0"

# Names whose modules import torch + transformers (~4 s): loaded on first use.
_LAZY = {
    "EcgLangConfig": "ecglang.encoders.modeling",
    "EcgLangModel": "ecglang.encoders.modeling",
    "EcgLangProcessor": "ecglang.encoders.processing",
    "load_model": "ecglang.encoders.modeling",
    "ZeroShotClassifier": "ecglang.scores.classifier",
    "load_ecg": "ecglang.record.io",  # wfdb and scipy: ~0.5 s
    "list_models": "ecglang.encoders.registry",
    "create_model": "ecglang.encoders.registry",
    "list_checkpoints": "ecglang.encoders.checkpoint",
    "list_pretrained": "ecglang.encoders.pretrained",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ecglang' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too: tab completion (IPython, Jupyter) lists what `ecglang.<name>` gives
    return sorted(set(globals()) | set(_LAZY))


def _console_script() -> bool:
    """True under the `ecglang` console script or `python -m ecglang` (the same CLI)."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("ecglang", "ecglang.exe"):
        return True
    # `python -m ecglang`: argv[0] is still '-m' while the package imports (`python -m ecglang.x` names its module)
    argv = getattr(sys, "orig_argv", [])
    return (
        bool(sys.argv) and sys.argv[0] == "-m" and any(argv[i : i + 2] == ["-m", "ecglang"] for i in range(len(argv)))
    )


# Importing modeling registers EcgLangConfig/EcgLangModel with AutoConfig/AutoModel, so checkpoints load with
# transformers' Auto classes and no trust_remote_code. The CLI (`ecglang`, `python -m ecglang`) skips it: its
# commands import the model code when they load a model, and `ecglang --help` or `inspect` need not wait for torch.
if not _console_script():
    importlib.import_module("ecglang.encoders.modeling")

__all__ = [
    "CANONICAL_LEADS",
    "ConfigError",
    "Ecg",
    "EcgLangConfig",
    "EcgLangError",
    "EcgLangModel",
    "EcgLangProcessor",
    "EcgQualityError",
    "EcgReadError",
    "KnowledgeError",
    "ModelLoadError",
    "PromptError",
    "RecordFailure",
    "UsageError",
    "ZeroShotClassifier",
    "__version__",
    "create_model",
    "list_checkpoints",
    "list_models",
    "list_pretrained",
    "load_ecg",
    "load_model",
]

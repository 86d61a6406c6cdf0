"""ecglang: beat-level ECG-language models with zero-shot prompting."""

from ecglang.errors import (
    ConfigError,
    EcgLangError,
    EcgQualityError,
    EcgReadError,
    KnowledgeError,
    ModelLoadError,
    PromptError,
)
from ecglang.leads import CANONICAL_LEADS
from ecglang.record import Ecg

__version__ = "0.1.0"

__all__ = [
    "CANONICAL_LEADS",
    "ConfigError",
    "Ecg",
    "EcgLangError",
    "EcgQualityError",
    "EcgReadError",
    "KnowledgeError",
    "ModelLoadError",
    "PromptError",
    "__version__",
]

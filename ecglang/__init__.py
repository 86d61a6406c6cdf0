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

# Importing modeling registers EcgLangConfig/EcgLangModel with AutoConfig/AutoModel, so checkpoints
# load with transformers' Auto classes and no trust_remote_code.
from ecglang.modeling import EcgLangConfig, EcgLangModel, load_model
from ecglang.record import Ecg

__version__ = "0.1.0"

__all__ = [
    "CANONICAL_LEADS",
    "ConfigError",
    "Ecg",
    "EcgLangConfig",
    "EcgLangError",
    "EcgLangModel",
    "EcgQualityError",
    "EcgReadError",
    "KnowledgeError",
    "ModelLoadError",
    "PromptError",
    "__version__",
    "load_model",
]

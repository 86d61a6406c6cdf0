"""The names of a checkpoint folder's files, what a Hub id looks like, and where the bundled checkpoints are:
shared by the writer and reader (`checkpoint`), the model card (`model_card`) and the registry."""

from __future__ import annotations

import re
from pathlib import Path

from ecglang.core.paths import resource_dir

WEIGHTS_NAME = "model.safetensors"
ADAPTER_DIR = "text_adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILE = "tokenizer.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def is_hub_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repository id ("owner/name"), not a relative path ("./x", "~/x")."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~"))


def checkpoint_folders() -> list[Path]:
    """The bundled trained checkpoints (`checkpoints/<name>/` with a config.json), sorted by name."""
    try:
        folder = resource_dir("checkpoints")
    except FileNotFoundError:
        return []
    return sorted((p for p in folder.iterdir() if (p / "config.json").is_file()), key=lambda p: p.name)


__all__ = ["ADAPTER_DIR", "ADAPTER_WEIGHTS", "TOKENIZER_FILE", "WEIGHTS_NAME", "checkpoint_folders", "is_hub_id"]

"""The names of a checkpoint folder's files, what a Hub id looks like, what the Hub cache holds of one, and where
the bundled checkpoints are: shared by the writer and reader (`checkpoint`), the model card (`model_card`) and the
registry."""

from __future__ import annotations

import os
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


def hub_cache_state(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None = None) -> str:
    """Why the Hub cache gave no snapshot of `repo_id` at `revision`, for an error message: the repository is
    not cached at all, only that revision is missing, or the revision's snapshot is incomplete."""
    from huggingface_hub import constants  # only when a Hub load failed: keeps this module's imports lean
    from huggingface_hub.file_download import repo_folder_name

    wanted = revision or constants.DEFAULT_REVISION
    repo = Path(cache_dir or constants.HF_HUB_CACHE).expanduser() / repo_folder_name(repo_id=repo_id, repo_type="model")
    snapshots = repo / "snapshots"
    present = False
    try:
        cached = snapshots.is_dir() and any(p.is_dir() for p in snapshots.iterdir())
        ref = repo / "refs" / wanted  # a branch or tag names its commit here; a commit hash is its own folder
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else wanted
        present = "/" not in commit and commit not in ("", ".", "..") and (snapshots / commit).is_dir()
    except (OSError, ValueError):  # an unreadable cache is, for the user, not a cache
        cached = False
    if not cached:
        return "the Hub id is not in the local cache"
    if present:
        return f"the local cache's snapshot of revision {wanted!r} is incomplete"
    return f"the local cache holds this Hub id but not its revision {wanted!r}"


def checkpoint_folders() -> list[Path]:
    """The bundled trained checkpoints (`checkpoints/<name>/` with a config.json), sorted by name."""
    try:
        folder = resource_dir("checkpoints")
    except FileNotFoundError:
        return []
    return sorted((p for p in folder.iterdir() if (p / "config.json").is_file()), key=lambda p: p.name)


__all__ = [
    "ADAPTER_DIR",
    "ADAPTER_WEIGHTS",
    "TOKENIZER_FILE",
    "WEIGHTS_NAME",
    "checkpoint_folders",
    "hub_cache_state",
    "is_hub_id",
]

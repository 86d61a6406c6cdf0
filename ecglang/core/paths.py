"""Where the project's data folders live: the repository root (editable install) or <prefix>/share/ecglang."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """The folder that holds the `ecglang` package (the repository root for an editable install)."""
    return _REPO_ROOT


@cache
def resource_dir(name: str) -> Path:
    """Return the folder `name` ('prompts', 'knowledge', 'configs', 'checkpoints')."""
    for base in (_REPO_ROOT, Path(sys.prefix) / "share" / "ecglang"):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(
        f"ecglang resource folder {name!r} not found next to the package ({_REPO_ROOT}) "
        f"or under {Path(sys.prefix) / 'share' / 'ecglang'}; reinstall ecglang"
    )


def shared_data_dir() -> Path:
    """The development data folder `../shared/data` relative to the repository (may not exist)."""
    return _REPO_ROOT.parent / "shared" / "data"

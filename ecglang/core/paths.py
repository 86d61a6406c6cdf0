"""Where the project's data folders live: package data in an installed wheel, or the repository root.

A wheel carries `prompts/`, `knowledge/`, `configs/` and `checkpoints/` as package data under
``ecglang/bundled/`` (setup.py copies them at build time); an editable install or a source checkout reads them at
the repository root, where the project keeps them.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
RESOURCE_NAMES: tuple[str, ...] = ("prompts", "knowledge", "configs", "checkpoints")


def repo_root() -> Path:
    """The folder that holds the `ecglang` package (the repository root for an editable install)."""
    return _REPO_ROOT


def source_checkout(root: Path = _REPO_ROOT) -> Path | None:
    """The repository root when ecglang runs from a source checkout (editable install), else None: in an
    installed wheel the folder above the package is site-packages, where no relative data path belongs."""
    return root if (root / "pyproject.toml").is_file() else None


def bundled_dir() -> Path:
    """``ecglang/bundled``: the data folders a wheel installs as package data (absent in a source checkout)."""
    return Path(str(resources.files("ecglang").joinpath("bundled")))


@cache
def resource_dir(name: str) -> Path:
    """Return the folder `name` ('prompts', 'knowledge', 'configs', 'checkpoints'): the installed package data
    first, then the repository root."""
    if name not in RESOURCE_NAMES:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {RESOURCE_NAMES}")
    for base in (bundled_dir(), _REPO_ROOT):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(
        f"ecglang resource folder {name!r} not found in the package ({bundled_dir()}) or at the repository "
        f"root ({_REPO_ROOT}); reinstall ecglang from a wheel or a full checkout"
    )


def shared_data_dir() -> Path:
    """The development data folder `../shared/data` relative to the repository (may not exist)."""
    return _REPO_ROOT.parent / "shared" / "data"


def cache_root() -> Path:
    """ecglang's user cache folder (knowledge indexes, signal caches): `$ECGLANG_CACHE`, else
    `$XDG_CACHE_HOME/ecglang` (`~/.cache/ecglang`)."""
    env = os.environ.get("ECGLANG_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ecglang"

"""Output paths checked before the work: a file or folder that cannot be written must fail when it is given.

A zero-shot pass or an evaluation writes its results last; a path that names a folder where a file belongs (or
the other way round), or that lies under something that is not a folder, used to end the run in a traceback after
all the work, and the results were lost. And a folder that a writer replaces as a whole (a prototype or
knowledge index) must be that writer's own: `ecglang prototypes build --records recs --out recs` replaced the
records folder with the index.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from ecglang.errors import ConfigError

__all__ = [
    "OutputPathError",
    "check_output_file",
    "check_output_folder",
    "check_replaceable_folder",
    "output_file",
    "output_folder",
]


class OutputPathError(ConfigError):
    """An output path that cannot be written, or a folder that holds what a writer must not replace."""


def _writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` must be a folder we may write in (the rest is created)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{path}: cannot write the {what}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(f"{path}: cannot write the {what}: no permission to write in {parent}")
            return
    raise OutputPathError(f"{path}: cannot write the {what}: no existing folder above it")


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """`path` as an absolute `Path` when a file can be written there (it may exist and is then replaced)."""
    out = Path(os.path.abspath(path))
    if out.is_dir():
        raise OutputPathError(f"{out}: is a folder; the {what} must be a file path")
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputPathError(f"{out}: cannot write the {what}: no permission to write the file")
    _writable_parent(out, what)
    return out


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """`path` as an absolute `Path` when a folder can be created there or already is one we may write in."""
    out = Path(os.path.abspath(path))
    if out.exists():
        if not out.is_dir():
            raise OutputPathError(f"{out}: is a file; the {what} must be a folder (new or existing)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise OutputPathError(f"{out}: cannot write the {what}: no permission to write in it")
        return out
    _writable_parent(out, what)
    return out


def check_replaceable_folder(path: str | os.PathLike, is_own: Callable[[Path], bool], what: str) -> Path:
    """`path` when a writer that replaces the whole folder may write it: it does not exist, is an empty folder,
    or `is_own(folder)` says it holds an earlier write of the same kind. Anything else would be deleted."""
    out = check_output_folder(path, what)
    if out.is_dir() and any(out.iterdir()) and not is_own(out):
        raise OutputPathError(
            f"{out}: the folder holds other files, and writing the {what} replaces the whole folder; "
            "choose a new or empty folder"
        )
    return out


def output_file(text: str) -> str:
    """argparse `type=` of a file a command writes: checked when the command line is read, so that a folder or
    an unwritable place fails before the work, not after it."""
    try:
        check_output_file(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def output_folder(text: str) -> str:
    """argparse `type=` of a folder a command writes into (new or existing), checked as `output_file` is."""
    try:
        check_output_folder(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text

"""Atomic folder writes: build a folder beside its target, then swap it in with renames only.

Every writer of a folder that another process (or a later run) may read uses this: checkpoints, training
checkpoints, model exports and knowledge indexes. A kill at any moment leaves either the old complete folder,
the new complete folder, or (between the two renames) none, never a mix of two writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder` to disk, so that a rename never becomes visible before its data."""
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def swap_in(new: Path, target: Path, keep: Callable[[str], bool] | None = None) -> None:
    """Replace `target` by the complete folder `new` (renames only). Entries of the old `target` for which
    `keep(name)` is true, and that the new folder lacks, are carried over (a user's own files)."""
    fsync_tree(new)
    old = target.with_name(f".{target.name}.old")
    _carry_over(old, target, keep)  # a swap killed between its renames left the old folder here
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    _carry_over(old, target, keep)


def _carry_over(old: Path, target: Path, keep: Callable[[str], bool] | None) -> None:
    if not old.is_dir():
        return
    if target.is_dir() and keep is not None:
        for entry in old.iterdir():
            if keep(entry.name) and not (target / entry.name).exists():
                os.replace(entry, target / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def usual_permissions(folder: Path) -> None:
    """Give `folder` and everything in it the modes a plain `mkdir`/`open` would under the user's umask:
    `mkdtemp` makes 0700 folders (and safetensors writes 0600 files), so a checkpoint or index renamed into a
    shared folder could not be read by anyone else."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """`with atomic_directory(target) as tmp:` write into `tmp`; on success it replaces `target` atomically,
    on error `tmp` is deleted and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        usual_permissions(tmp)
        swap_in(tmp, target, keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

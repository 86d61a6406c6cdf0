"""sha256 checksums of checkpoint folders: written after every save, verified before every load."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from ecglang.core.jsonio import parse_json
from ecglang.errors import ModelLoadError

CHECKSUMS_NAME = "checksums.json"
logger = logging.getLogger(__name__)


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _inside(name: str) -> bool:
    """Whether `name` is a relative path that stays inside its folder: no root, drive or `..` part, in POSIX
    or Windows spelling. Judged on the name, not by resolving links: a Hub snapshot's files are links into
    its cache's blob folder, and they are the snapshot's own files."""
    if not name:
        return False
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.anchor or ".." in pure.parts:
            return False
    return True


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_checksums(folder: Path, names: Iterable[str] | None = None) -> None:
    """Write `checksums.json` for `names` (paths relative to `folder`; default: every file below it)."""
    folder = Path(folder)
    if names is None:
        names = [
            str(p.relative_to(folder)) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != CHECKSUMS_NAME
        ]
    sums = {name: sha256_file(folder / name) for name in names}
    (folder / CHECKSUMS_NAME).write_text(json.dumps(sums, indent=2) + "\n", encoding="utf-8")


def verify_checksums(folder: Path, *, required: bool, what: str = "checkpoint", hint: str = "") -> None:
    """Compare every file listed in `checksums.json` with its sha256; `ModelLoadError` naming the bad file.

    `required=False` tolerates a folder without a checksum file (a hand-made checkpoint), with a warning."""
    folder = Path(folder)
    path = folder / CHECKSUMS_NAME
    if not path.is_file():
        if required:
            raise ModelLoadError(folder, f"{what} has no {CHECKSUMS_NAME}; it is incomplete or not ecglang's")
        logger.warning("%s: no %s, weights are loaded unverified", folder, CHECKSUMS_NAME)
        return
    try:
        expected = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not usable JSON (JsonInputError), or not UTF-8
        raise ModelLoadError(path, f"unreadable checksum file: {exc}") from exc
    if not isinstance(expected, dict):
        raise ModelLoadError(
            path, f"not a checksum file: it holds a JSON {type(expected).__name__}, not an object of file: sha256"
        )  # fmt: skip
    for name, digest in expected.items():
        if not _inside(name):
            raise ModelLoadError(
                path, f"the entry {name!r} is not a file inside the {what} folder; checksums only list the "
                f"{what}'s own files (relative paths, no '..')"
            )  # fmt: skip
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ModelLoadError(path, f"the entry for {name!r} is not a sha256 (64 hex digits): {digest!r}")
        file = folder / name
        if not file.is_file():
            raise ModelLoadError(file, f"listed in {CHECKSUMS_NAME} but missing: the {what} is damaged")
        actual = sha256_file(file)
        if actual != digest:
            raise ModelLoadError(
                file,
                f"checksum mismatch (sha256 expected {digest[:12]}…, got {actual[:12]}…): the {what} file is "
                f"corrupt or was changed{hint}",
            )

"""sha256 checksums of checkpoint folders: written after every save, verified before every load."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from ecglang.errors import ModelLoadError

CHECKSUMS_NAME = "checksums.json"
logger = logging.getLogger(__name__)


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
        expected = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(path, f"unreadable checksum file: {exc}") from exc
    for name, digest in expected.items():
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

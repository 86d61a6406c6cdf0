"""Where a figure may be written: the file types that matplotlib saves, checked before any work is done.

A plot is usually the last step of a long run (a zero-shot pass, an evaluation); a path whose suffix matplotlib
cannot write must fail when it is given, not after the run. No matplotlib import here (the CLI checks its
arguments before loading anything heavy); `tests/cli/test_main.py` keeps the list within what the
installed matplotlib writes.
"""

from __future__ import annotations

import os
from pathlib import Path

from ecglang.errors import ConfigError

__all__ = ["FIGURE_FORMATS", "figure_path"]

# matplotlib's savefig formats (Agg, PDF, PS, SVG and PGF backends); a path without a suffix is written as PNG.
FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "gif", "pgf")


def figure_path(path: str | os.PathLike) -> Path:
    """`path` as a `Path` when matplotlib can write its type, else `ConfigError` naming it and the types."""
    out = Path(path)
    suffix = out.suffix.lower().lstrip(".")
    if suffix and suffix not in FIGURE_FORMATS:
        raise ConfigError(
            f"{out}: cannot write a figure of type '.{suffix}'; use one of "
            + ", ".join(f".{f}" for f in FIGURE_FORMATS)
        )
    return out

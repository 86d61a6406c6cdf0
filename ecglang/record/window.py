"""Limits that a record must respect when it is read: the physical sampling-rate range, and the part of a
long record that is used (so that only that part is read into memory)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

from ecglang.errors import EcgReadError

# Electrocardiographs and Holter recorders sample between about 50 Hz (old Holter tapes use 62.5-128 Hz) and
# a few kHz (pacemaker-spike detection, 8-16 kHz in research systems). A rate outside this range is a
# corrupt header or a unit mistake (kHz for Hz), and resampling it to 500 Hz would need absurd memory.
MIN_FS_HZ = 50.0
MAX_FS_HZ = 20_000.0

WindowWhere = Literal["start", "center"]


def check_sampling_rate(path: str | os.PathLike | None, fs: object, source: str) -> float:
    """Return `fs` as a float when it is a finite rate in [MIN_FS_HZ, MAX_FS_HZ], else raise `EcgReadError`.

    `source` says where the value came from ("header", "'fs' key", "fs argument") for the message.
    """
    try:
        rate = float(fs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EcgReadError(path, f"sampling rate from the {source} is not a number: {fs!r}") from None
    if not math.isfinite(rate) or rate <= 0:
        raise EcgReadError(path, f"invalid sampling rate {rate:g} Hz from the {source}: must be a positive number")
    if not MIN_FS_HZ <= rate <= MAX_FS_HZ:
        raise EcgReadError(
            path,
            f"sampling rate {rate:g} Hz from the {source} is outside the supported range "
            f"{MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz (corrupt header or wrong unit?)",
        )
    return rate


@dataclass(frozen=True)
class ReadWindow:
    """The part of a record that is used: `seconds` at the `where` of the record, plus `margin_s` on each side
    (for filter and resampler edges). `load_ecg(..., window=...)` reads only that part of a long record.

    `PreprocessConfig.read_window()` builds the window that preprocessing will use, so that
    ``preprocess(load_ecg(path, window=cfg.read_window()), cfg)`` equals the full read within the filter-edge
    error (below 1e-4 of the signal scale with the default margin).
    """

    seconds: float
    where: WindowWhere = "start"
    margin_s: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"ReadWindow.seconds must be a positive number, got {self.seconds}")
        if not (math.isfinite(self.margin_s) and self.margin_s >= 0):
            raise ValueError(f"ReadWindow.margin_s must be >= 0, got {self.margin_s}")
        if self.where not in ("start", "center"):
            raise ValueError(f"ReadWindow.where must be 'start' or 'center', got {self.where!r}")

    def bounds(self, n_samples: int, fs: float) -> tuple[int, int]:
        """First and one-past-last sample to read of a record of `n_samples` at `fs` Hz."""
        keep = math.ceil((self.seconds + (1 if self.where == "start" else 2) * self.margin_s) * fs)
        if keep >= n_samples:
            return 0, n_samples
        if self.where == "start":
            return 0, keep
        keep += (n_samples - keep) % 2  # the same number of samples left out on each side: same centre
        start = (n_samples - keep) // 2
        return start, start + keep

"""The one record type that flows through ecglang."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ecglang.errors import EcgReadError
from ecglang.record.leads import CANONICAL_LEADS, LEAD_INDEX, N_LEADS, canonical_lead_name, to_canonical
from ecglang.record.window import check_sampling_rate

#: File suffixes of the record formats the readers know.
RECORD_SUFFIXES: tuple[str, ...] = (".hea", ".dat", ".mat", ".npy", ".npz")


def record_id_of(path: str | os.PathLike) -> str:
    """The id a reader gives the record at `path` (`Ecg.record_id`): its file name without a record suffix."""
    path = Path(path)
    return path.name[: -len(path.suffix)] if path.suffix.lower() in RECORD_SUFFIXES else path.name


_REPEAT_MARK = re.compile(r"#\d+$")  # what `unique_id` adds to a repeated stem


def unique_id(rid: str, seen: dict[str, int]) -> str:
    """`rid`, or `rid#n` for its n-th repeat in `seen` (updated): the one rule that makes record ids unique where
    a stem repeats (same stem in two folders), shared by zero-shot's score table and the prototype index."""
    count = seen.get(rid, 0)
    seen[rid] = count + 1
    return rid if count == 0 else f"{rid}#{count + 1}"


def repeated_stem(rid: str) -> str:
    """The stem that `unique_id` made `rid` from: `rid` without its `#n` repeat mark."""
    return _REPEAT_MARK.sub("", rid)


def _shape_hint(shape: tuple[int, ...], n_leads: int, otherwise: str) -> str:
    """What to do about a signal of `shape` that should be `[n_leads, n_samples]`."""
    if len(shape) == 2 and shape[1] == n_leads and shape[0] != n_leads:
        return f"it looks transposed ([n_samples, {n_leads}]): pass x.T"
    return otherwise


@dataclass(eq=False)  # equality below: the generated one compares arrays with `==` and raises
class Ecg:
    """A 12-lead ECG in canonical lead order.

    Attributes:
        signal: float32 `[12, n_samples]` in mV; rows of missing leads hold no data (readers write zeros there,
            and preprocessing zeroes them whatever they hold).
        fs: sampling frequency in Hz, 50–20000 (the range of real electrocardiographs, as for files).
        lead_mask: bool `[12]`, True where the lead holds real data.
        record_id: a short identifier (file stem by default).
        metadata: free-form dict. Well-known keys: `age`, `sex`, `report`, `labels`, `snomed`,
            `source_path`, `format`, `dropped_leads`, `quality` (set by preprocessing).
    """

    signal: np.ndarray
    fs: float
    lead_mask: np.ndarray = field(default_factory=lambda: np.ones(N_LEADS, dtype=bool))
    record_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Every refusal is an `EcgReadError` (a `ValueError`) naming the record, as for a bad `fs`.
        where = self.metadata.get("source_path") or self.record_id or None
        self.signal = np.ascontiguousarray(self.signal, dtype=np.float32)
        self.lead_mask = np.asarray(self.lead_mask, dtype=bool)
        if self.signal.ndim != 2 or self.signal.shape[0] != N_LEADS:
            hint = _shape_hint(self.signal.shape, N_LEADS, "Ecg.from_array(x, fs, leads=[...]) takes other leads")
            raise EcgReadError(
                where, f"Ecg.signal must be [12, n_samples] in canonical lead order, got {self.signal.shape}; {hint}"
            )
        if self.lead_mask.shape != (N_LEADS,):
            raise EcgReadError(where, f"Ecg.lead_mask must have shape (12,), got {self.lead_mask.shape}")
        if isinstance(self.fs, (bool, str, bytes)):  # float("500") would pass, and True is 1 Hz
            raise EcgReadError(where, f"Ecg.fs must be a number of Hz, got {self.fs!r} ({type(self.fs).__name__})")
        self.fs = check_sampling_rate(where, self.fs, "fs argument of Ecg")

    @classmethod
    def from_array(
        cls,
        signal: Any,
        fs: float,
        leads: Sequence[str] | str | None = None,
        record_id: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Ecg:
        """An `Ecg` from an array `[len(leads), n_samples]` in mV whose rows are the named leads: any subset of the
        12 in any order, spelt as the readers accept them ("aVR", "avr", "MLII"...; a string "I,II,V1" too).
        The leads not given are zero and masked. `leads` None: the 12 in canonical order, as `Ecg(signal, fs)`.
        `metadata["source_leads"]` keeps the names given. An unknown or repeated name, or rows that do not match
        the names, is an `EcgReadError` (an array `[n_samples, leads]` is said to be transposed)."""
        meta = dict(metadata or {})
        if leads is None:
            return cls(signal, fs, record_id=record_id, metadata=meta)
        names = [n for n in re.split(r"[,\s]+", leads) if n] if isinstance(leads, str) else [str(n) for n in leads]
        where = meta.get("source_path") or record_id or None
        array = np.asarray(signal)
        if array.ndim == 2 and array.shape[0] != len(names):
            raise EcgReadError(where, f"signal of shape {array.shape} for {len(names)} lead names {names}; "
                                      f"{_shape_hint(array.shape, len(names), 'give one row per name')}")  # fmt: skip
        rows, mask, dropped = to_canonical(array, names, where)
        meta.setdefault("source_leads", names)
        if dropped:
            meta.setdefault("dropped_leads", dropped)
        return cls(rows, fs, lead_mask=mask, record_id=record_id, metadata=meta)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ecg):
            return NotImplemented
        return (
            self.fs == other.fs
            and self.record_id == other.record_id
            and np.array_equal(self.lead_mask, other.lead_mask)
            and np.array_equal(self.signal, other.signal)
        )  # metadata is free-form (it may hold arrays) and not part of the recording

    __hash__ = None  # mutable, like the generated dataclass

    @property
    def leads(self) -> tuple[str, ...]:
        return CANONICAL_LEADS

    @property
    def present_leads(self) -> list[str]:
        return [name for name, m in zip(CANONICAL_LEADS, self.lead_mask, strict=True) if m]

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples `[n_samples]` (a view, in mV) by name: `"V1"`, `"aVR"`, or a spelling the readers
        accept (`"avr"`, `"MLII"`...). `KeyError` for a lead that is not one of the 12 or that this record lacks
        (its row holds no data)."""
        canonical = canonical_lead_name(name) if isinstance(name, str) else None
        if canonical is None:
            raise KeyError(f"{name!r} is not one of the 12 leads ({', '.join(CANONICAL_LEADS)})")
        i = LEAD_INDEX[canonical]
        if not self.lead_mask[i]:
            raise KeyError(f"record {self.record_id or '(no id)'} has no lead {canonical} (present: "
                           f"{', '.join(self.present_leads) or 'none'})")  # fmt: skip
        return self.signal[i]

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.n_samples / self.fs

    @property
    def report(self) -> str | None:
        return self.metadata.get("report")

    def replace(self, **changes: Any) -> Ecg:
        """A copy with some fields changed (metadata is shallow-copied)."""
        changes.setdefault("metadata", dict(self.metadata))
        return replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"Ecg(id={self.record_id!r}, fs={self.fs:g}, samples={self.n_samples}, "
            f"duration={self.duration:.1f}s, leads={self.present_leads})"
        )

"""Lead names: the canonical 12-lead order and name normalisation.

Data is never reordered silently: `to_canonical` places each recognised lead in its canonical slot
and reports missing leads through a boolean mask.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ecglang.errors import EcgReadError

CANONICAL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
N_LEADS = len(CANONICAL_LEADS)
LEAD_INDEX = {name: i for i, name in enumerate(CANONICAL_LEADS)}

# Spellings seen in PhysioNet headers (PTB, MIT-BIH, CinC, MIMIC) mapped to canonical names.
_ALIASES = {
    "i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF",
    "di": "I", "dii": "II", "diii": "III", "leadi": "I", "leadii": "II", "leadiii": "III",
    "mli": "I", "mlii": "II", "mliii": "III",  # modified limb leads (MIT-BIH)
    "v1": "V1", "v2": "V2", "v3": "V3", "v4": "V4", "v5": "V5", "v6": "V6",
    "mv1": "V1", "mv2": "V2", "mv3": "V3", "mv4": "V4", "mv5": "V5", "mv6": "V6",
}  # fmt: skip

# Leads that are real but outside the 12-lead set: dropped with a note in metadata, not an error.
KNOWN_EXTRA_LEADS = frozenset({"vx", "vy", "vz", "x", "y", "z", "v3r", "v4r", "v5r", "v7", "v8", "v9"})


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical name of `name` (case-insensitive), or None when it is not one of the 12."""
    return _ALIASES.get(_key(name))


def is_known_extra_lead(name: str) -> bool:
    return _key(name) in KNOWN_EXTRA_LEADS


def same_leads(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two lists of lead names name the same leads in the same order, whatever their spelling ("Lead I"
    and "I", "avr" and "aVR"; names outside the 12 compare case-, space-, '-' and '_'-insensitively)."""
    return len(a) == len(b) and all(
        (canonical_lead_name(x) or _key(x)) == (canonical_lead_name(y) or _key(y)) for x, y in zip(a, b, strict=True)
    )


def to_canonical(
    signal: np.ndarray, names: list[str] | tuple[str, ...], path: str | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Place `signal` rows (one per name) into canonical 12-lead order.

    Returns `(signal12 [12, n], lead_mask [12] bool, dropped_extra_leads)`.
    Raises `EcgReadError` for unknown or duplicate lead names and when the row count disagrees.
    """
    signal = np.asarray(signal)
    if signal.ndim != 2:
        raise EcgReadError(path, f"signal must be 2-D [leads, samples], got shape {signal.shape}")
    if signal.shape[0] != len(names):
        raise EcgReadError(path, f"{signal.shape[0]} signal rows but {len(names)} lead names {list(names)}")
    out = np.zeros((N_LEADS, signal.shape[1]), dtype=np.float32)
    mask = np.zeros(N_LEADS, dtype=bool)
    dropped: list[str] = []
    unknown: list[str] = []
    for row, name in enumerate(names):
        canon = canonical_lead_name(name)
        if canon is None:
            (dropped if is_known_extra_lead(name) else unknown).append(str(name))
            continue
        idx = LEAD_INDEX[canon]
        if mask[idx]:
            raise EcgReadError(path, f"duplicate lead {canon!r} (from names {list(names)})")
        out[idx] = signal[row]
        mask[idx] = True
    if unknown:
        raise EcgReadError(path, f"unknown lead name(s) {unknown}; expected names like {list(CANONICAL_LEADS)}")
    if not mask.any():
        raise EcgReadError(path, f"none of the leads {list(names)} is a standard ECG lead")
    return out, mask, dropped


def parse_lead_subset(spec: str | list[str] | tuple[str, ...]) -> np.ndarray:
    """Turn 'I,II,V1' or ['I','II'] into a 12-long boolean mask. Used for reduced-lead inference."""
    names = [s for s in re.split(r"[,\s]+", spec) if s] if isinstance(spec, str) else list(spec)
    mask = np.zeros(N_LEADS, dtype=bool)
    for n in names:
        canon = canonical_lead_name(n)
        if canon is None:
            raise ValueError(f"unknown lead name {n!r}; expected one of {list(CANONICAL_LEADS)}")
        mask[LEAD_INDEX[canon]] = True
    return mask

"""A fast reader for the plain WFDB records that make up large datasets (PTB-XL, MIMIC-IV-ECG), used when
signal caches are built.

`ecglang.record.io.load_ecg` parses every header with `wfdb.rdheader` twice (pandas under the hood, ~15 ms a
record), which capped the cache build at ~45 records/s per process. Most records of a large dataset are the
simplest WFDB case: one segment, every signal in one format-16 `.dat` file, a gain and units on each line.
`read_plain_wfdb` reads exactly that case with one header parse and one `numpy.fromfile` (well under 1 ms) and
returns None for anything else (multi-segment, other formats, byte offsets, skew, a gain of 0, unknown units, a
signal file of the wrong size); the caller then uses `load_ecg`, which also gives the precise error message.
The signal it returns equals `load_ecg(path).signal` (tested on PTB-XL and MIMIC-shaped records).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecglang.errors import EcgLangError
from ecglang.record.leads import to_canonical

# Scale to mV of the unit strings `load_ecg` accepts (anything else: not plain, use load_ecg).
UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
WFDB_INVALID_16 = -32768  # format 16's "no sample" value (NaN in physical units, as wfdb reads it)


def read_plain_wfdb(path: str | Path) -> tuple[np.ndarray, np.ndarray, float] | None:
    """`(signal float32 [12, n] mV, lead_mask bool [12], fs)` of a plain WFDB record, or None when the record is
    not plain (see the module docstring) or its header cannot be parsed here; `path` has no extension."""
    base = Path(path)
    if base.suffix.lower() in (".hea", ".dat"):
        base = base.with_suffix("")
    try:
        text = base.with_name(base.name + ".hea").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return None
    record = lines[0].split()
    if len(record) < 4 or "/" in record[0]:  # no sample count, or a multi-segment record
        return None
    try:
        n_sig, fs, n_samples = int(record[1]), float(record[2].split("/")[0].split("(")[0]), int(record[3])
    except ValueError:
        return None
    if n_sig < 1 or n_samples < 1 or fs <= 0 or len(lines) < 1 + n_sig:
        return None
    files, gains, baselines, scales, names = set(), [], [], [], []
    for line in lines[1 : 1 + n_sig]:
        fields = line.split(maxsplit=8)
        if len(fields) < 9 or fields[1] != "16":  # format 16 only (no skew "x", no byte offset ":")
            return None
        files.add(fields[0])
        gain_field = fields[2]
        if "/" not in gain_field:
            return None
        gain_text, unit = gain_field.split("/", 1)
        baseline = 0
        if "(" in gain_text:
            gain_text, rest = gain_text.split("(", 1)
            try:
                baseline = int(rest.rstrip(")"))
            except ValueError:
                return None
        try:
            gain = float(gain_text)
        except ValueError:
            return None
        scale = UNIT_TO_MV.get(unit.strip().lower())
        if gain == 0 or scale is None:
            return None
        gains.append(gain)
        baselines.append(baseline)
        scales.append(scale)
        names.append(fields[8].strip())
    name = next(iter(files))
    # one bare file name beside the header; a path ('sub/x.dat', '..') is load_ecg's to read or refuse
    # (`Path.with_name` raises ValueError on it, which stopped the whole cache build)
    if len(files) != 1 or "/" in name or "\\" in name or name in (".", ".."):
        return None
    dat = base.with_name(name)
    try:
        if dat.stat().st_size != n_sig * n_samples * 2:
            return None
        digital = np.fromfile(dat, dtype="<i2").reshape(n_samples, n_sig).T
    except (OSError, ValueError):
        return None
    signal = (digital - np.asarray(baselines, dtype=np.float64)[:, None]) / np.asarray(gains)[:, None]
    signal[digital == WFDB_INVALID_16] = np.nan
    signal *= np.asarray(scales)[:, None]
    try:
        signal12, mask, _ = to_canonical(signal, names, path=str(base))
    except EcgLangError:  # unknown or duplicate lead names: load_ecg reports them
        return None
    return signal12, mask, fs


__all__ = ["UNIT_TO_MV", "read_plain_wfdb"]

"""A fast reader for the plain WFDB records that make up large datasets (PTB-XL, MIMIC-IV-ECG), used when
signal caches are built.

`ecglang.record.io.load_ecg` parses every header with `wfdb.rdheader` twice (pandas under the hood, ~15 ms a
record), which capped the cache build at ~45 records/s per process. Most records of a large dataset are the
simplest WFDB case: one segment, every signal in one format-16 `.dat` file, a lead name on each line.
`read_plain_wfdb` reads exactly that case with one `numpy.fromfile` (well under 1 ms).

The header is read and checked by the full reader's own parser (`record.wfdb_reader.parse_wfdb_header`: the same
grammar, the same limits such as the supported sampling-rate range, the values wfdb reads), so this reads only
records that `load_ecg` reads, with the same values. It returns None for anything else: a header that the
parser refuses, multi-segment records, other formats, byte offsets, skew, `.mat` signal files, units that are
not volts, non-ASCII lead names, a signal file of the wrong size, a record of over `MAX_PLAIN_VALUES` values;
the caller then uses `load_ecg`, which reads the record (only as far as it is used) or raises the precise
error. The signal it returns equals `load_ecg(path).signal` (tested on PTB-XL, CinC and MIMIC-shaped records
and on header variants: tests/data/test_fastread_agrees.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecglang.errors import EcgLangError
from ecglang.record.leads import to_canonical
from ecglang.record.wfdb_reader import parse_wfdb_header, read_text, split_header, unit_scale

WFDB_INVALID_16 = -32768  # format 16's "no sample" value (NaN in physical units, as wfdb reads it)
# Values that a record may hold to be read whole here (32 MiB as float64: 12 leads × 5.8 min at 1 kHz; PTB-XL and
# MIMIC-IV-ECG records hold 60,000). A longer record is left to load_ecg, which reads only the part that
# preprocessing uses (`PreprocessConfig.read_window`), so that a Holter record's size never drives memory here.
MAX_PLAIN_VALUES = 1 << 22


def read_plain_wfdb(path: str | Path) -> tuple[np.ndarray, np.ndarray, float] | None:
    """`(signal float32 [12, n] mV, lead_mask bool [12], fs)` of a plain WFDB record, or None when the record is
    not plain or not readable (see the module docstring: `load_ecg` then reads it or says why not); `path` has no
    extension, or ``.hea``/``.dat``."""
    base = Path(path)
    if base.suffix.lower() in (".hea", ".dat"):
        base = base.with_suffix("")
    hea = base.with_name(base.name + ".hea")
    try:
        header = parse_wfdb_header(hea, split_header(read_text(hea))[0])
    except EcgLangError:  # a missing, huge or refused header: load_ecg raises the same error
        return None
    signals = header.signals
    if header.n_seg is not None or not header.sig_len or not signals:
        return None
    name = signals[0].file_name
    # one signal file beside the header (the grammar allows no path), stored (not '~'), and not a MATLAB file
    # (its matrix header is checked against the WFDB header by load_ecg)
    if name == "~" or name.lower().endswith(".mat"):
        return None
    gains, baselines, scales, names = [], [], [], []
    for signal in signals:
        scale = unit_scale(signal.units)
        description = signal.description
        if (
            signal.file_name != name
            or signal.fmt != "16"
            or signal.samps_per_frame != 1
            or signal.skew
            or signal.byte_offset
            or scale is None
            or description is None
            or not description.isascii()  # wfdb drops non-ASCII characters from names, and ends them at a tab
            or "\t" in description
        ):
            return None
        gains.append(signal.gain)
        baselines.append(signal.baseline)
        scales.append(scale)
        names.append(description)
    n_sig, n_samples = len(signals), header.sig_len
    if n_sig * n_samples > MAX_PLAIN_VALUES:
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
    if any(scale != 1.0 for scale in scales):  # (× 1.0 changes no value: mV, the usual units, skip it)
        signal *= np.asarray(scales)[:, None]
    try:
        signal12, mask, _ = to_canonical(signal, names, path=str(base))
    except EcgLangError:  # unknown or duplicate lead names: load_ecg reports them
        return None
    return signal12, mask, header.fs


__all__ = ["MAX_PLAIN_VALUES", "WFDB_INVALID_16", "read_plain_wfdb"]

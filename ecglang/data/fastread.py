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

`wfdb_header_fields` gives the few header values that a table builder keeps (rate, length, signal count, comments)
as `wfdb.rdheader` reads them, through the same parser (~0.1 ms a header, against ~9 ms for `wfdb.rdheader`); a
header that the parser does not take is left to `wfdb.rdheader`, so that the values, and the errors, are wfdb's
(tests/data/test_physionet_headers_audit21.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import wfdb

from ecglang.errors import EcgLangError
from ecglang.record.leads import to_canonical
from ecglang.record.wfdb_reader import MAX_HEADER_BYTES, parse_wfdb_header, read_text, split_header, unit_scale

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


class WfdbHeaderFields(NamedTuple):
    """The values of a WFDB header that a table builder keeps, as `wfdb.rdheader` reads them."""

    fs: float
    sig_len: int  # 0 when not written
    n_sig: int
    comments: list[str]  # as wfdb gives them: each '#' line without the '#'s, spaces and tabs at its ends


def wfdb_header_fields(record: str | Path) -> WfdbHeaderFields:
    """`WfdbHeaderFields` of the header of `record` (a path without extension), as `wfdb.rdheader` reads them.

    A single-segment ASCII header that `parse_wfdb_header` takes is read here (its values are wfdb's: the parser's
    contract); every other header (one the parser refuses, multi-segment, with non-ASCII bytes, which wfdb drops,
    over `MAX_HEADER_BYTES`, unreadable) is read by `wfdb.rdheader`, whose exception the caller gets as before."""
    base = Path(record)
    hea = base.with_name(base.name + ".hea")
    try:
        with hea.open("rb") as f:
            raw = f.read(MAX_HEADER_BYTES + 1)
    except OSError:
        raw = b"\x80"  # not read here: wfdb reads it below, or raises its own error
    if len(raw) <= MAX_HEADER_BYTES and raw.isascii():
        text = raw.decode("ascii")
        try:
            parsed = parse_wfdb_header(hea, split_header(text)[0])
        except EcgLangError:
            parsed = None
        if parsed is not None and parsed.n_seg is None:  # (wfdb also parses a multi-segment header's segment lines)
            # wfdb's comments: the stripped lines that start with '#', stripped of " \t#" (empty ones kept)
            lines = (line.strip() for line in text.splitlines())
            comments = [line.strip(" \t#") for line in lines if line.startswith("#")]
            return WfdbHeaderFields(parsed.fs, parsed.sig_len or 0, parsed.n_sig, comments)
    header = wfdb.rdheader(str(base))
    return WfdbHeaderFields(float(header.fs), int(header.sig_len or 0), int(header.n_sig or 0), header.comments or [])


__all__ = ["MAX_PLAIN_VALUES", "WFDB_INVALID_16", "WfdbHeaderFields", "read_plain_wfdb", "wfdb_header_fields"]

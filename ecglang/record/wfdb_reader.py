"""WFDB records (header ``.hea`` + signal files): header checks that wfdb skips, and the sample read.

wfdb silently replaces an unparsable or negative sampling rate with 250 Hz, fails with a bare ``KeyError``
on an unknown storage format and with "sampto must be greater than sampfrom" on an empty record; every such
case is caught here first and raised as an `EcgReadError` that names the header and the problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import wfdb

from ecglang.errors import EcgReadError
from ecglang.record.demographics import parse_age, parse_sex
from ecglang.record.leads import canonical_lead_name
from ecglang.record.window import ReadWindow, check_sampling_rate

# Bytes per sample of each storage format wfdb reads (WFDB spec constants, the same as wfdb's private table;
# kept here so that no private wfdb module is imported). 0 marks the FLAC-compressed formats, whose size is
# not known in advance. Formats outside this table end in a KeyError deep inside wfdb, so they are refused.
WFDB_BYTES_PER_SAMPLE: dict[str, float] = {
    "8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3, "311": 4 / 3,
    "508": 0, "516": 0, "524": 0,
}  # fmt: skip
WFDB_FORMATS: tuple[str, ...] = tuple(WFDB_BYTES_PER_SAMPLE)
WFDB_DEFAULT_FS = 250.0  # the WFDB spec's rate for a header that gives none


def parse_header_comments(comments: Sequence[str]) -> dict[str, Any]:
    """Age, sex and CinC fields from WFDB header comments.

    Understands ``Key: value`` comments (CinC ``Age: 78`` / ``Sex: Male`` / ``Dx: 164889003,59118001`` /
    ``Rx`` / ``Hx``; PTB ``age: 81`` / ``sex: female``) and the MIT-BIH first comment ``69 M 1085 1629 x1``
    (age, sex, ...). Returns ``age`` (float or None), ``sex`` ("M"/"F"/None) and, when present, ``snomed``
    (list of str), ``rx``, ``hx``.
    """
    out: dict[str, Any] = {"age": None, "sex": None}
    age_text: str | None = None
    sex_text: str | None = None
    for line in comments:
        m = _KEY_VALUE.match(line)
        if m:
            key, value = m.group(1).strip().lower(), m.group(2).strip()
            if key == "age" and age_text is None:
                age_text = value
            elif key in ("sex", "gender") and sex_text is None:
                sex_text = value
            elif key == "dx" and "snomed" not in out:
                out["snomed"] = [code.strip() for code in value.split(",") if code.strip()]
            elif key in ("rx", "hx") and key not in out:
                out[key] = value
            continue
        m = _MITBIH_PATIENT.match(line)
        if m and age_text is None and sex_text is None:
            age_text, sex_text = m.group(1), m.group(2)
    out["age"] = parse_age(age_text)
    out["sex"] = parse_sex(sex_text)
    return out


def wfdb_format(hea: Path) -> str:
    signal_files, _ = header_references(hea)
    return "wfdb-mat" if any(f.suffix.lower() == ".mat" for f in signal_files) else "wfdb"


_KEY_VALUE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 _()/.-]*?)\s*:\s*(.*)$")
_MITBIH_PATIENT = re.compile(r"^\s*(\d{1,3}|\?)\s+([MFmf?])(?:\s|,|$)")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# WFDB record line: name[/n_seg] n_sig [fs[/counter_freq[(base_counter)]] [sig_len [base_time [base_date]]]]
_FS_FIELD = re.compile(rf"^{_NUMBER}(?:/{_NUMBER}(?:\({_NUMBER}\))?)?$")
# WFDB signal line fields: format such as 16, 212, 16x1+24 (samples per frame, skew, byte offset) and gain.
_SIGNAL_FORMAT = re.compile(r"^\d+(?:x\d+)?(?::\d+)?(?:\+\d+)?$")
_GAIN_FIELD = re.compile(rf"^{_NUMBER}(?:\(\s*[-+]?\d+\s*\))?(?:/\S*)?$")
_INTEGER = re.compile(r"^[-+]?\d+$")

# Scale from a header's units to mV. Units are compared case-insensitively on the prefix before "V".
# "\ufffd" is an undecodable byte: in a unit field before "V" that is a Latin-1 "µ" (0xB5).
_UNIT_PREFIX_TO_MV = {"": 1000.0, "m": 1.0, "u": 1e-3, "µ": 1e-3, "μ": 1e-3, "\ufffd": 1e-3, "n": 1e-6}


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EcgReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    # Headers are ASCII by the spec, but real ones carry Latin-1 or UTF-8 comments: never crash on them.
    return raw.decode("utf-8", errors="replace")


def split_header(text: str) -> tuple[list[str], list[str]]:
    """(specification lines, comment lines without '#'). Blank lines are dropped."""
    spec: list[str] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comment = stripped[1:].strip()
            if comment:
                comments.append(comment)
        else:
            spec.append(stripped)
    return spec, comments


def header_references(hea: Path) -> tuple[set[Path], set[Path]]:
    """(signal files, segment headers) that a header names; empty sets when it cannot be parsed (the
    header's problems are reported by `load_ecg`, not while listing a folder)."""
    try:
        spec, _ = split_header(read_text(hea))
        fields = spec[0].split()
        if "/" in fields[0]:  # multi-segment: lines are "segment_name n_samples"; "~" is a gap
            names = {line.split()[0] for line in spec[1:]}
            return set(), {hea.parent / f"{n}.hea" for n in names if n != "~"}
        n_sig = int(fields[1])
        names = {line.split()[0] for line in spec[1 : 1 + n_sig]}
        return {hea.parent / n for n in names if n != "~"}, set()
    except (EcgReadError, IndexError, ValueError):
        return set(), set()


def _validate_record_line(hea: Path, spec: list[str]) -> None:
    """Checks wfdb skips: it silently replaces an unparsable or negative sampling rate with 250 Hz, fails with a
    bare IndexError when signal lines are missing and with a KeyError on an unknown storage format."""
    if not spec:
        raise EcgReadError(hea, "corrupt header: empty (no record line)")
    fields = spec[0].split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise EcgReadError(hea, f"corrupt header: garbled record line {spec[0][:80]!r}")
    if len(fields) >= 3 and not _FS_FIELD.match(fields[2]):
        raise EcgReadError(hea, f"corrupt header: sampling rate field {fields[2][:40]!r} is not a number")
    if len(fields) >= 3:  # "fs/counter_freq(base_counter)": the rate is the first number
        check_sampling_rate(hea, fields[2].split("/")[0], "header")
    if len(fields) >= 4 and not fields[3].isdigit():
        raise EcgReadError(hea, f"corrupt header: sample count field {fields[3][:40]!r} is not an integer")
    if "/" in fields[0]:
        return  # multi-segment: the segment headers are checked when wfdb reads them
    n_sig = int(fields[1])
    if len(spec) - 1 < n_sig:
        raise EcgReadError(
            hea,
            f"corrupt header: record line declares {n_sig} signals but {len(spec) - 1} signal lines follow",
        )
    for number, line in enumerate(spec[1 : 1 + n_sig], start=1):
        problem = _signal_line_problem(line.split())
        if problem:
            raise EcgReadError(hea, f"corrupt header: signal line {number} ({line[:60]!r}): {problem}")
        fmt = re.match(r"\d+", line.split()[1]).group()  # matched by _SIGNAL_FORMAT above
        if fmt not in WFDB_FORMATS:
            raise EcgReadError(
                hea,
                f"unsupported WFDB storage format {fmt} (signal line {number}); "
                f"supported formats: {', '.join(WFDB_FORMATS)}",
            )


def _signal_line_problem(fields: list[str]) -> str | None:
    """Check the fixed fields of a signal line. wfdb does not: text where a number belongs silently
    becomes part of the lead description (and then an "unknown lead" error that hides the real problem)."""
    # file format [gain(baseline)/units [adc_res [adc_zero [init_value [checksum [block_size [descr]]]]]]]
    if len(fields) < 2 or not _SIGNAL_FORMAT.match(fields[1]):
        return f"storage format {fields[1] if len(fields) > 1 else ''!r} is not a WFDB format"
    if len(fields) > 2 and not _GAIN_FIELD.match(fields[2]):
        return f"gain field {fields[2][:30]!r} is not 'gain(baseline)/units'"
    names = ("ADC resolution", "ADC zero", "initial value", "checksum", "block size")
    for name, value in zip(names, fields[3:8], strict=False):
        if not _INTEGER.match(value):
            return f"{name} field {value[:30]!r} is not an integer"
    return None


def _raw_units(spec: list[str], n_sig: int) -> list[str] | None:
    """Units of each signal line as written (wfdb decodes headers as ASCII and drops the "µ" of "µV",
    which would turn microvolts into volts)."""
    units: list[str] = []
    for line in spec[1 : 1 + n_sig]:
        fields = line.split()
        if len(fields) < 3:
            return None
        gain_field = fields[2]
        units.append(gain_field.split("/", 1)[1] if "/" in gain_field else "mV")  # WFDB default: mV
    return units


def _unit_scale(unit: str) -> float | None:
    u = unit.strip()
    if not u.lower().endswith("v"):
        return None
    return _UNIT_PREFIX_TO_MV.get(u[:-1] if u[:-1] in ("µ", "μ", "\ufffd") else u[:-1].lower())


def _check_signal_files(hea: Path, header: wfdb.Record) -> None:
    """Compare each signal file's size with what the header promises, before wfdb reads it, so that a
    truncated or mismatched file gets a clear message rather than wfdb's "Samples were not loaded"."""
    sig_len = header.sig_len
    per_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name or []):
        per_file.setdefault(name, []).append(i)
    for name, channels in per_file.items():
        if name == "~":
            continue
        f = hea.parent / name
        if not f.is_file():
            raise EcgReadError(hea, f"missing signal file {name} (named in {hea.name})")
        if not sig_len:
            continue  # no sample count in the header: wfdb derives it from the file size
        try:
            frame = sum(WFDB_BYTES_PER_SAMPLE[header.fmt[i]] * (header.samps_per_frame[i] or 1) for i in channels)
        except (KeyError, TypeError, IndexError):
            continue  # a format without a fixed size per sample
        if frame <= 0:
            continue  # compressed (FLAC) formats
        offset = int((header.byte_offset or [None] * len(header.file_name))[channels[0]] or 0)
        expected = offset + math.ceil(sig_len * frame)
        size = f.stat().st_size
        held = max(0, int((size - offset) // frame))
        duration = f"{sig_len / header.fs:g} s at {header.fs:g} Hz" if header.fs else f"{sig_len} samples"
        if size < expected:
            raise EcgReadError(
                hea,
                f"truncated signal file {name}: header promises {sig_len} samples ({duration}, "
                f"{expected} bytes) but the file holds {size} bytes (about {held} samples)",
            )
        if size - expected >= frame:  # more than a padding byte or two: header and data disagree
            raise EcgReadError(
                hea,
                f"sample count mismatch: header says {sig_len} samples ({duration}) but signal file "
                f"{name} holds {held} samples ({size} bytes)",
            )


def _record_length(hea: Path, header: wfdb.Record) -> int | None:
    """Samples per signal: the header's count, else what the first signal file holds (None when that cannot
    be known without decoding, e.g. FLAC formats). Raises `EcgReadError` for an empty record, where wfdb
    would say "sampto must be greater than sampfrom"."""
    if header.sig_len:
        return int(header.sig_len)
    if header.sig_len == 0 and not any(name != "~" for name in header.file_name or []):
        raise EcgReadError(hea, "empty record: the header says 0 samples")
    for i, name in enumerate(header.file_name or []):
        if name == "~":
            continue
        channels = [j for j, other in enumerate(header.file_name) if other == name]
        try:
            frame = sum(WFDB_BYTES_PER_SAMPLE[header.fmt[j]] * (header.samps_per_frame[j] or 1) for j in channels)
        except (KeyError, TypeError, IndexError):
            return None
        if frame <= 0:
            return None  # compressed (FLAC) formats
        offset = int((header.byte_offset or [None] * len(header.file_name))[i] or 0)
        held = max(0, int((hea.parent / name).stat().st_size - offset) // math.ceil(frame))
        if held == 0:
            said = " (the header says 0 samples)" if header.sig_len == 0 else ""
            raise EcgReadError(hea, f"empty record: signal file {name} holds no samples{said}")
        return held
    return None


def read_wfdb(
    hea: Path, fs: float | None, leads: Sequence[str] | None, window: ReadWindow | None = None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    """Read a WFDB record (``.hea`` path) as ``(signal [channels, samples] in mV, names, fs, metadata)``;
    with `window`, only that part of the samples is read from disk."""
    spec, comments = split_header(read_text(hea))
    _validate_record_line(hea, spec)
    base = str(hea.with_suffix(""))
    try:
        header = wfdb.rdheader(base)
    except Exception as exc:  # wfdb raises HeaderSyntaxError, ValueError, IndexError, ... on bad headers
        raise EcgReadError(hea, f"corrupt header: {type(exc).__name__}: {exc}") from exc
    multi = isinstance(header, wfdb.MultiRecord)
    header_fs = check_sampling_rate(hea, header.fs if header.fs is not None else WFDB_DEFAULT_FS, "header")
    if fs is not None and not math.isclose(float(fs), header_fs):
        raise EcgReadError(hea, f"sampling rate mismatch: header says {header_fs:g} Hz but fs={fs:g} was requested")
    if multi:
        n_total = int(header.sig_len) if header.sig_len else None
        if n_total is None and header.sig_len == 0:
            raise EcgReadError(hea, "empty record: the header says 0 samples")
    else:
        _check_signal_files(hea, header)
        n_total = _record_length(hea, header)
    meta: dict[str, Any] = {}
    read_from, read_to = 0, n_total
    if window is not None and n_total is not None:
        read_from, read_to = window.bounds(n_total, header_fs)
        meta["read_offset"], meta["n_samples_in_file"] = read_from, n_total
    # wfdb cannot take sampfrom/sampto when the header has no sample count: then it reads all, sliced below
    ranged = bool(header.sig_len)
    try:
        rec = wfdb.rdrecord(
            base, sampfrom=read_from if ranged else 0, sampto=read_to if ranged else None, physical=True, m2s=True
        )
    except Exception as exc:  # anything wfdb raises while reading samples is about this record
        raise EcgReadError(hea, f"cannot read signal: {type(exc).__name__}: {exc}") from exc
    if rec.p_signal is None or rec.p_signal.ndim != 2 or rec.p_signal.shape[0] == 0:
        raise EcgReadError(hea, "empty record: no samples")
    signal = np.asarray(rec.p_signal, dtype=np.float64).T  # [channels, samples]
    if not ranged and read_to is not None:
        signal = signal[:, read_from:read_to]
    if read_to is not None and signal.shape[1] != read_to - read_from:
        said = f"header says {header.sig_len}" if header.sig_len else f"signal file holds {read_to}"
        raise EcgReadError(hea, f"sample count mismatch: {said} samples, read {signal.shape[1] + read_from}")
    names = [str(n) for n in rec.sig_name]
    raw_units = None if multi else _raw_units(spec, len(names))
    units = raw_units if raw_units else list(rec.units or ["mV"] * len(names))
    # Units matter only for channels that end up as ECG leads (under the caller's names when given).
    final_names = [str(n) for n in leads] if leads is not None and len(leads) == len(names) else names
    scales = np.ones(len(names))
    for i, (name, unit) in enumerate(zip(final_names, units, strict=True)):
        scale = _unit_scale(unit)
        if scale is None:
            if canonical_lead_name(name) is not None:  # other channels are dropped or rejected by name
                raise EcgReadError(hea, f"lead {name!r} has unsupported units {unit!r}; expected mV, µV/uV or V")
            scale = 1.0
        scales[i] = scale
    signal *= scales[:, None]
    meta.update(parse_header_comments(comments))
    meta["comments"] = comments
    meta["units_in_file"] = units
    return signal, names, header_fs, meta

"""WFDB records (header ``.hea`` + signal files): header checks that wfdb skips, and the sample read.

wfdb silently replaces an unparsable or negative sampling rate with 250 Hz, fails with a bare ``KeyError``
on an unknown storage format and with "sampto must be greater than sampfrom" on an empty record; every such
case is caught here first and raised as an `EcgReadError` that names the header and the problem. Headers are
parsed by `parse_wfdb_header` (a grammar that wfdb reads as written, checked against wfdb's own parse), which
the cache build's fast reader (`data.fastread`) shares, so both accept the same headers and read the same values.
A `.mat` signal file's matrix header (type, rows × columns, data offset) must match the WFDB header.

A few bytes of header must not drive memory either: headers over `MAX_HEADER_BYTES` are not read, a skew over
`WFDB_MAX_SKEW_S` (or not less than the record) is refused, and a multi-segment record is checked before wfdb
reads it: its total length against its segment lengths, each segment that the read touches against its own
header and signal files (as a single-segment record is), gaps only in variable layouts (the only ones wfdb
reads), and at most `MAX_GAP_VALUES` gap samples filled with NaN per read.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import wfdb

from ecglang.errors import EcgReadError
from ecglang.record.demographics import parse_age, parse_sex
from ecglang.record.leads import canonical_lead_name
from ecglang.record.matlab_reader import check_wfdb_matrix
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
# A WFDB header is a few KB of text (a multi-segment master header of thousands of segments, tens of KB):
# anything larger is not a header, and is refused before it is read into memory.
MAX_HEADER_BYTES = 1 << 20
# A skew is the delay, in samples, of one signal behind the others (a few samples of multiplexer delay). wfdb
# reads `skew` frames past the window and fills what lies past the end of the file with NaN, so a header
# claiming a huge skew makes a 48 KB record allocate gigabytes of NaN: skews over this are refused.
WFDB_MAX_SKEW_S = 1.0
# Gap segments ("~") of a multi-segment record hold no data: wfdb fills them with NaN. A read may fill at most
# this many values (1 GiB as float64) with NaN, so a header's gap length cannot drive memory; longer gaps can
# still be read through a window (`load_ecg(..., window=...)`) that leaves them out.
MAX_GAP_VALUES = 1 << 27


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
# The WFDB header grammar as wfdb parses it. wfdb's own patterns are looser and take what they do not match
# silently elsewhere: a rate of "+500" is read as 250 Hz, "50e1" as 50 Hz, a gain of "1E3" as 1, "(+10)" ends up
# in the lead name. These accept only text that wfdb reads as written, in ASCII digits (wfdb drops other
# characters), so the values of `parse_wfdb_header` are those wfdb reads (`_check_wfdb_agrees` checks it).
_DECIMAL = r"(?:\d+\.?\d*|\.\d+)"
_RECORD_NAME = re.compile(r"[-\w]+(?:/\d+)?", re.ASCII)
# name[/n_seg] n_sig [fs[/counter_freq[(base_counter)]] [sig_len [base_time [base_date]]]]
_FS_FIELD = re.compile(rf"(-?{_DECIMAL})(?:/-?{_DECIMAL}(?:\(-?{_DECIMAL}\))?)?", re.ASCII)
_BASE_TIME = re.compile(r"\d{1,2}(?::\d{1,2}){0,2}(?:\.\d{1,6})?", re.ASCII)
_BASE_DATE = re.compile(r"\d{1,2}/\d{1,2}/\d{4}", re.ASCII)
_COUNT = re.compile(r"\d{1,18}", re.ASCII)
_RECORD_LINE = re.compile(
    rf"([-\w]+)(?:/(\d{{1,18}}))?[ \t]+(\d{{1,18}})(?:[ \t]+{_FS_FIELD.pattern}(?:[ \t]+(\d{{1,18}})"
    rf"(?:[ \t]+({_BASE_TIME.pattern})(?:[ \t]+({_BASE_DATE.pattern}))?)?)?)?",
    re.ASCII,
)
# file format[xsamples_per_frame][:skew][+byte_offset] gain[(baseline)][/units] adc_res adc_zero init_value
# checksum block_size description (each field optional from the gain on, in this order)
_FILE_NAME = re.compile(r"~?[-\w]*\.?\w*", re.ASCII)
_SIGNAL_FORMAT = re.compile(r"(\d+)(?:x(\d{1,18}))?(?::(\d{1,18}))?(?:\+(\d{1,18}))?", re.ASCII)
_UNITS = r"(?:[\w^?%/-]|[^\x00-\x7f])*"  # wfdb's unit characters; non-ASCII ones it drops ("µV" → "V")
_GAIN_FIELD = re.compile(rf"(-?{_DECIMAL}(?:e[-+]?\d+)?)(?:\((-?\d+)\))?(?:/({_UNITS}))?", re.ASCII)
_INTEGER_FIELDS = (("ADC resolution", r"\d"), ("ADC zero", r"-?\d"), ("initial value", r"-?\d"),
                   ("checksum", r"-?\d"), ("block size", r"\d"))  # fmt: skip
_SIGNAL_LINE = re.compile(
    rf"({_FILE_NAME.pattern})[ \t]+{_SIGNAL_FORMAT.pattern}(?:[ \t]+{_GAIN_FIELD.pattern}"
    + "".join(rf"(?:[ \t]+({pattern}{{1,18}})" for _, pattern in _INTEGER_FIELDS)
    + r"(?:[ \t]+(.*))?"
    + ")?" * (len(_INTEGER_FIELDS) + 1),
    re.ASCII,
)
# The usual signal line (every field, one space apart, a description without tabs) in a cheaper match; its format
# and gain fields are parsed once for all the lines (and records) that share them (`_format_and_gain`).
_PLAIN_SIGNAL_LINE = re.compile(
    rf"({_FILE_NAME.pattern}) ([^ \t]+) ([^ \t]+) \d{{1,18}} (-?\d{{1,18}}) -?\d{{1,18}} -?\d{{1,18}} \d{{1,18}}"
    r" ([^ \t][^\t]*)",
    re.ASCII,
)
_FORMAT_AND_GAIN: dict[tuple[str, str], tuple[str, int, int, int, float, int | None, str] | None] = {}
_TIME_FORMATS = ("%S", "%M:%S", "%H:%M:%S")  # by the number of colons, as wfdb reads a base time
_ASCII_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e]")  # wfdb drops non-ASCII ones before splitting
_MAX_BASELINE = 2**31 - 1  # WFDB samples are at most 32-bit: a baseline beyond that range is not a sample value

# Scale from a header's units to mV. Units are compared case-insensitively on the prefix before "V".
# "\ufffd" is an undecodable byte: in a unit field before "V" that is a Latin-1 "µ" (0xB5).
_UNIT_PREFIX_TO_MV = {"": 1000.0, "m": 1.0, "u": 1e-3, "µ": 1e-3, "μ": 1e-3, "\ufffd": 1e-3, "n": 1e-6}


def read_text(path: Path, limit: int = MAX_HEADER_BYTES) -> str:
    """A header's text; `EcgReadError` when it cannot be read or is larger than `limit` bytes (read no further)."""
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise EcgReadError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if len(raw) > limit:
        raise EcgReadError(
            path,
            f"header file too large ({max(size, len(raw))} bytes, limit {limit // 1024} KiB): a WFDB header is a "
            "few KB of text; this is not a WFDB header, or it is corrupt",
        )
    # Headers are ASCII by the spec, but real ones carry Latin-1 or UTF-8 comments: never crash on them.
    return raw.decode("utf-8", errors="replace")


def split_header(text: str) -> tuple[list[str], list[str]]:
    """(specification lines, comment lines without '#'). Blank lines are dropped. Lines end where wfdb ends them
    (it drops non-ASCII characters first, line separators among them)."""
    spec: list[str] = []
    comments: list[str] = []
    for line in text.splitlines() if text.isascii() else _ASCII_LINE_BREAKS.split(text):
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


class WfdbSignal(NamedTuple):
    """One signal line of a WFDB header, with the values that wfdb reads from it (`parse_wfdb_header`)."""

    file_name: str
    fmt: str
    samps_per_frame: int  # 1 when not written
    skew: int  # 0 when not written
    byte_offset: int  # 0 when not written
    gain: float  # ADC units per physical unit: wfdb's 200 when not written or 0
    baseline: int  # when not written: the ADC zero if written, else 0 (as wfdb)
    units: str  # as written (wfdb drops a "µ": `unit_scale` reads these); "mV" when not written
    description: str | None  # the rest of the line as written (wfdb's name when ASCII without tabs); None: absent


class WfdbHeader(NamedTuple):
    """The record and signal lines of a WFDB header, with the values that wfdb reads (`parse_wfdb_header`)."""

    record_name: str
    n_seg: int | None  # segments of a multi-segment record; None for a single-segment one
    n_sig: int
    fs: float  # in the supported range; wfdb's 250 Hz (`WFDB_DEFAULT_FS`) when not written
    sig_len: int | None  # samples per signal; None when not written
    signals: tuple[WfdbSignal, ...]  # empty for a multi-segment record


def parse_wfdb_header(hea: Path, spec: list[str]) -> WfdbHeader:
    """Parse and check a WFDB header's specification lines (`split_header`), raising `EcgReadError` for anything
    that wfdb would read otherwise than written or fail on: wfdb silently replaces an unparsable or negative
    sampling rate with 250 Hz, reads "1E3" as a gain of 1 and unparsed text as part of a lead's name, fails with a
    bare IndexError when signal lines are missing and with a KeyError on an unknown storage format. The sampling
    rate must be in the supported range (`check_sampling_rate`). `load_ecg` and the fast reader of the cache
    build (`data.fastread`) both read headers through this, so they accept the same ones."""
    if not spec:
        raise EcgReadError(hea, "corrupt header: empty (no record line)")
    fields = spec[0].split()
    if len(fields) < 2 or not _COUNT.fullmatch(fields[1]):
        raise EcgReadError(hea, f"corrupt header: garbled record line {spec[0][:80]!r}")
    if not all(line.isascii() for line in spec):  # after the garble check: binary garbage is not a name
        _check_ascii_names(hea, spec)
    record = _RECORD_LINE.fullmatch(spec[0])
    if record is None:
        raise EcgReadError(hea, f"corrupt header: {_record_line_problem(fields, spec[0])}")
    name, n_seg, n_sig, fs_text, sig_len, base_time, base_date = record.groups()
    fs = WFDB_DEFAULT_FS
    if fs_text is not None:  # "fs/counter_freq(base_counter)": the rate is the first number
        fs = float(fs_text)
        if math.isfinite(fs) and round(fs, 8) == float(int(fs)):  # wfdb reads a rate this close as the integer
            fs = float(int(fs))
        fs = check_sampling_rate(hea, fs, "header")
    try:  # wfdb reads these (and fails on an impossible time or date)
        if base_time:
            datetime.strptime(base_time, _TIME_FORMATS[base_time.count(":")] + (".%f" if "." in base_time else ""))
        if base_date:
            datetime.strptime(base_date, "%d/%m/%Y")
    except ValueError:
        raise EcgReadError(hea, f"corrupt header: base time or date {' '.join(fields[4:6])!r} is invalid") from None
    length = None if sig_len is None else int(sig_len)
    if n_seg is not None:  # multi-segment: the segment headers are checked when they are read
        return WfdbHeader(name, int(n_seg), int(n_sig), fs, length, ())
    if len(spec) - 1 != int(n_sig):  # wfdb fails on extra lines with a TypeError while reading samples
        raise EcgReadError(
            hea, f"corrupt header: record line declares {n_sig} signals but {len(spec) - 1} signal lines follow"
        )
    signals = tuple(_parse_signal_line(hea, number, line) for number, line in enumerate(spec[1 : 1 + int(n_sig)], 1))
    return WfdbHeader(name, None, int(n_sig), fs, length, signals)


def _parse_signal_line(hea: Path, number: int, line: str) -> WfdbSignal:
    plain = _PLAIN_SIGNAL_LINE.fullmatch(line)
    if plain is not None and (head := _format_and_gain(plain[2], plain[3])) is not None:
        fmt, spf, skew, offset, gain, baseline, units = head
        baseline = int(plain[4]) if baseline is None else baseline  # wfdb: no baseline written is the ADC zero
        return WfdbSignal(plain[1], fmt, spf, skew, offset, gain, baseline, units, plain[5])
    match = _SIGNAL_LINE.fullmatch(line)
    if match is None:
        problem = _signal_line_problem(line.split()) or "fields are not separated by spaces or tabs"
        raise EcgReadError(hea, f"corrupt header: signal line {number} ({line[:60]!r}): {problem}")
    file_name, fmt, spf, skew, offset, gain, baseline, units, _, adc_zero, _, _, _, description = match.groups()
    if fmt not in WFDB_FORMATS:
        raise EcgReadError(
            hea,
            f"unsupported WFDB storage format {fmt} (signal line {number}); "
            f"supported formats: {', '.join(WFDB_FORMATS)}",
        )
    if baseline is not None and len(baseline) > 9 and (problem := _baseline_problem(baseline)):
        raise EcgReadError(hea, f"corrupt header: signal line {number} ({line[:60]!r}): {problem}")
    return WfdbSignal(
        file_name, fmt, 1 if spf is None else int(spf), 0 if skew is None else int(skew),
        0 if offset is None else int(offset),
        float(gain or 0) or 200.0,  # wfdb: a gain of 0, or none, is 200
        int(baseline) if baseline is not None else int(adc_zero) if adc_zero is not None else 0,
        "mV" if units is None else units,
        description,
    )  # fmt: skip


def _format_and_gain(fmt_field: str, gain_field: str) -> tuple[str, int, int, int, float, int | None, str] | None:
    """(format, samples per frame, skew, byte offset, gain, baseline or None, units) of a valid format and gain
    field pair, as `_parse_signal_line` reads them (None: not valid, the full match says why); remembered."""
    found = _FORMAT_AND_GAIN.get((fmt_field, gain_field), False)
    if found is not False:
        return found
    fmt, gain = _SIGNAL_FORMAT.fullmatch(fmt_field), _GAIN_FIELD.fullmatch(gain_field)
    parsed = None
    if fmt and gain and fmt[1] in WFDB_FORMATS and not (gain[2] and _baseline_problem(gain[2])):
        parsed = (
            fmt[1], int(fmt[2] or 1), int(fmt[3] or 0), int(fmt[4] or 0), float(gain[1]) or 200.0,
            None if gain[2] is None else int(gain[2]), "mV" if gain[3] is None else gain[3],
        )  # fmt: skip
    if len(fmt_field) + len(gain_field) <= 64:
        if len(_FORMAT_AND_GAIN) >= 1024:
            _FORMAT_AND_GAIN.clear()
        _FORMAT_AND_GAIN[fmt_field, gain_field] = parsed
    return parsed


def _record_line_problem(fields: list[str], line: str) -> str:
    """What `_RECORD_LINE` does not match in a record line (its fields), for the message."""
    checks = [
        ("record name", _RECORD_NAME, "is not a WFDB record name (letters, digits, '_', '-'; 'name/segments')"),
        ("sampling rate field", _FS_FIELD, "is not a number (WFDB writes '500', '500/1000' or '500/1000(0)')"),
        ("sample count field", _COUNT, "is not an integer (at most 18 digits)"),
        ("base time field", _BASE_TIME, "is not a time (HH:MM:SS)"),
        ("base date field", _BASE_DATE, "is not a date (DD/MM/YYYY)"),
    ]
    for (what, pattern, problem), value in zip(checks, fields[:1] + fields[2:], strict=False):
        if not pattern.fullmatch(value):
            return f"{what} {value[:40]!r} {problem}"
    if len(fields) > 6:
        return f"{len(fields)} fields in the record line, where WFDB has at most 6"
    return f"garbled record line {line[:80]!r}"


def _check_ascii_names(hea: Path, spec: list[str]) -> None:
    """wfdb reads headers as ASCII and silently drops other characters, so a record, signal file or segment
    named "é" becomes "" and the files are then "missing"; say what is wrong instead."""
    for number, line in enumerate(spec):
        name = line.split()[0] if line.split() else ""
        if not name.isascii():
            what = "record name" if number == 0 else f"file or segment name on line {number + 1}"
            raise EcgReadError(
                hea,
                f"non-ASCII {what} {name[:60]!r}: wfdb reads WFDB headers as ASCII and drops other characters, "
                "so it cannot find this record's files; rename the record and its files (and the names in the "
                "header) with ASCII characters",
            )


def _signal_line_problem(fields: list[str]) -> str | None:
    """What `_SIGNAL_LINE` does not match in a signal line (its fields), for the message. wfdb does not check
    these: text where a number belongs silently becomes part of the lead description (and then an "unknown
    lead" error that hides the real problem)."""
    if not _FILE_NAME.fullmatch(fields[0]):
        name = fields[0][:40]
        return f"signal file name {name!r} is not a WFDB file name beside the header (letters, digits, '_', '-', '.')"
    if len(fields) < 2 or not _SIGNAL_FORMAT.fullmatch(fields[1]):
        return f"storage format {fields[1] if len(fields) > 1 else ''!r} is not a WFDB format"
    if len(fields) > 2 and not _GAIN_FIELD.fullmatch(fields[2]):
        return f"gain field {fields[2][:30]!r} is not 'gain(baseline)/units'"
    for (name, digit), value in zip(_INTEGER_FIELDS, fields[3:8], strict=False):
        if not re.fullmatch(digit + "{1,18}", value, re.ASCII):
            return f"{name} field {value[:30]!r} is not an integer{' of at most 18 digits' if len(value) > 18 else ''}"
    return None


def _baseline_problem(baseline: str) -> str | None:
    digits = baseline.lstrip("+-").lstrip("0")
    if len(digits) > 10 or (digits and int(digits) > _MAX_BASELINE):  # length first: int() of 5000 digits fails
        return f"baseline {baseline[:30]} is outside the 32-bit range of WFDB sample values"
    return None


def unit_scale(unit: str) -> float | None:
    """Scale to mV of a WFDB header's units as written (`WfdbSignal.units`); None for units that are not volts."""
    u = unit.strip()
    if not u.lower().endswith("v"):
        return None
    return _UNIT_PREFIX_TO_MV.get(u[:-1] if u[:-1] in ("µ", "μ", "\ufffd") else u[:-1].lower())


def _check_wfdb_agrees(hea: Path, parsed: WfdbHeader, header: wfdb.Record) -> None:
    """wfdb's parse of a single-segment header against `parse_wfdb_header`'s, on every value that the samples
    depend on. They agree on every header that the grammar accepts: a difference is a gap in the grammar, and
    it would otherwise be read silently (and differently by the fast reader)."""
    values = [("sampling rate", header.fs, parsed.fs), ("sample count", header.sig_len, parsed.sig_len),
              ("signal count", header.n_sig, parsed.n_sig)]  # fmt: skip
    for i, s in enumerate(parsed.signals):
        for what, theirs, ours in (
            ("file", header.file_name[i], s.file_name), ("format", header.fmt[i], s.fmt),
            ("samples per frame", header.samps_per_frame[i] or 1, s.samps_per_frame),
            ("skew", (header.skew or [0] * header.n_sig)[i] or 0, s.skew),
            ("byte offset", (header.byte_offset or [0] * header.n_sig)[i] or 0, s.byte_offset),
            ("gain", header.adc_gain[i], s.gain), ("baseline", header.baseline[i], s.baseline),
        ):  # fmt: skip
            values.append((f"{what} of signal line {i + 1}", theirs, ours))
    for what, theirs, ours in values:
        if theirs != ours:
            raise EcgReadError(hea, f"corrupt header: wfdb reads the {what} as {theirs!r} where it says {ours!r}")


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
        if f.suffix.lower() == ".mat":  # one MATLAB matrix, whose header must describe what this header does
            rows = sum(int(header.samps_per_frame[i] or 1) for i in channels)
            offset = int((header.byte_offset or [0] * header.n_sig)[channels[0]] or 0)
            try:
                check_wfdb_matrix(f, sorted({header.fmt[i] for i in channels}), rows, len(channels), sig_len, offset)
            except EcgReadError as exc:
                raise EcgReadError(hea, f"signal file {name}: {exc.problem}") from None
        if sig_len is None:
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


def _read_header(hea: Path) -> wfdb.Record | wfdb.MultiRecord:
    try:
        return wfdb.rdheader(str(hea.with_suffix("")))
    except Exception as exc:  # wfdb raises HeaderSyntaxError, ValueError, IndexError, ... on bad headers
        raise EcgReadError(hea, f"corrupt header: {type(exc).__name__}: {exc}") from exc


def _check_skew(hea: Path, header: wfdb.Record, n_total: int | None, fs: float) -> None:
    """Refuse a skew that is not a small delay: wfdb reads (and NaN-fills) `skew` frames past the window."""
    skews = [int(v or 0) for v in header.skew or []]
    worst = max(skews, default=0)
    if worst == 0:
        return
    line = skews.index(worst) + 1
    limit = math.floor(WFDB_MAX_SKEW_S * fs)
    if worst > limit:
        raise EcgReadError(
            hea,
            f"corrupt header: skew of {worst} samples (signal line {line}) exceeds {WFDB_MAX_SKEW_S:g} s "
            f"({limit} samples at {fs:g} Hz); a skew is a few samples of delay between signals",
        )
    if n_total is not None and worst >= n_total:
        raise EcgReadError(
            hea,
            f"corrupt header: skew of {worst} samples (signal line {line}) is not less than the record's "
            f"{n_total} samples (the signal would be all NaN)",
        )


def _check_segment(seg_hea: Path, n: int, fs: float, n_sig: int | None, layout: bool) -> None:
    """One segment of a multi-segment record: the same checks as a single-segment record, and its length and
    rate must be those that the master header gives it."""
    if not seg_hea.is_file():
        raise EcgReadError(seg_hea, f"missing segment header {seg_hea.name}")
    spec, _ = split_header(read_text(seg_hea))
    parsed = None
    if layout and spec:  # its signal lines may use format 0 (null signal), which no data segment may
        _check_ascii_names(seg_hea, spec)
    else:
        parsed = parse_wfdb_header(seg_hea, spec)
    if "/" in spec[0].split()[0]:
        raise EcgReadError(seg_hea, "a segment that is itself a multi-segment record is not supported")
    seg = _read_header(seg_hea)
    if parsed is not None:
        _check_wfdb_agrees(seg_hea, parsed, seg)
    seg_fs = check_sampling_rate(seg_hea, seg.fs if seg.fs is not None else WFDB_DEFAULT_FS, "header")
    if not math.isclose(seg_fs, fs):
        raise EcgReadError(seg_hea, f"sampling rate {seg_fs:g} Hz differs from the record's {fs:g} Hz")
    if layout:
        if any(name != "~" for name in seg.file_name or []):
            raise EcgReadError(seg_hea, "a layout header (first segment, length 0) must name no signal files")
        return
    if n_sig is not None and seg.n_sig != n_sig:
        raise EcgReadError(seg_hea, f"{seg.n_sig} signals where the record has {n_sig}")
    if not seg.sig_len:
        raise EcgReadError(seg_hea, "segment header without a sample count (wfdb needs it to read a segment)")
    _check_signal_files(seg_hea, seg)
    if seg.sig_len != n:
        raise EcgReadError(seg_hea, f"holds {seg.sig_len} samples but the master header says {n}")
    _check_skew(seg_hea, seg, int(seg.sig_len), fs)


def _check_segments(hea: Path, header: wfdb.MultiRecord) -> int:
    """The master header of a multi-segment record, before anything is read; returns its length in samples.
    wfdb fails with AttributeErrors on a missing total length or on a gap in a fixed layout."""
    names, lengths = list(header.seg_name or []), [int(n) for n in header.seg_len or []]
    if header.n_seg != len(names) or not names:
        raise EcgReadError(
            hea, f"corrupt header: record line declares {header.n_seg} segments but {len(names)} segment lines follow"
        )
    if header.sig_len is None:
        raise EcgReadError(
            hea,
            "multi-segment header without the record's total sample count (4th field of the record line; "
            f"the segments add up to {sum(lengths)})",
        )
    if sum(lengths) != header.sig_len:
        raise EcgReadError(
            hea,
            f"corrupt header: segment lengths add up to {sum(lengths)} samples but the record line says "
            f"{header.sig_len}",
        )
    if header.sig_len == 0:
        raise EcgReadError(hea, "empty record: the header says 0 samples")
    if 0 in lengths[1:] or (lengths[0] == 0 and names[0] == "~"):
        raise EcgReadError(hea, "corrupt header: only a layout header (the first segment, a name) may have length 0")
    return int(header.sig_len)


def _check_read_segments(hea: Path, header: wfdb.MultiRecord, fs: float, read_from: int, read_to: int) -> None:
    """Check the segments that the samples [read_from, read_to) come from (and the layout header), and bound
    the NaN that wfdb fills gaps with: only those segments are read, so only they can cost memory."""
    names, lengths = list(header.seg_name), [int(n) for n in header.seg_len]
    variable = lengths[0] == 0
    if variable:
        _check_one_segment(hea, names, 0, 0, fs, None, layout=True)
    gap, at = 0, 0
    for i, (name, n) in enumerate(zip(names, lengths, strict=True)):
        first, last, at = at, at + n, at + n
        overlap = min(last, read_to) - max(first, read_from)
        if n == 0 or overlap <= 0:
            continue
        if name != "~":
            _check_one_segment(hea, names, i, n, fs, None if variable else header.n_sig, layout=False)
        elif not variable:
            raise EcgReadError(
                hea,
                f"gap segment '~' ({i + 1} of {len(names)}) in a fixed-layout multi-segment record: wfdb reads gaps "
                "only in a variable layout (a layout header of length 0 as first segment)",
            )
        else:
            gap += overlap
    if gap * header.n_sig > MAX_GAP_VALUES:
        raise EcgReadError(
            hea,
            f"the part read holds {gap} samples of gap segments ('~', no data) x {header.n_sig} signals, over the "
            f"{MAX_GAP_VALUES} values that a read may fill with NaN; read a window (load_ecg(..., window=...))",
        )


def _check_one_segment(hea: Path, names: list[str], i: int, n: int, fs: float, n_sig: int | None, layout: bool) -> None:
    try:
        _check_segment(hea.parent / f"{names[i]}.hea", n, fs, n_sig, layout)
    except EcgReadError as exc:
        raise EcgReadError(hea, f"segment {names[i]} ({i + 1} of {len(names)}): {exc.problem}") from exc


def _read_part_without_count(hea: Path, spec: list[str], n_total: int, start: int, stop: int) -> wfdb.Record | None:
    """Samples `start:stop` of a single-segment record whose header gives no sample count. wfdb then reads the
    whole signal file (2 GB for a 6 h Holter record read for 10 s), so the header is written again with the count
    that the signal file's size gave, in a scratch folder beside links to the signal files, and only the part is
    read there. None where links cannot be made (some Windows accounts): the caller reads the whole file."""
    record_line = spec[0].split()
    if len(record_line) < 3:
        record_line.append(f"{WFDB_DEFAULT_FS:g}")  # the count is the 4th field: the rate must be written first
    with tempfile.TemporaryDirectory(prefix="ecglang-wfdb-") as scratch:
        try:
            for name in {line.split()[0] for line in spec[1:]}:  # one signal file name per line, never a path
                os.symlink((hea.parent / name).resolve(), Path(scratch) / name)
        except OSError:
            return None
        text = "\n".join([" ".join([*record_line, str(n_total)]), *spec[1:]]) + "\n"
        (Path(scratch) / hea.name).write_text(text, encoding="ascii")
        return wfdb.rdrecord(str(Path(scratch) / hea.stem), sampfrom=start, sampto=stop, physical=True, m2s=True)


def read_wfdb(
    hea: Path, fs: float | None, leads: Sequence[str] | None, window: ReadWindow | None = None
) -> tuple[np.ndarray, list[str], float, dict[str, Any]]:
    """Read a WFDB record (``.hea`` path) as ``(signal [channels, samples] in mV, names, fs, metadata)``;
    with `window`, only that part of the samples is read from disk."""
    spec, comments = split_header(read_text(hea))
    parsed = parse_wfdb_header(hea, spec)
    base = str(hea.with_suffix(""))
    header = _read_header(hea)
    multi = isinstance(header, wfdb.MultiRecord)
    if not multi:
        _check_wfdb_agrees(hea, parsed, header)
    header_fs = check_sampling_rate(hea, header.fs if header.fs is not None else WFDB_DEFAULT_FS, "header")
    if fs is not None and not math.isclose(float(fs), header_fs):
        raise EcgReadError(hea, f"sampling rate mismatch: header says {header_fs:g} Hz but fs={fs:g} was requested")
    if multi:
        n_total = _check_segments(hea, header)
    else:
        absent = [i + 1 for i, name in enumerate(header.file_name or []) if name == "~"]
        if absent:  # WFDB's "signal not stored"; wfdb itself then fails with FileNotFoundError: '~'
            raise EcgReadError(
                hea, f"signal line(s) {absent} name no signal file ('~': not stored); only stored signals can be read"
            )
        _check_signal_files(hea, header)
        n_total = _record_length(hea, header)
        _check_skew(hea, header, n_total, header_fs)
    meta: dict[str, Any] = {}
    read_from, read_to = 0, n_total
    if window is not None and n_total is not None:
        read_from, read_to = window.bounds(n_total, header_fs)
        meta["read_offset"], meta["n_samples_in_file"] = read_from, n_total
    if multi:
        _check_read_segments(hea, header, header_fs, read_from, read_to)
    # wfdb cannot take sampfrom/sampto when the header has no sample count: such a part is read through a copy of
    # the header that gives the count (`_read_part_without_count`); all that remains is read whole, sliced below
    try:
        rec = None
        if header.sig_len:  # a multi-segment record always has one (`_check_segments`)
            rec = wfdb.rdrecord(base, sampfrom=read_from, sampto=read_to, physical=True, m2s=True)
        elif n_total is not None and read_to - read_from < n_total:
            rec = _read_part_without_count(hea, spec, n_total, read_from, read_to)
        ranged = rec is not None
        if rec is None:
            rec = wfdb.rdrecord(base, physical=True, m2s=True)
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
    # units as written (wfdb drops the "µ" of "µV", which would turn microvolts into volts)
    raw_units = [s.units for s in parsed.signals]
    units = raw_units if raw_units else list(rec.units or ["mV"] * len(names))
    # A multi-segment part read that lies in a gap has no units (wfdb finds no segment to take them from): its
    # samples are all NaN, so any scale will do
    units = [unit if unit is not None else "mV" for unit in units]
    # Units matter only for channels that end up as ECG leads (under the caller's names when given).
    final_names = [str(n) for n in leads] if leads is not None and len(leads) == len(names) else names
    scales = np.ones(len(names))
    for i, (name, unit) in enumerate(zip(final_names, units, strict=True)):
        scale = unit_scale(unit)
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

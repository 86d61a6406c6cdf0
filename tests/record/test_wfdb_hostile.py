"""Hostile WFDB headers: a few bytes of header must not drive memory (skew, multi-segment gaps and lengths,
huge header files), and what wfdb cannot read must be a typed error that says why (segments without a total
length, gaps in a fixed layout, huge baselines, non-ASCII names). Every record is built here in tmp_path; no
test allocates more than a few MB."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg, scan_records
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.record.wfdb_reader import MAX_HEADER_BYTES
from ecglang.record.window import ReadWindow


def _record(folder: Path, name: str = "rec", n: int = 2000, leads: tuple[str, ...] = tuple(CANONICAL_LEADS)) -> Path:
    """A format-16 WFDB record of noise at 500 Hz; returns the header path."""
    digital = (np.random.default_rng(0).standard_normal((n, len(leads))) * 200).astype(np.int16)
    wfdb.wrsamp(
        name, fs=500, units=["mV"] * len(leads), sig_name=list(leads), d_signal=digital,
        fmt=["16"] * len(leads), adc_gain=[200.0] * len(leads), baseline=[0] * len(leads), write_dir=str(folder),
    )  # fmt: skip
    return folder / f"{name}.hea"


def _edit_signal_lines(hea: Path, old: str, new: str) -> None:
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([lines[0]] + [line.replace(old, new, 1) for line in lines[1:]]) + "\n")


def _refused(path: Path, *words: str, window: ReadWindow | None = None) -> EcgReadError:
    """load_ecg raises a typed error naming `path`, with each of `words` in the problem, quickly."""
    started = time.perf_counter()
    with pytest.raises(EcgReadError) as info:
        load_ecg(path, window=window)
    assert time.perf_counter() - started < 5.0
    assert info.value.path == str(path)
    for word in words:
        assert word in info.value.problem, info.value.problem
    return info.value


# ------------------------------------------------------------------------------------------------ skew


@pytest.mark.parametrize(
    ("n", "skew", "why"),
    [(2000, 2000, "exceeds 1 s"), (2000, 20_000_000, "exceeds 1 s"), (2000, 10**12, "exceeds 1 s"),
     (300, 400, "not less than the record's 300 samples")],
)  # fmt: skip
def test_skew_not_small_is_refused_before_reading(tmp_path: Path, n: int, skew: int, why: str) -> None:
    """wfdb reads `skew` frames past the window and fills what is past the file with NaN: a 48 KB record whose
    header says skew 2e7 took 924 MB and came back all NaN, "OK"; 1e12 tried to allocate 21.8 TiB."""
    hea = _record(tmp_path, n=n)
    _edit_signal_lines(hea, " 16 ", f" 16:{skew} ")
    _refused(hea, "skew", str(skew), why, window=ReadWindow(10.0, margin_s=1.0))
    _refused(hea, "skew", why)


def test_small_skew_still_reads(tmp_path: Path) -> None:
    hea = _record(tmp_path)
    _edit_signal_lines(hea, " 16 ", " 16:3 ")
    ecg = load_ecg(hea)
    assert ecg.n_samples == 2000 and ecg.metadata["n_nonfinite"] == 12 * 3  # the last 3 samples of each lead


# -------------------------------------------------------------------------------------- multi-segment


def _layout(folder: Path, leads: tuple[str, ...] = ("I", "II")) -> None:
    """A variable-layout header (length 0, format-0 null signals), as PhysioNet's MIMIC records have."""
    lines = [f"multi_layout {len(leads)} 500 0"] + [f"~ 0 200/mV 16 0 0 0 0 {lead}" for lead in leads]
    (folder / "multi_layout.hea").write_text("\n".join(lines) + "\n")


def test_gap_in_a_fixed_layout_is_a_clear_error(tmp_path: Path) -> None:
    """wfdb reads gaps only in variable layouts; in a fixed one it failed with "'NoneType' object has no
    attribute 'p_signal'" after filling the gap (a 1e7-sample gap: 1.38 GB)."""
    _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    hea = tmp_path / "multi.hea"
    hea.write_text("multi/2 2 500 10000700\nseg1 700\n~ 10000000\n")
    _refused(hea, "gap segment", "fixed-layout")
    # A window that stays out of the gap reads only seg1
    assert load_ecg(hea, window=ReadWindow(1.0)).n_samples == 500


def test_multi_segment_header_without_total_length(tmp_path: Path) -> None:
    """wfdb: "'MultiRecord' object has no attribute 'file_name'"."""
    _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    hea = tmp_path / "multi.hea"
    hea.write_text("multi/2 2 500\nseg1 700\nseg1 700\n")
    _refused(hea, "total sample count", "1400")


def test_huge_gap_is_refused_for_a_whole_read_and_windows_read_around_it(tmp_path: Path) -> None:
    """A 1e11-sample gap tried to allocate 8.7 TiB. A whole read is refused before allocating; a window reads
    only its samples (even when it lies in the gap: all NaN, with no units to take from a segment)."""
    _layout(tmp_path)
    _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    _record(tmp_path, "seg2", n=300, leads=("I", "II"))
    hea = tmp_path / "multi.hea"
    hea.write_text(f"multi/4 2 500 {10**11 + 1000}\nmulti_layout 0\nseg1 700\n~ {10**11}\nseg2 300\n")
    _refused(hea, "gap", "window")
    tracemalloc.start()
    try:
        start = load_ecg(hea, window=ReadWindow(1.0))
        centre = load_ecg(hea, window=ReadWindow(10.0, "center", 1.0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6
    assert start.n_samples == 500 and start.metadata["n_nonfinite"] == 0
    assert centre.n_samples == 6000 and centre.metadata["n_nonfinite"] == 2 * 6000


def test_variable_layout_with_a_gap_reads_as_one(tmp_path: Path) -> None:
    _layout(tmp_path)
    _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    _record(tmp_path, "seg2", n=300, leads=("II", "I"))  # variable layout: matched by name
    hea = tmp_path / "multi.hea"
    hea.write_text("multi/4 2 500 2000\nmulti_layout 0\nseg1 700\n~ 1000\nseg2 300\n")
    ecg = load_ecg(hea)
    assert ecg.n_samples == 2000 and ecg.metadata["n_nonfinite"] == 2 * 1000
    assert np.isnan(ecg.signal[:2, 700:1700]).all() and np.isfinite(ecg.signal[:2, 1700:]).all()


@pytest.mark.parametrize(
    ("master", "words"),
    [
        ("multi/2 2 500 1000\nseg1 900\nseg2 100\n", ["segment seg1", "holds 700 samples", "says 900"]),
        ("multi/2 2 500 1000\nseg1 700\nseg3 300\n", ["segment seg3", "missing segment header seg3.hea"]),
        ("multi/2 2 500 1200\nseg1 700\nseg2 300\n", ["add up to 1000", "says 1200"]),
        ("multi/3 2 500 1000\nseg1 700\nseg2 300\n", ["declares 3 segments", "2 segment lines"]),
        ("multi/2 2 250 1000\nseg1 700\nseg2 300\n", ["segment seg1", "500 Hz differs from the record's 250 Hz"]),
    ],
)
def test_segments_are_checked_against_the_master_header(tmp_path: Path, master: str, words: list[str]) -> None:
    _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    _record(tmp_path, "seg2", n=300, leads=("I", "II"))
    hea = tmp_path / "multi.hea"
    hea.write_text(master)
    _refused(hea, *words)


def test_segment_with_a_hostile_skew_is_refused(tmp_path: Path) -> None:
    seg = _record(tmp_path, "seg1", n=700, leads=("I", "II"))
    _record(tmp_path, "seg2", n=300, leads=("I", "II"))
    _edit_signal_lines(seg, " 16 ", " 16:20000000 ")
    hea = tmp_path / "multi.hea"
    hea.write_text("multi/2 2 500 1000\nseg1 700\nseg2 300\n")
    _refused(hea, "segment seg1", "skew")


# --------------------------------------------------------------------------------------- header fields


def test_huge_header_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A 300 MB comment-only header took 1.67 GB; now only MAX_HEADER_BYTES + 1 bytes are read."""
    hea = tmp_path / "rec.hea"
    with hea.open("wb") as f:
        f.write(b"# " + b"A" * (2 * MAX_HEADER_BYTES) + b"\n")
    tracemalloc.start()
    try:
        _refused(hea, "too large", str(2 * MAX_HEADER_BYTES + 3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_HEADER_BYTES
    assert scan_records(tmp_path).records == [hea]  # listed (unread), then reported by load_ecg


def test_huge_baseline_is_a_clear_error(tmp_path: Path) -> None:
    """A baseline of 1e23 made wfdb compute in object dtype: "UFuncTypeError ... dtype('O')"."""
    hea = _record(tmp_path)
    _edit_signal_lines(hea, "200.0(0)/mV", "200(99999999999999999999999)/mV")
    _refused(hea, "baseline 99999999999999999999999", "32-bit")
    _edit_signal_lines(hea, "200(99999999999999999999999)/mV", "200(-2147483647)/mV")
    assert load_ecg(hea).n_samples == 2000  # the 32-bit range itself is fine


@pytest.mark.parametrize("name", ["é", "记录"])
def test_non_ascii_record_name_says_so(tmp_path: Path, name: str) -> None:
    """wfdb drops non-ASCII characters from headers, and then reported "missing signal file .dat"."""
    hea = _record(tmp_path, name)
    _refused(hea, "non-ASCII", name, "ASCII characters")


def test_a_signal_that_is_not_stored_says_so(tmp_path: Path) -> None:
    """A signal line whose file is "~" (WFDB: not stored) ended in wfdb's bare FileNotFoundError: '~'."""
    hea = _record(tmp_path)
    lines = hea.read_text().splitlines()
    lines[2] = "~ " + lines[2].split(" ", 1)[1]  # lead II: not stored
    hea.write_text("\n".join(lines) + "\n")
    _refused(hea, "signal line(s) [2]", "not stored")

"""The fast WFDB reader of the cache build (`data.fastread.read_plain_wfdb`) against `load_ecg`: it reads exactly the
records that `load_ecg` reads, with the same arrays, and declines (returns None, so that `load_ecg` reads the record
or says why not) everything else. It re-parsed headers without the full reader's checks, so the cache build cached
records that `load_ecg` refuses: a rate of 5 Hz or 0.001 Hz, '500(3)', Python's `int('5_000')`, a gain of '1_000'."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.data import fastread
from ecglang.data.fastread import read_plain_wfdb
from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg
from ecglang.record.window import ReadWindow

PTBXL_RECORD = Path("records500") / "00000" / "00001_hr"
SIGNAL_FIELDS = {"file": 0, "format": 1, "gain": 2, "adc_res": 3, "adc_zero": 4, "init": 5, "checksum": 6,
                 "block": 7, "description": 8}  # fmt: skip


def _copy_record(
    ptbxl_dir: Path, folder: Path, name: str, record: dict[int, str] | None = None, signal: dict[str, str] | None = None
) -> Path:
    """A copy of PTB-XL 00001_hr named `name`, with record-line fields (index → text) and signal-line fields of
    every line (field name → text; '{}' in it stands for the lead's name) replaced; returns the record's path
    without extension."""  # fmt: skip
    source = ptbxl_dir / PTBXL_RECORD
    lines = source.with_suffix(".hea").read_text(encoding="ascii").splitlines()
    first = lines[0].split()
    first[0] = name
    for index, text in (record or {}).items():
        first[index : index + 1] = [text] if text else []
    out = [" ".join(first)]
    for line in lines[1:13]:
        fields = line.split(maxsplit=8)
        fields[0] = f"{name}.dat"
        for key, text in (signal or {}).items():
            fields[SIGNAL_FIELDS[key]] = text.format(fields[SIGNAL_FIELDS[key]])
        out.append(" ".join(fields))
    out += ["# Dx: 426783006", *lines[13:]]
    (folder / f"{name}.hea").write_text("\n".join(out) + "\n", encoding="utf-8")
    shutil.copy(source.with_suffix(".dat"), folder / f"{name}.dat")
    return folder / name


def _full_read(base: Path):
    try:
        ecg = load_ecg(base)
    except EcgReadError:
        return None
    return ecg.signal, ecg.lead_mask, ecg.fs


def _assert_agree(base: Path) -> tuple[bool, bool]:
    """read_plain_wfdb(base) is None or equals load_ecg(base); returns (fast path taken, load_ecg reads it)."""
    fast = read_plain_wfdb(base)
    full = _full_read(base)
    if fast is not None:
        assert full is not None, f"{base.name}: the fast reader reads a record that load_ecg refuses"
        np.testing.assert_array_equal(fast[0], full[0], err_msg=base.name)
        assert fast[0].dtype == full[0].dtype == np.float32
        np.testing.assert_array_equal(fast[1], full[1])
        assert fast[2] == full[2]
    return fast is not None, full is not None


REFUSED_RECORD_LINES = {
    "fs5": {2: "5"}, "fs0.001": {2: "0.001"}, "fs49.9": {2: "49.9"}, "fs20001": {2: "20001"},
    "fs_counter": {2: "500(3)"}, "fs_underscore": {2: "5_00"}, "fs_plus": {2: "+500"}, "fs_exp": {2: "50e1"},
    "fs_upper_exp": {2: "5E2"}, "fs_nan": {2: "nan"}, "fs_inf": {2: "inf"}, "fs_slashes": {2: "500//1000"},
    "fs_counter_exp": {2: "500/1e3"}, "fs_arabic": {2: "\u0665\u0660\u0660"},
    "n_underscore": {3: "5_000"}, "n_plus": {3: "+5000"}, "n_arabic": {3: "\u0665\u0660\u0660\u0660"},
    "nsig_arabic": {1: "\u0661\u0662"}, "time_bad": {4: "25:61:00"}, "date_bad": {4: "10:00:00", 5: "31/02/2180"},
    "name_dot": {0: "r.x"},
}  # fmt: skip
REFUSED_SIGNAL_LINES = {
    "gain_underscore": {"gain": "1_000(0)/mV"}, "gain_only_underscore": {"gain": "1_000"},
    "baseline_underscore": {"gain": "1000.0(1_0)/mV"}, "baseline_plus": {"gain": "1000(+10)/mV"},
    "baseline_huge": {"gain": "1000(99999999999)/mV"}, "gain_nan": {"gain": "nan(0)/mV"},
    "gain_inf": {"gain": "Infinity(0)/mV"}, "gain_upper_exp": {"gain": "1E3(0)/mV"},
    "gain_plus": {"gain": "+1e3(0)/mV"},
    "units_odd": {"gain": "1000(0)/m*V"}, "adc_res_underscore": {"adc_res": "1_6"}, "adc_res_text": {"adc_res": "x"},
    "adc_res_negative": {"adc_res": "-16"}, "adc_zero_underscore": {"adc_zero": "1_0"}, "init_text": {"init": "x"},
    "checksum_underscore": {"checksum": "1_0"}, "block_plus": {"block": "+0"}, "file_path": {"file": "sub/x.dat"},
    "file_two_dots": {"file": "x.y.dat"},
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize("case", [*REFUSED_RECORD_LINES, *REFUSED_SIGNAL_LINES])
def test_fast_reader_declines_what_load_ecg_refuses(ptbxl_dir: Path, tmp_path: Path, case: str) -> None:
    base = _copy_record(ptbxl_dir, tmp_path, case.replace(".", "_"), REFUSED_RECORD_LINES.get(case),
                        REFUSED_SIGNAL_LINES.get(case))  # fmt: skip
    with pytest.raises(EcgReadError) as info:
        load_ecg(base)
    assert info.value.path == str(base.with_suffix(".hea").absolute())
    assert read_plain_wfdb(base) is None, f"fast reader reads {case}, load_ecg: {info.value.problem}"


ACCEPTED = {
    "plain": (None, None), "counter_freq": ({2: "500/1000(0)"}, None), "fs_decimal": ({2: "500.0"}, None),
    "fs_rounded": ({2: "500.000000001"}, None), "time_and_date": ({4: "08:45:00", 5: "22/01/2180"}, None),
    "no_units": (None, {"gain": "1000.0(0)"}), "no_baseline": (None, {"gain": "1000.0/mV"}),
    "baseline_is_adc_zero": (None, {"gain": "1000.0/mV", "adc_zero": "7"}),
    "gain_zero_is_200": (None, {"gain": "0(0)/mV"}),
    "uV": (None, {"gain": "1000(5)/uV"}), "MV": (None, {"gain": "1000(5)/MV"}), "nV": (None, {"gain": "1000(5)/nV"}),
    "gain_exp": (None, {"gain": "1e3(-5)/mV"}), "gain_negative": (None, {"gain": "-1000(0)/mV"}),
    "micro_sign": (None, {"gain": "1000(0)/\u00b5V"}), "tab_name": (None, {"description": "{}\tx"}),
    "non_ascii_name": (None, {"description": "{}\u00e9"}),
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize("case", ACCEPTED)
def test_fast_reader_equals_load_ecg_on_header_variants(ptbxl_dir: Path, tmp_path: Path, case: str) -> None:
    """Headers that load_ecg reads: the fast reader gives the same arrays (or declines)."""
    record, signal = ACCEPTED[case]
    fast, full = _assert_agree(_copy_record(ptbxl_dir, tmp_path, case, record, signal))
    assert full, f"{case}: load_ecg reads this header"
    if case in ("plain", "counter_freq", "fs_decimal", "time_and_date", "no_units", "no_baseline", "uV", "MV"):
        assert fast, f"{case}: a plain record must take the fast path"


@pytest.mark.shared_data
def test_fast_reader_equals_load_ecg_on_real_records(shared_data: Path, ptbxl_dir: Path) -> None:
    """20 PTB-XL records (500 and 100 Hz) take the fast path and equal load_ecg; the CinC (.mat), CPSC (MATLAB),
    PTB (.xyz) and MIT-BIH (format 212) records are declined or equal."""
    ptbxl = [
        *sorted((ptbxl_dir / "records500").rglob("*.hea"))[::36],
        *sorted((ptbxl_dir / "records100").rglob("*.hea"))[5::36],
    ]
    assert len(ptbxl) == 20
    for hea in ptbxl:
        assert _assert_agree(hea.with_suffix("")) == (True, True), hea
    others = [*sorted((shared_data / "formats" / "cinc2021").glob("*.hea")), *(shared_data / "ptbdb").glob("*.hea"),
              *(shared_data / "mitbih").glob("*.hea")]  # fmt: skip
    cpsc = sorted((shared_data / "formats" / "cpsc2018").glob("*.mat"))  # MATLAB structs without a WFDB header
    assert (len(others), len(cpsc)) == (7, 2)
    for path in [*(hea.with_suffix("") for hea in others), *cpsc]:
        assert _assert_agree(path)[1], path


@pytest.mark.shared_data
def test_cache_build_lists_the_records_that_load_ecg_refuses(ptbxl_dir: Path, tmp_path: Path) -> None:
    """`ecglang data build physionet DIR --out OUT` said "cache ... 2 ok, 0 failed" (exit 0) for a folder holding
    a record at 5 Hz, which `ecglang inspect` refuses."""
    folder = tmp_path / "pn2"
    folder.mkdir()
    _copy_record(ptbxl_dir, folder, "good16")
    _copy_record(ptbxl_dir, folder, "fs5", {2: "5"})
    _copy_record(ptbxl_dir, folder, "gain1_000", signal={"gain": "1_000(0)/mV"})
    out = tmp_path / "pn2out"
    assert cli(["data", "build", "physionet", str(folder), "--out", str(out), "--no-progress"]) == 1
    failures = (out / "cache_failures.csv").read_text(encoding="utf-8")
    assert "fs5" in failures and "outside the supported range" in failures
    assert "gain1_000" in failures and "gain field" in failures
    assert "good16" not in failures


@pytest.mark.shared_data
def test_fast_reader_agrees_with_load_ecg_on_edited_headers(ptbxl_dir: Path, tmp_path: Path) -> None:
    """Seeded random character edits of a real header (digits, signs, '_', '(', tabs, non-ASCII digits and
    spaces, ...): wherever the fast reader reads the record, load_ecg reads the same. Before, 7% of such edits
    were read by the fast reader alone ('_0', '(+0)', 'x0' in a signal line)."""
    base = _copy_record(ptbxl_dir, tmp_path, "r")
    hea = base.with_suffix(".hea")
    lines = hea.read_text(encoding="utf-8").splitlines()
    alphabet = [*"0123456789.+-eE_()/ \t:xmuV~,*", "\u00b5", "\u00a0", "\u2028", "\x1f", "\u0665", "nan", "1_0"]
    rng = random.Random(20240607)
    read_fast = 0
    for _ in range(120):
        edited = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.choice([0, 0, rng.randrange(1, 13)])
            at, char = rng.randrange(len(edited[i])), rng.choice(alphabet)
            edit = rng.choice(["insert", "insert", "replace", "replace", "delete"])
            cut = 0 if edit == "insert" else 1
            edited[i] = edited[i][:at] + ("" if edit == "delete" else char) + edited[i][at + cut :]
        hea.write_text("\n".join(edited) + "\n", encoding="utf-8")
        read_fast += _assert_agree(base)[0]
    assert read_fast >= 5  # edits that keep the header valid (a digit of a checksum, a space) still read fast


MISREAD = {
    "fs_plus": ({2: "+500"}, None, "sampling rate field '+500' is not a number"),  # wfdb: 250 Hz
    "fs_exp": ({2: "50e1"}, None, "sampling rate field '50e1' is not a number"),  # wfdb: 50 Hz
    "gain_upper_exp": (None, {"gain": "1E3(0)/mV"}, "gain field '1E3(0)/mV' is not"),  # wfdb: gain 1
    "baseline_plus": (None, {"gain": "1000(+10)/mV"}, "gain field '1000(+10)/mV' is not"),  # wfdb: lead "+10) ..."
    "count_zero": ({3: "000"}, None, "header says 0 samples"),  # was: "sampto must be greater than sampfrom"
    "extra_line": ({1: "11"}, None, "declares 11 signals but 12 signal lines follow"),  # was: a TypeError
    "base_time": ({4: "25:00:00"}, None, "base time or date '25:00:00' is invalid"),
    "file_path": (None, {"file": "sub/r.dat"}, "signal file name 'sub/r.dat' is not a WFDB file name"),
}  # fmt: skip


@pytest.mark.shared_data
@pytest.mark.parametrize("case", MISREAD)
def test_headers_that_wfdb_misreads_get_a_clear_error(ptbxl_dir: Path, tmp_path: Path, case: str) -> None:
    """What wfdb's loose parse reads otherwise than written (or fails on deep inside) is refused up front, with
    the field that is wrong; the fast reader declines the record."""
    record, signal, words = MISREAD[case]
    base = _copy_record(ptbxl_dir, tmp_path, "r", record, signal)
    with pytest.raises(EcgReadError) as info:
        load_ecg(base)
    assert words in info.value.problem and info.value.path == str(base.with_suffix(".hea").absolute())
    assert read_plain_wfdb(base) is None


def test_a_record_over_the_plain_size_is_left_to_load_ecg(tmp_path: Path) -> None:
    """The fast reader read any plain record whole (a 6-hour record: gigabytes); over MAX_PLAIN_VALUES values it
    declines, and load_ecg reads only the part that preprocessing uses (the cache build passes its window)."""
    for name, n in (("edge", fastread.MAX_PLAIN_VALUES // 2), ("long", fastread.MAX_PLAIN_VALUES // 2 + 1)):
        lines = [f"{name} 2 500 {n}"] + [f"{name}.dat 16 200(0)/mV 16 0 0 0 0 {lead}" for lead in ("I", "II")]
        (tmp_path / f"{name}.hea").write_text("\n".join(lines) + "\n", encoding="ascii")
        np.zeros(2 * n, dtype="<i2").tofile(tmp_path / f"{name}.dat")
    assert read_plain_wfdb(tmp_path / "edge") is not None
    assert read_plain_wfdb(tmp_path / "long") is None
    assert load_ecg(tmp_path / "long", window=ReadWindow(10.0)).n_samples == 5000

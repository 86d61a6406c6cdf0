"""CLI audit 20, findings 1 and 8, at the reader.

1: `fs`/`leads` (CLI `--fs`/`--leads`, "for .npy input") replaced the rate and lead names that an `.npz` stores: a
1000 Hz file read at 500 Hz became a 20 s record at half its heart rate, and a file storing its leads in reverse
order was relabelled, without a word. They now fill in only what a file lacks; a stored value that differs is an
`EcgReadError` naming both values and the file (in a batch: that record's `RecordFailure`).
8: a header with an upper-case extension (`00108_HR.HEA`, Windows exports) was found by the folder scan, then
reported "file not found". wfdb opens a record's header as `NAME.hea` only, so the error now says to rename it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.embeddings.sources import ItemSource
from ecglang.errors import EcgReadError, RecordFailure
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg, scan_records
from ecglang.record.leads import CANONICAL_LEADS

pytestmark = pytest.mark.shared_data

LEADS = list(CANONICAL_LEADS)
RECORD = "records500/00000/00001_hr"


@pytest.fixture(scope="module")
def real(ptbxl_dir: Path) -> Ecg:
    """A real 12-lead PTB-XL record (500 Hz, 10 s, mV)."""
    return load_ecg(ptbxl_dir / RECORD)


def _save(path: Path, signal: np.ndarray, **stored: object) -> Path:
    np.savez(path, signal=signal, **stored)
    return path


def test_a_given_rate_does_not_replace_the_rate_an_npz_stores(tmp_path: Path, real: Ecg) -> None:
    path = _save(tmp_path / "rec1000.npz", real.signal, fs=1000.0, leads=np.array(LEADS))
    with pytest.raises(EcgReadError) as info:
        load_ecg(path, fs=500)  # read as 500 Hz before: 20 s at half the heart rate
    assert info.value.path == str(path)
    assert "1000" in info.value.problem and "500" in info.value.problem, str(info.value)
    assert load_ecg(path).fs == 1000 and load_ecg(path, fs=1000.0).fs == 1000  # the same value is no conflict


def test_given_lead_names_do_not_relabel_the_leads_an_npz_stores(tmp_path: Path, real: Ecg) -> None:
    path = _save(tmp_path / "rev.npz", real.signal[::-1], fs=500.0,
                 leads=np.array(LEADS[::-1]))  # fmt: skip
    with pytest.raises(EcgReadError) as info:
        load_ecg(path, leads=LEADS)  # V6 was read as I before
    assert info.value.path == str(path)
    assert "'V6'" in info.value.problem and "'I'" in info.value.problem, str(info.value)
    np.testing.assert_array_equal(load_ecg(path).signal, real.signal)  # as stored: the right leads
    # The same leads spelled another way name the same leads: no conflict
    other = ["Lead I", "lead ii", "III", "avr", "AVL", "aVF", "V1 ", " V2", "v3", "V4", "V5", "V6"][::-1]
    np.testing.assert_array_equal(load_ecg(path, leads=other).signal, real.signal)


def test_the_arguments_fill_in_what_a_file_lacks(tmp_path: Path, real: Ecg) -> None:
    np.save(tmp_path / "bare.npy", real.signal)
    no_rate = _save(tmp_path / "no_rate.npz", real.signal, leads=np.array(LEADS))
    no_names = _save(tmp_path / "no_names.npz", real.signal, fs=500.0)
    for path in (tmp_path / "bare.npy", no_rate, no_names):
        ecg = load_ecg(path, fs=500, leads=LEADS)
        assert ecg.fs == 500 and ecg.lead_mask.all()
        np.testing.assert_array_equal(ecg.signal, real.signal)


def test_a_batch_fails_only_the_npz_that_disagrees(tmp_path: Path, real: Ecg) -> None:
    """What `ecglang zero-shot FILES --fs --leads` and `ZeroShotClassifier(paths, fs=, leads=)` read through."""
    np.save(tmp_path / "bare.npy", real.signal)
    rate = _save(tmp_path / "rec250.npz", real.signal, fs=250.0, leads=np.array(LEADS))
    names = _save(tmp_path / "eight.npz", real.signal[[0, 1, 6, 7, 8, 9, 10, 11]],
                  fs=500.0, leads=np.array(["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]))  # fmt: skip
    no_rate = _save(tmp_path / "no_rate.npz", real.signal, leads=np.array(LEADS))
    source = ItemSource([tmp_path / "bare.npy", rate, names, no_rate], fs=500, leads=LEADS)
    read = [source.read(i) for i in range(len(source))]
    assert isinstance(read[0], Ecg) and isinstance(read[3], Ecg) and read[3].fs == 500
    for failure, path in ((read[1], rate), (read[2], names)):
        assert isinstance(failure, RecordFailure), failure
        assert failure.path == str(path) and path.name in failure.reason, failure
    assert "250" in read[1].reason and "500" in read[1].reason
    # the 8 stored names beside the 12 given: the flag, not the file's shape, is named
    assert "8 lead names" in read[2].reason and "12" in read[2].reason and "does not match" not in read[2].reason


def test_an_upper_case_header_extension_says_to_rename_it(tmp_path: Path, ptbxl_dir: Path) -> None:
    source = ptbxl_dir / RECORD
    text = (
        source.with_suffix(".hea").read_text().replace("00001_hr.dat", "00001_HR.DAT").replace("00001_hr", "00001_HR")
    )
    (tmp_path / "00001_HR.HEA").write_text(text)
    (tmp_path / "00001_HR.DAT").write_bytes(source.with_suffix(".dat").read_bytes())
    assert scan_records(tmp_path).records == [tmp_path / "00001_HR.HEA"]  # found by the scan ...
    for given in ("00001_HR.HEA", "00001_HR.DAT", "00001_HR"):
        with pytest.raises(EcgReadError) as info:
            load_ecg(tmp_path / given)  # ... then "file not found" before
        assert info.value.path == str(tmp_path / "00001_HR.HEA"), given
        assert "lower-case .hea" in info.value.problem and "rename 00001_HR.HEA to 00001_HR.hea" in info.value.problem
    (tmp_path / "00001_HR.HEA").rename(tmp_path / "00001_HR.hea")  # what the message says to do: it reads
    ecg = load_ecg(tmp_path / "00001_HR.hea")
    np.testing.assert_allclose(ecg.signal, load_ecg(source).signal)


def test_a_cinc_record_with_an_upper_case_header_says_to_rename_it(tmp_path: Path, shared_data: Path) -> None:
    """Given as its `.mat`, it was read as a CPSC file: "has a 'val' matrix ... but no WFDB header E07501.hea"."""
    cinc = shared_data / "formats" / "cinc2021"
    (tmp_path / "E07501.HEA").write_bytes((cinc / "E07501.hea").read_bytes())
    (tmp_path / "E07501.mat").write_bytes((cinc / "E07501.mat").read_bytes())
    assert scan_records(tmp_path).records == [tmp_path / "E07501.HEA"]
    for given in ("E07501.HEA", "E07501.mat", "E07501"):
        with pytest.raises(EcgReadError, match=r"rename E07501\.HEA to E07501\.hea") as info:
            load_ecg(tmp_path / given)
        assert info.value.path == str(tmp_path / "E07501.HEA"), given

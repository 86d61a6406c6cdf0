"""`scan_records` drops no file silently: a header that names itself as its segment, a CPSC ``.mat`` that another
header names as its signal file, and broken links are each a record that batch commands read (and list when the
read fails), never a file that vanishes from a run. End to end: `ecglang zero-shot` and `ecglang prototypes build`
list each of them and exit 1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.errors import EcgReadError
from ecglang.record.io import load_ecg, load_ecgs, scan_records

PTBXL_RECORD = "records500/00000/00001_hr"


def _good_record(ptbxl_dir: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".hea", ".dat"):
        shutil.copy(ptbxl_dir / f"{PTBXL_RECORD}{suffix}", folder)
    return folder / "00001_hr.hea"


def _names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _symlink(target: str, link: Path) -> None:
    try:
        os.symlink(target, link)
    except (OSError, NotImplementedError) as exc:  # e.g. Windows without the privilege
        pytest.skip(f"cannot create a symbolic link here: {exc}")


def _cpsc_named_by_another_header(shared_data: Path, folder: Path) -> None:
    """A1980.mat (CPSC 2018) beside aaa.hea, a CinC header whose signal file is A1980.mat."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared_data / "formats" / "cpsc2018" / "A1980.mat", folder)
    text = (shared_data / "formats" / "cinc2021" / "E07500.hea").read_text()
    (folder / "aaa.hea").write_text(text.replace("E07500.mat", "A1980.mat").replace("E07500 ", "aaa ", 1))


# ------------------------------------------------------------------------------------- (a) segment headers


def test_a_header_naming_itself_as_its_segment_is_a_record(ptbxl_dir: Path, tmp_path: Path) -> None:
    """It was taken for a segment of itself (so of a master that stood for it) and vanished from the scan."""
    _good_record(ptbxl_dir, tmp_path)
    (tmp_path / "loop.hea").write_text("loop/1 12 500 5000\nloop 5000\n")
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["00001_hr.hea", "loop.hea"]
    with pytest.raises(EcgReadError) as info:
        load_ecg(tmp_path / "loop.hea")  # listed by the batch commands, with the reader's reason
    assert info.value.path == str((tmp_path / "loop.hea").absolute())


def test_multi_segment_headers_naming_each_other_are_both_records(tmp_path: Path) -> None:
    """A segment of a multi-segment record is a single-segment header; two masters naming each other are two
    records (each fails in load_ecg), not two segments covered by nobody."""
    (tmp_path / "a.hea").write_text("a/1 12 500 5000\nb 5000\n")
    (tmp_path / "b.hea").write_text("b/1 12 500 5000\na 5000\n")
    assert _names(scan_records(tmp_path).records) == ["a.hea", "b.hea"]


def test_a_real_segment_is_still_covered_by_its_master(ptbxl_dir: Path, tmp_path: Path) -> None:
    _good_record(ptbxl_dir, tmp_path)
    (tmp_path / "multi.hea").write_text("multi/1 12 500 5000\n00001_hr 5000\n")
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["multi.hea"] and scan.skipped == []
    assert load_ecg(tmp_path / "multi.hea").signal.shape == (12, 5000)


# ----------------------------------------------------------------- (b) a .mat that another header names


def test_a_cpsc_mat_named_by_another_header_is_its_own_record(shared_data: Path, tmp_path: Path) -> None:
    """aaa.hea names A1980.mat (a CPSC struct, not a WFDB signal file): A1980 was owned by aaa.hea, so when
    aaa.hea failed to read, A1980 was neither scored nor listed."""
    _cpsc_named_by_another_header(shared_data, tmp_path)
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["A1980.mat", "aaa.hea"]
    result = load_ecgs(scan.records, progress=False)
    assert [e.record_id for e in result.ecgs] == ["A1980"]
    assert result.ecgs[0].metadata["format"] == "cpsc-mat"
    assert [p.name for p, _ in result.failures] == ["aaa.hea"]  # its signal file is no WFDB signal file


def test_a_wfdb_mat_named_by_a_header_of_another_name_stays_its_signal_file(shared_data: Path, tmp_path: Path) -> None:
    cinc = shared_data / "formats" / "cinc2021"
    shutil.copy(cinc / "E07500.mat", tmp_path / "signals.mat")
    (tmp_path / "rec.hea").write_text(
        (cinc / "E07500.hea").read_text().replace("E07500.mat", "signals.mat").replace("E07500 ", "rec ", 1)
    )
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["rec.hea"] and scan.skipped == []
    assert load_ecg(tmp_path / "rec.hea").metadata["format"] == "wfdb-mat"


# ------------------------------------------------------------------------------------- (c) broken links


def test_broken_links_are_records_that_fail_by_name(ptbxl_dir: Path, tmp_path: Path) -> None:
    """`Path.is_file()` is False for a dangling link, so the scan left them out without a word."""
    _good_record(ptbxl_dir, tmp_path)
    _symlink("/nonexistent/rec.hea", tmp_path / "broken.hea")
    _symlink(str(tmp_path / "gone.npy"), tmp_path / "broken2.npy")
    _symlink("/nonexistent/x.dat", tmp_path / "broken3.dat")  # no header names it
    _symlink("loopy.mat", tmp_path / "loopy.mat")  # a link to itself
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["00001_hr.hea", "broken.hea", "broken2.npy", "loopy.mat"]
    assert [(f.record.rsplit("/", 1)[-1], f.stage) for f in scan.failures()] == [("broken3.dat", "scan")]
    assert "broken link" in scan.failures()[0].reason
    result = load_ecgs(scan.records, progress=False)
    assert [e.record_id for e in result.ecgs] == ["00001_hr"]
    reasons = {p.name: err.problem for p, err in result.failures}
    assert set(reasons) == {"broken.hea", "broken2.npy", "loopy.mat"}
    assert all("broken link" in r for r in reasons.values()), reasons
    assert "/nonexistent/rec.hea" in reasons["broken.hea"]


def test_a_broken_link_to_a_signal_file_fails_its_header(ptbxl_dir: Path, tmp_path: Path) -> None:
    hea = _good_record(ptbxl_dir, tmp_path)
    hea.with_suffix(".dat").unlink()
    _symlink("/nonexistent/00001_hr.dat", hea.with_suffix(".dat"))
    scan = scan_records(tmp_path)
    assert _names(scan.records) == ["00001_hr.hea"] and scan.skipped == []
    with pytest.raises(EcgReadError):
        load_ecg(hea)


# ----------------------------------------------------------------------------------------------- end to end


def test_zero_shot_lists_every_file_that_used_to_vanish(
    model_dir: Path, ptbxl_dir: Path, shared_data: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "in"
    _good_record(ptbxl_dir, folder)
    (folder / "loop.hea").write_text("loop/1 12 500 5000\nloop 5000\n")
    _cpsc_named_by_another_header(shared_data, folder)
    _symlink("/nonexistent/rec.hea", folder / "broken.hea")
    _symlink("/nonexistent/x.npy", folder / "broken2.npy")
    out, failures = tmp_path / "scores.csv", tmp_path / "failures.csv"
    argv = ["zero-shot", str(folder), "--labels", "a", "b", "--model", str(model_dir), "--knowledge", "off",
            "--no-progress", "--out", str(out), "--failures", str(failures)]  # fmt: skip
    assert cli(argv) == 1
    capsys.readouterr()
    assert sorted(pd.read_csv(out, index_col=0).index) == ["00001_hr", "A1980"]
    listed = pd.read_csv(failures)
    assert sorted(Path(r).name for r in listed["record"]) == ["aaa.hea", "broken.hea", "broken2.npy", "loop.hea"]
    broken = listed[listed["record"].str.contains("broken")]
    assert broken["error"].str.contains("broken link").all()


def test_prototypes_build_lists_broken_links(model_dir: Path, ptbxl_dir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    _good_record(ptbxl_dir, folder)
    _symlink("/nonexistent/rec.hea", folder / "broken.hea")
    _symlink("/nonexistent/x.npy", folder / "broken2.npy")
    argv = ["prototypes", "build", "--records", str(folder), "--out", str(tmp_path / "protos"),
            "--model", str(model_dir), "--num-workers", "0", "--no-progress"]  # fmt: skip
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert "broken.hea" in err and "broken2.npy" in err and "broken link" in err

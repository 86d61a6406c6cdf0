"""`cinc2021` (labels from the records' own headers) drops no file silently: a ``.dat``/``.mat`` without its
header is a record of the label set whose read fails (listed, exit 1), never a file that appears nowhere; and a
header is read no further than the readers' header cap."""

from __future__ import annotations

import csv
import shutil
import tracemalloc
from pathlib import Path

import pytest

from ecglang.cli.main import main
from ecglang.errors import EcgReadError
from ecglang.evaluation.datasets import load_header_label_set
from ecglang.record.io import load_ecg
from ecglang.record.wfdb_reader import MAX_HEADER_BYTES

CINC_IDS = ["E07500", "E07501", "E07502", "E07503", "E07504"]


def _cinc_folder(shared_data: Path, folder: Path) -> Path:
    """The 5 CinC records, a 100-byte garbage header, and two signal files without a header."""
    shutil.copytree(shared_data / "formats" / "cinc2021", folder)
    (folder / "garbage.hea").write_bytes(bytes(range(7, 107)))
    shutil.copy(folder / "E07500.mat", folder / "orphan.mat")
    shutil.copy(shared_data / "ptbxl-sample" / "records500" / "00000" / "00001_hr.dat", folder / "orphan2.dat")
    return folder


def _read_problem(path: str) -> str:
    with pytest.raises(EcgReadError) as info:
        load_ecg(path)
    return info.value.problem


def test_signal_files_without_a_header_are_records_that_fail(shared_data: Path, tmp_path: Path) -> None:
    data = load_header_label_set(_cinc_folder(shared_data, tmp_path / "cinc"))
    assert sorted(data.record_ids) == [*CINC_IDS, "orphan", "orphan2"]
    paths = dict(zip(data.record_ids, data.paths, strict=True))
    # the runner reads every path: these two fail there, and are listed with the reason (exit status 1)
    for rid, signal in (("orphan", "orphan.mat"), ("orphan2", "orphan2.dat")):
        problem = _read_problem(paths[rid])
        assert signal in problem and "header" in problem, problem
    assert [(m.record, m.stage) for m in data.missing] == [("garbage", "missing")]  # a header, no signal file
    summary = data.record_summary()
    assert (summary["rows"], summary["found"], summary["missing"], summary["selected"]) == (8, 7, 1, 7)
    assert not data.labels[[data.record_ids.index("orphan"), data.record_ids.index("orphan2")]].any()


def test_an_orphan_cpsc_mat_is_listed_never_evaluated_without_labels(shared_data: Path, tmp_path: Path) -> None:
    """A CPSC .mat reads on its own: handed to the runner as a record it would be scored as all-negative."""
    folder = tmp_path / "cinc"
    shutil.copytree(shared_data / "formats" / "cinc2021", folder)
    shutil.copy(shared_data / "formats" / "cpsc2018" / "A1980.mat", folder)
    data = load_header_label_set(folder, limit=2)
    assert "A1980" in data.record_ids  # a listed failure is never left out by the limit
    assert len(data.record_ids) == 3 and data.n_limited == 3
    assert "A1980.mat" in _read_problem(data.paths[data.record_ids.index("A1980")])


def test_a_header_is_read_no_further_than_the_header_cap(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cinc"
    shutil.copytree(shared_data / "formats" / "cinc2021", folder)
    big = folder / "E07501.hea"
    with big.open("r+b") as fh:  # sparse: 32 MiB of header without the disk space
        fh.truncate(32 * MAX_HEADER_BYTES)
    tracemalloc.start()
    try:
        data = load_header_label_set(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_HEADER_BYTES, f"{peak / 2**20:.0f} MiB allocated"
    assert sorted(data.record_ids) == CINC_IDS  # kept: its read fails in the runner, which lists it
    assert "too large" in _read_problem(data.paths[data.record_ids.index("E07501")])


def test_evaluate_lists_orphan_signal_files_and_exits_1(model_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    folder = _cinc_folder(shared_data, tmp_path / "cinc")
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model_dir), "--label-sets", "cinc2021", "--data-root", str(folder),
            "--sources", "names", "--n-boot", "10", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    with open(out / "failures.csv", newline="") as fh:
        failures = {Path(r["record"]).stem: r for r in csv.DictReader(fh)}
    assert set(failures) == {"orphan", "orphan2"}
    assert "orphan.mat" in failures["orphan"]["error"] and "orphan2.dat" in failures["orphan2"]["error"]
    with open(out / "missing.csv", newline="") as fh:
        assert [r["record_id"] for r in csv.DictReader(fh)] == ["garbage"]

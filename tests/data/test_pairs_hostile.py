"""Hostile input to the builders that read a user's own files: pairs files (CSV, JSONL, parquet, HF dataset folders;
`ecglang.data.pairs`) and MIMIC-IV-ECG-shaped folders (`ecglang.data.mimic`). A bad row is one listed failure
naming its row (and line) and the others are built; a file that cannot be read at all is an `EcgReadError` naming
it; memory follows the columns used, not the file's width. Before: untyped ValueError/RuntimeError/OSError/
OverflowError/AttributeError tracebacks, whole builds stopped by one row, rows silently shifted, dropped or
matched to another study, and JSON read without `parse_json`'s checks. Records are small synthetic WFDB files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ecglang.data.mimic import build_mimic_ecg
from ecglang.data.pairs import build_pairs, failures_as_records
from ecglang.data.synthetic import synthetic_signal, write_mimic_like, write_wfdb_record
from ecglang.errors import ConfigError, EcgReadError

GOOD_ROWS = "records/r0,sinus rhythm,a\nrecords/r1.hea,normal ecg,b\n"


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_wfdb_record(folder / f"r{i}", synthetic_signal(rng, 500))
    return folder


@pytest.fixture
def base(records: Path, tmp_path: Path) -> Path:
    """A folder with `records/r0..r2` (WFDB) for pairs files written next to it."""
    shutil.copytree(records, tmp_path / "records")
    return tmp_path


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        # was: EcgReadError for the whole file (one Latin-1 line stopped the build)
        (
            "records/r2,rythme sinusal \xe9,c\n".encode("latin-1"),
            "line 3: not UTF-8 text: byte 0xe9 at column 27",
        ),
        # was: pandas ParserError for the whole file
        (b"records/r2,sinus rhythm,c,extra,more\n", "line 3: bad CSV: 5 cells, the header has 3"),
        # was: ValueError("embedded null byte") ending the build
        (b"records/r2\0,sinus rhythm,c\n", "line 3: bad path: 'records/r2\\x00' contains a NUL character"),
        # was: RuntimeError("Could not determine home directory.") ending the build
        (b"~no-such-user-x/r2,sinus rhythm,c\n", "line 3: bad path: '~no-such-user-x/r2' starts with '~' but no home"),
        # was: OSError(ENAMETOOLONG) ending the build
        (b"records/" + b"x" * 300 + b",sinus rhythm,c\n", "line 3: unreadable path: "),
        # was: kept, a 10 MB report held in memory (twice) and stored in the table
        (b"records/r2," + b"sinus " * 2_000_000 + b",c\n", "line 3: line too long: over 1000000 characters"),
        # a quoted cell over csv's field limit (was: kept)
        (b'records/r2,"' + b"sinus " * 30_000 + b'",c\n', "line 3: bad CSV: a cell is longer than 131072"),
    ],
)
def test_one_bad_csv_row_is_one_listed_failure(base: Path, bad_row: bytes, reason: str) -> None:
    pairs = _write(
        base / "pairs.csv", b"path,report,id\nrecords/r0,sinus rhythm,a\n" + bad_row + b"records/r1,ok ecg,b\n"
    )
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["a", "b"] and report.n_rows == 3 and report.n_records == 2
    assert len(report.failures) == 1 and report.failures[0].reason.startswith(reason), report.failures
    assert len(report.failures[0].reason) < 1000 and len(report.failures[0].path) < 1000


def test_a_first_row_longer_than_the_header_does_not_shift_the_columns(base: Path) -> None:
    """pandas took the extra leading cells as an index: every column moved one to the right, so every row's
    path was its report (all rows "file missing", a ConfigError)."""
    pairs = _write(base / "pairs.csv", "path,report,id\nrecords/r2,sinus rhythm,c,extra\n" + GOOD_ROWS)
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["a", "b"] and ds["report_original"] == ["sinus rhythm", "normal ecg"]
    assert [f.reason for f in report.failures] == ["line 2: bad CSV: 4 cells, the header has 3"]


def test_an_unclosed_quote_is_listed_and_the_rows_before_it_are_built(base: Path) -> None:
    """Was: EcgReadError for the whole file. The quote swallows the lines after it (they are one cell now), and
    that one row is listed with the lines it spans."""
    pairs = _write(base / "pairs.csv", "path,report,id\n" + GOOD_ROWS + 'records/r2,"sinus rhythm,c\nrecords/r0,x,d\n')
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["a", "b"]
    assert [f.reason for f in report.failures] == [
        "lines 4-5: bad CSV: a quoted cell is not closed before the end of the file"
    ]


def test_a_stray_quote_does_not_merge_rows(base: Path) -> None:
    """Was: pandas read lines 3-4 as one row, silently: row `c` gone, and `b` kept with c's path and the report
    'sinus rhythm,c\nrecords/r1,normal ecg"'."""
    text = 'path,report,id\nrecords/r0,sinus rhythm,a\nrecords/r2,"sinus rhythm,c\nrecords/r1,"normal ecg",b\n'
    ds, report = build_pairs(_write(base / "pairs.csv", text + "records/r1,ok,d\n"))  # r1's row above was left out
    assert ds["id"] == ["a", "d"] and ds["report_original"] == ["sinus rhythm", "ok"]
    assert [f.reason for f in report.failures] == [
        'lines 3-4: bad CSV: text after the closing quote of a cell (write a quote inside a quoted cell as "")'
    ]


def test_a_column_named_twice_is_an_error_naming_it(base: Path) -> None:
    """Was: the first `path` column used and the second silently renamed `path.1` by pandas."""
    pairs = _write(base / "pairs.csv", "path,report,path\nrecords/r0,sinus rhythm,records/r1\n")
    with pytest.raises(EcgReadError, match=r"pairs\.csv: pairs file: column 'path' appears 2 times in the header"):
        build_pairs(pairs)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's /proc")
def test_a_wide_csv_costs_the_memory_of_the_columns_used(base: Path) -> None:
    """3,000 unused columns (a 21 MB file): pandas read every cell (peak RSS +124 MB); rows are read one at a
    time now, keeping path/report/id (+7 MB). Measured in a fresh process, its peak RSS reset before the build."""
    n_cols, n_rows = 3000, 1000
    with (base / "wide.csv").open("w", encoding="utf-8") as f:
        f.write("path,report,id," + ",".join(f"c{i}" for i in range(n_cols)) + "\n")
        for i in range(n_rows):
            f.write(f"records/r{i},sinus rhythm,{i}" + ",abcdef" * n_cols + "\n")  # one record per row
    script = textwrap.dedent(f"""
        import gc
        from ecglang.data.pairs import build_pairs

        def mb(key):
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) // 1024 for line in status if line.startswith(key))

        gc.collect()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS
        before = mb("VmRSS:")
        ds, report = build_pairs({str(base / "wide.csv")!r}, check_files=False)  # 1000 paths, not looked at
        print(len(ds), len(report.failures), mb("VmHWM:") - before)
    """)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    n, n_failed, grew_mb = (int(x) for x in out.stdout.split())
    assert (n, n_failed) == (n_rows, 0)
    assert grew_mb < 50, f"building from a 21 MB CSV raised the peak RSS by {grew_mb} MB"


# ------------------------------------------------------------------------------------------------ JSONL


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        # was: EcgReadError for the whole file ("Reached object decoding depth limit")
        ('{"path":"records/r2","report":' + "[" * 100_000 + "]" * 100_000 + ',"id":"c"}',
         "line 2: invalid JSON: nested deeper than 64 levels at column"),
        # was: the row kept with age None (NaN is not JSON)
        ('{"path":"records/r2","report":"sinus rhythm","id":"c","age":NaN}',
         "line 2: invalid JSON: NaN is not a JSON value at column 61"),
        # was: the row kept with the last value of the key
        ('{"path":"records/r2","report":"sinus rhythm","report":"normal ecg","id":"c"}',
         "line 2: invalid JSON: key 'report' appears twice in one JSON object"),
        # was: the row kept, a lone surrogate in its report
        ('{"path":"records/r2","report":"sinus \\ud800 rhythm","id":"c"}',
         "line 2: invalid JSON: string at ['report'] has a lone surrogate"),
        # was: EcgReadError for the whole file ("Value is too big!")
        ('{"path":"records/r2","report":"sinus rhythm","id":' + "9" * 5000 + "}",
         "line 2: invalid JSON: integer of 5000 digits, over the limit of 1000"),
        # was: EcgReadError for the whole file
        ('{"path":"records/r2","report":"sinus rhythm","id":"c"',
         "line 2: invalid JSON: Expecting ',' delimiter"),
        ('["records/r2","sinus rhythm"]', "line 2: invalid JSON: a list of 2 items, not an object with path"),
        # was: kept, the report being the text "{'text': 'sinus rhythm'}"
        ('{"path":"records/r2","report":{"text":"sinus rhythm"},"id":"c"}',
         "line 2: bad report: an object with 1 keys is not text"),
        # was: "file missing: .../['records/r2'].hea"
        ('{"path":["records/r2"],"report":"sinus rhythm","id":"c"}',
         "line 2: bad path: a list of 1 items is not a file name"),
        ('{"path":"records/r2","report":"sinus rhythm","id":["c"]}', "line 2: bad id: a list of 1 items is not text"),
        ('{"path":"records/r2","report":"sinus rhythm","id":"' + "c" * 5000 + '"}',
         "line 2: bad id: 'ccc"),
    ],
)  # fmt: skip
def test_one_bad_jsonl_line_is_one_listed_failure(base: Path, bad_line: str, reason: str) -> None:
    lines = [
        '{"path":"records/r0","report":"sinus rhythm","id":"a"}',
        bad_line,
        '{"path":"records/r1","report":"normal ecg","id":"b"}',
    ]
    ds, report = build_pairs(_write(base / "pairs.jsonl", "\n".join(lines) + "\n"))
    assert ds["id"] == ["a", "b"] and report.n_rows == 3
    assert len(report.failures) == 1 and report.failures[0].reason.startswith(reason), report.failures
    assert len(report.failures[0].reason) < 1000


def test_a_jsonl_line_that_is_not_utf8_is_listed(base: Path) -> None:
    """Was: EcgReadError for the whole file."""
    content = b'{"path":"records/r0","report":"rythme \xe9","id":"a"}\n{"path":"records/r1","report":"ok","id":"b"}\n'
    ds, report = build_pairs(_write(base / "pairs.jsonl", content))
    assert ds["id"] == ["b"]
    assert [f.reason for f in report.failures] == ["line 1: not UTF-8 text: byte 0xe9 at column 39"]


# ---------------------------------------------------------------------------------- parquet, HF datasets


def test_parquet_cells_of_the_wrong_type_are_listed(base: Path) -> None:
    """Were kept as the text of their Python repr: a report "b'sinus rhythm'" or "['sinus rhythm' 'x']"."""
    reports = pa.array([b"sinus rhythm", b"\xff\xfe", b"normal ecg"], pa.binary())
    pq.write_table(pa.table({"path": ["records/r0", "records/r1", "records/r2"], "report": reports,
                             "id": ["a", "b", "c"]}), base / "bytes.parquet")  # fmt: skip
    ds, report = build_pairs(base / "bytes.parquet")
    assert ds["id"] == ["a", "c"] and ds["report_original"] == ["sinus rhythm", "normal ecg"]
    assert [f.reason for f in report.failures] == ["row 2: bad report: 2 bytes that are not UTF-8 text"]
    pq.write_table(pa.table({"path": ["records/r0", "records/r1"], "report": [["sinus rhythm", "x"], ["ok"]]}),
                   base / "lists.parquet")  # fmt: skip
    with pytest.raises(ConfigError, match=r"2  bad report\n.*first: row 1: bad report: a list of 2 items is not"):
        build_pairs(base / "lists.parquet")


def test_parquet_integer_ids_with_nulls_stay_integers(base: Path) -> None:
    """pandas turned an integer column with a null into floats: id 7 became "7.0" (Arrow rows keep 7)."""
    pq.write_table(pa.table({"path": ["records/r0", "records/r1"], "report": ["sinus rhythm", "ok"],
                             "id": pa.array([7, None], pa.int64())}), base / "ids.parquet")  # fmt: skip
    ds, report = build_pairs(base / "ids.parquet")
    assert ds["id"] == ["7", "row-2"] and report.failures == []


def test_a_file_that_is_not_parquet_is_an_ecg_read_error(base: Path) -> None:
    """Was: pyarrow's untyped OSError ("Couldn't deserialize thrift")."""
    _write(base / "pairs.parquet", b"PAR1" + b"\0" * 100 + b"PAR1")
    with pytest.raises(EcgReadError, match=r"pairs\.parquet: not a readable parquet file"):
        build_pairs(base / "pairs.parquet")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        # were: the same errors, untyped, from inside `datasets`
        ("state.json", "[]", "not a saved HF dataset: TypeError"),
        ("state.json", "{}", "not a saved HF dataset: KeyError"),
        ("dataset_info.json", "[1]", "not a saved HF dataset: AttributeError"),
        # was: RecursionError inside `datasets`' json.load
        ("state.json", "[" * 100_000 + "]" * 100_000, r"state\.json: invalid JSON: nested deeper than 64 levels"),
        ("state.json", '{"_data_files": NaN}', r"state\.json: invalid JSON: NaN is not a JSON value"),
    ],
)  # fmt: skip
def test_a_broken_dataset_folder_is_an_ecg_read_error(base: Path, name: str, content: str, match: str) -> None:
    folder = base / "hf"
    datasets.Dataset.from_dict({"path": ["../records/r0"], "report": ["sinus rhythm"]}).save_to_disk(str(folder))
    assert len(build_pairs(folder).dataset) == 1
    _write(folder / name, content)
    with pytest.raises(EcgReadError, match=match):
        build_pairs(folder)


def test_a_dataset_dict_folder_names_its_splits(base: Path) -> None:
    """Was: AttributeError ('DatasetDict' object has no attribute 'to_pandas')."""
    split = datasets.Dataset.from_dict({"path": ["../records/r0"], "report": ["sinus rhythm"]})
    datasets.DatasetDict({"train": split}).save_to_disk(str(base / "hf"))
    with pytest.raises(
        EcgReadError, match=r"a dataset with splits \['train'\]: give one split's folder, e\.g\. .*hf/train"
    ):
        build_pairs(base / "hf")


# ------------------------------------------------------------------------------------------- the whole file


@pytest.mark.parametrize("root", ["~no-such-user-x/pairs.csv", "loop"])
def test_an_unusable_pairs_file_path_is_an_ecg_read_error(base: Path, root: str) -> None:
    """Was: RuntimeError (an unknown user's `~`, a symlink loop) from `Path.expanduser`/`resolve`."""
    if root == "loop":
        os.symlink(base / "loop2", base / "loop")
        os.symlink(base / "loop", base / "loop2")
        root = str(base / "loop")
    with pytest.raises(EcgReadError, match="pairs file: "):
        build_pairs(root)


def test_failures_are_counted_by_kind_and_the_first_ones_quoted(base: Path) -> None:
    """The summary (printed, and stored in the prepared folder's table.json) had one line per failed row, as each
    reason started with its row ("row 7: file missing"); a file without usable rows said only the counts."""
    rows = "".join(f"records/none{i},sinus rhythm,id{i}\n" for i in range(50))
    pairs = _write(base / "pairs.csv", "path,report,id\n" + rows)
    with pytest.raises(ConfigError) as info:
        build_pairs(pairs)
    message = str(info.value)
    assert "50 metadata rows → 0 records, 50 left out\n      50  file missing\n" in message
    assert "first: id0: line 2: file missing: " in message and message.count("file missing: ") == 5
    _write(pairs, "path,report,id\n" + GOOD_ROWS + rows + "records/r2,x,a\n")
    _, report = build_pairs(pairs)
    assert report.failure_counts() == {"file missing": 50, "duplicate id": 1}


def test_rows_without_an_id_get_ids_that_no_explicit_id_takes(base: Path) -> None:
    """A row without an id got its 0-based row number: the row after one with id `1` became a "duplicate id: '1'
    was first used in row 0" and was left out."""
    pairs = _write(base / "pairs.csv", "path,report,id\nrecords/r0,sinus rhythm,1\nrecords/r1,ok,\nrecords/r2,ok,\n")
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["1", "line-3", "line-4"] and report.failures == []
    # an explicit id equal to a default one, before or after that row: the default steps aside
    write_wfdb_record(base / "records" / "r3", synthetic_signal(np.random.default_rng(3), 500))  # a record per row
    text = "path,report,id\nrecords/r0,sinus rhythm,\nrecords/r1,ok,line-2\nrecords/r2,ok,line-4\n\nrecords/r3,x,\n"
    ds, report = build_pairs(_write(pairs, text))
    assert ds["id"] == ["line-2.2", "line-2", "line-4", "line-6"] and report.failures == []
    # parquet rows have no lines: 1-based row numbers
    pq.write_table(pa.table({"path": ["records/r0", "records/r1"], "report": ["a", "b"], "id": [None, "row-1"]}),
                   base / "ids.parquet")  # fmt: skip
    assert build_pairs(base / "ids.parquet").dataset["id"] == ["row-1.2", "row-1"]


def test_a_row_is_named_once_by_its_line(base: Path, capsys: pytest.CaptureFixture) -> None:
    """Was `row 0: row 0: line 2: not UTF-8 text ...` (0-based row numbers, the position said twice)."""
    from ecglang.cli.main import main as cli

    pairs = _write(
        base / "pairs.csv", b"path,report,id\nrecords/r0,rythme \x97 normal,\nrecords/r1,ok,a\nrecords/r2,,b\n"
    )
    out = base / "out"
    assert cli(["data", "build", "pairs", str(pairs), "--out", str(out), "--no-cache", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "\n  line 2: not UTF-8 text: byte 0x97 at column 19\n" in err and "\n  b: line 4: empty report\n" in err
    listing = err.split("build_failures.csv):", 1)[1].split("\nfailed ", 1)[0]  # (the closing line names tmp_path)
    assert "row" not in listing
    listed = failures_as_records(out / "build_failures.csv")
    assert [(f.record, f.reason) for f in listed] == [
        ("line-2", "line 2: not UTF-8 text: byte 0x97 at column 19"),
        ("b", "line 4: empty report"),
    ]


def test_a_failure_list_without_its_columns_is_an_ecg_read_error(tmp_path: Path) -> None:
    """Was: KeyError from pandas."""
    listing = _write(tmp_path / "build_failures.csv", "record_id,reason\nx,file missing\n")
    with pytest.raises(EcgReadError, match=r"build_failures\.csv lacks column\(s\) \['path'\]"):
        failures_as_records(listing)


# ---------------------------------------------------------------------------------------------- MIMIC


@pytest.fixture(scope="module")
def mimic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mimic_like(tmp_path_factory.mktemp("mimic") / "mimic", 6, seed=1)


@pytest.fixture
def mimic_root(mimic: Path, tmp_path: Path) -> Path:
    root = tmp_path / "mimic"
    shutil.copytree(mimic, root)
    return root


def _edit(root: Path, name: str, row: int, column: str, value: str) -> None:
    frame = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(root / name, index=False)


def _append_to_line(root: Path, name: str, line: int, text: str) -> None:
    lines = (root / name).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].rstrip("\n") + text + "\n"
    (root / name).write_text("".join(lines), encoding="utf-8")


ALL = [str(40_000_000 + i) for i in range(6)]
BUT_1 = [s for s in ALL if s != "40000001"]


@pytest.mark.parametrize(
    ("column", "value", "record_id", "reason"),
    [
        # was: the index became text, so no study matched: all six records "no machine_measurements.csv row"
        ("study_id", "abc", "record_list.csv line 3",
         "bad study_id: 'abc' in record_list.csv line 3 is not an integer"),
        # was: drop_duplicates removed the row silently
        ("study_id", "40000000", "40000000",
         "duplicate study_id: 40000000 in record_list.csv line 3 was first used in line 2"),
        # were: ValueError / ValueError / OverflowError ending the build
        ("subject_id", "abc", "40000001", "bad subject_id: 'abc' in record_list.csv line 3 is not an integer"),
        ("subject_id", "", "40000001", "bad subject_id: '' in record_list.csv line 3 is empty"),
        ("subject_id", "9" * 30, "40000001",
         "bad subject_id: '999999999999999999999999999999' in record_list.csv line 3 is outside"),
        # were: read from outside the root, silently
        ("path", "../elsewhere/40000001", "40000001",
         "path outside the root: '../elsewhere/40000001' in record_list.csv line 3"),
        ("path", "/etc/passwd", "40000001", "path outside the root: '/etc/passwd' in record_list.csv line 3"),
        # was: OSError(ENAMETOOLONG) ending the build
        ("path", "files/" + "x" * 300, "40000001", "unreadable path: "),
    ],
)  # fmt: skip
def test_one_bad_record_list_cell_is_one_listed_failure(
    mimic_root: Path, column: str, value: str, record_id: str, reason: str
) -> None:
    _edit(mimic_root, "record_list.csv", 1, column, value)
    ds, report = build_mimic_ecg(mimic_root, progress=False)
    assert ds["id"] == BUT_1 and report.n_rows == 6
    assert [(f.record_id, f.reason[: len(reason)]) for f in report.failures] == [(record_id, reason)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1e400", "bad study_id: '1e400' in machine_measurements.csv line 3 is not an integer"),  # was: OverflowError
        ("inf", "bad study_id: 'inf' in machine_measurements.csv line 3 is not an integer"),  # was: OverflowError
        # were: int(float(...)) = 40000000, the report silently taken for another study
        ("40000000.9", "bad study_id: '40000000.9' in machine_measurements.csv line 3 is not an integer"),
        ("4.0000001e7", "bad study_id: '4.0000001e7' in machine_measurements.csv line 3 is not an integer"),
    ],
)
def test_one_bad_measurements_study_id_is_listed(mimic_root: Path, value: str, reason: str) -> None:
    _edit(mimic_root, "machine_measurements.csv", 1, "study_id", value)
    ds, report = build_mimic_ecg(mimic_root, progress=False)
    assert ds["id"] == BUT_1
    assert [(f.record_id, f.reason) for f in report.failures] == [
        ("machine_measurements.csv line 3", reason),
        ("40000001", "no machine_measurements.csv row"),
    ]


def test_ragged_mimic_rows_are_listed_and_the_rest_is_built(mimic_root: Path) -> None:
    """Were: pandas ParserError for the whole file (a later row), or every column shifted (the first row)."""
    _append_to_line(mimic_root, "record_list.csv", 2, ",extra")  # the first data row
    _append_to_line(mimic_root, "machine_measurements.csv", 4, ",extra,more")
    ds, report = build_mimic_ecg(mimic_root, progress=False)
    assert ds["id"] == ["40000001", "40000003", "40000004", "40000005"]
    assert [(f.record_id, f.reason) for f in report.failures] == [
        ("record_list.csv line 2", "bad record_list.csv row: line 2: bad CSV: 6 cells, the header has 5"),
        ("machine_measurements.csv line 4",
         "bad machine_measurements.csv row: line 4: bad CSV: 22 cells, the header has 20"),
        ("40000002", "no machine_measurements.csv row"),
    ]  # fmt: skip


def test_repeated_and_orphan_measurement_rows_are_counted(mimic_root: Path) -> None:
    """Were skipped without a trace: a second row for one study, and a report for a study no record has."""
    _edit(mimic_root, "machine_measurements.csv", 1, "study_id", "40000000")
    _edit(mimic_root, "machine_measurements.csv", 2, "study_id", "49999999")
    ds, report = build_mimic_ecg(mimic_root, progress=False)
    assert ds["id"] == ["40000000", "40000003", "40000004", "40000005"]
    assert report.notes["n_repeated_study_rows"] == 1 and report.notes["n_reports_without_record"] == 1
    assert "n_repeated_study_rows: 1" in report.summary()


def test_mimic_files_whose_columns_cannot_be_used_are_errors(mimic_root: Path) -> None:
    # was: the second report_0 renamed report_0.1 by pandas and its text dropped
    mm = mimic_root / "machine_measurements.csv"
    text = mm.read_text(encoding="utf-8")
    mm.write_text(text.replace("report_1,", "report_0,", 1), encoding="utf-8")
    with pytest.raises(EcgReadError, match=r"machine_measurements\.csv: column 'report_0' appears 2 times"):
        build_mimic_ecg(mimic_root, progress=False)
    # was: built, every record listed as "report too short: 0 word(s)"
    mm.write_text("subject_id,study_id,cart_id\n1,40000000,3\n", encoding="utf-8")
    with pytest.raises(EcgReadError, match=r"has none of the columns report_0\.\.report_17"):
        build_mimic_ecg(mimic_root, progress=False)


def test_valid_mimic_folder_is_built_as_before(mimic_root: Path) -> None:
    ds, report = build_mimic_ecg(mimic_root, chunksize=2, progress=False)
    assert ds["id"] == ALL and report.failures == [] and report.n_rows == 6
    rows = pd.read_csv(mimic_root / "record_list.csv")
    assert ds["subject_id"] == rows["subject_id"].tolist() and ds["ecg_time"] == rows["ecg_time"].tolist()
    assert ds["path"] == [str(mimic_root.resolve() / p) for p in rows["path"]]
    notes = {"n_report_too_short": 0, "min_words": 4, "n_reports_without_record": 0, "n_repeated_study_rows": 0}
    assert json.dumps(report.notes) == json.dumps(notes)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_row_naming_a_pipe_or_folder_says_so(base: Path) -> None:
    """A named pipe or a folder named like a record exists, yet each was listed as "file missing" (and a pipe read
    as a record never ends): each is now "not a regular file"."""
    os.mkfifo(base / "records" / "pipe.npz")
    (base / "records" / "folder.hea").mkdir()
    pairs = _write(base / "p.csv", "path,report,id\n" + GOOD_ROWS + "records/pipe.npz,sinus rhythm,pipe\n"
                   "records/folder,sinus rhythm,folder\n")  # fmt: skip
    ds, report = build_pairs(pairs)
    assert ds["id"] == ["a", "b"]
    reasons = {f.record_id: f.reason for f in report.failures}
    assert reasons["pipe"] == f"line 4: not a regular file: {base / 'records' / 'pipe.npz'} (a folder, device or pipe)"
    assert (
        reasons["folder"] == f"line 5: not a regular file: {base / 'records' / 'folder.hea'} (a folder, device or pipe)"
    )

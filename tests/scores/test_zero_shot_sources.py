"""Every scored record names the file it was read from (`ZeroShotResult.sources`, the `path` column of
`ecglang zero-shot --out`): two folders holding one file stem scored as `00001_hr` and `00001_hr#2`, and nothing
said which file `00001_hr#2` was, so the scores could not be joined back to the files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.record.io import load_ecg
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["normal ecg", "atrial fibrillation"]


@pytest.fixture
def two_files(ptbxl_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """`a/00001_hr.hea` and `b/00001_hr.hea`: one stem, two different records (b's is PTB-XL's 00002_hr renamed),
    so that a row given the wrong file also has the wrong scores."""
    src = ptbxl_dir / "records500" / "00000"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(src / f"00001_hr{suffix}", a)
    (b / "00001_hr.hea").write_text((src / "00002_hr.hea").read_text().replace("00002_hr", "00001_hr"))
    shutil.copy(src / "00002_hr.dat", b / "00001_hr.dat")
    return a / "00001_hr.hea", b / "00001_hr.hea"


def test_cli_scores_csv_names_the_file_of_each_record(model_dir, two_files, tmp_path, capsys) -> None:
    first, second = two_files
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", str(first.parent), str(second.parent), "--labels", *LABELS, "--model", str(model_dir),
            "--knowledge", "off", "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli(argv) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["record", "path", *LABELS]  # the path right after the id, labels in order
    assert list(table["record"]) == ["00001_hr", "00001_hr#2"]
    assert Path(table["path"][0]).samefile(first) and Path(table["path"][1]).samefile(second)
    assert out.read_text().splitlines()[1].endswith(tuple(f",{v:.6f}" for v in table[LABELS[-1]]))  # 6 decimals
    printed = capsys.readouterr().out
    assert f"== 00001_hr#2  ({table['path'][1]})" in printed  # the console names the file too


@pytest.mark.parametrize("explain", [False, True], ids=["scores", "explained"])
def test_result_sources_map_each_record_to_its_file(model, two_files, explain) -> None:
    first, second = two_files
    # two batches read in a worker process (the explained path reads in this one): the paths must follow the ids
    # across batches and processes
    clf = ZeroShotClassifier(model, knowledge=None, batch_size=1)
    result = clf([first.parent, second.parent], labels=LABELS, explain=explain, progress=False, num_workers=1)
    assert list(result.scores.index) == ["00001_hr", "00001_hr#2"]
    assert result.sources is not None and result.sources.index.equals(result.scores.index)
    assert Path(result.sources["00001_hr"]).samefile(first)
    assert Path(result.sources["00001_hr#2"]).samefile(second)
    alone = clf([second], labels=LABELS, progress=False)  # the row named after b's file holds b's scores
    np.testing.assert_allclose(result.scores.loc["00001_hr#2"], alone.scores.iloc[0], rtol=0, atol=1e-6)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["sources"] == {"00001_hr": result.sources["00001_hr"], "00001_hr#2": result.sources["00001_hr#2"]}
    table = result.score_table()
    assert list(table.columns) == ["path", *LABELS] and table.index.name == "record"
    assert table["path"].equals(result.sources.rename("path"))


def test_in_memory_records_have_no_path(model, ptbxl_dir) -> None:
    """Arrays and `Ecg`s built in memory have no file: `sources` holds None for them, and a table of such
    records alone has no `path` column; beside files their path cells are empty."""
    record = ptbxl_dir / "records500" / "00000" / "00001_hr"
    ecg = load_ecg(record)
    clf = ZeroShotClassifier(model, knowledge=None)
    arrays = clf.score_arrays([ecg.signal], fs=ecg.fs, labels=LABELS, progress=False)
    assert arrays.sources is not None and arrays.sources.isna().all() and list(arrays.sources.index) == ["array0"]
    assert list(arrays.score_table().columns) == LABELS
    assert json.loads(json.dumps(arrays.to_dict()))["sources"] == {"array0": None}

    bare = ecg.replace(metadata={}, record_id="mine")  # an Ecg made in memory: no source_path
    mixed = clf([bare, ecg.signal, record], labels=LABELS, fs=ecg.fs, progress=False)
    assert list(mixed.scores.index) == ["mine", "array1", "00001_hr"]
    assert mixed.sources["mine"] is None and mixed.sources["array1"] is None
    assert Path(mixed.sources["00001_hr"]).samefile(record.with_suffix(".hea"))
    assert mixed.score_table()["path"].tolist() == [None, None, mixed.sources["00001_hr"]]


def test_metadata_count_reads_a_repeated_stem_by_its_file(model_dir, two_files, tmp_path, capsys) -> None:
    """Both records are `00001_hr` on disk and the table has that stem: 2 of 2 were covered (the count looked up
    the suffixed id `00001_hr#2` and said 1 of 2, while the scores used the table for both)."""
    first, second = two_files
    table = tmp_path / "demo.csv"
    table.write_text("id,age,sex\n00001_hr,61,F\n")
    argv = ["zero-shot", str(first.parent), str(second.parent), "--labels", *LABELS, "--model", str(model_dir),
            "--knowledge", "off", "--metadata", str(table), "--quiet", "--no-progress"]  # fmt: skip
    assert cli(argv) == 0
    assert "has age/sex for 2 of 2 scored record(s)" in capsys.readouterr().out


def test_a_label_called_path_keeps_its_column(model, two_files) -> None:
    result = ZeroShotClassifier(model, knowledge=False)([str(p) for p in two_files], labels=["path", "sinus rhythm"],
                                                       progress=False)  # fmt: skip
    table = result.score_table()
    assert list(table.columns) == ["record_path", "path", "sinus rhythm"]
    assert table["path"].tolist() == result.scores["path"].tolist()  # the label's scores, not the files


def test_labels_called_path_and_record_path_keep_their_columns(model, two_files) -> None:
    """Labels "path" and "record_path" together: the file column was `record_path` as well, and the CSV then had
    two columns of one name."""
    labels = ["path", "record_path", "sinus rhythm"]
    result = ZeroShotClassifier(model, knowledge=False)([str(p) for p in two_files], labels=labels, progress=False)
    table = result.score_table()
    assert list(table.columns) == ["record_path_2", *labels]
    assert table["record_path"].tolist() == result.scores["record_path"].tolist()
    assert table["record_path_2"].tolist() == [result.sources[r] for r in table.index]


def test_a_label_called_record_keeps_its_column_and_the_csv_reads_back(model, two_files, tmp_path) -> None:
    """`--labels record path` wrote a CSV with two `record` columns (the record column and the label)."""
    labels = ["record", "path", "sinus rhythm"]
    result = ZeroShotClassifier(model, knowledge=False)([str(p) for p in two_files], labels=labels, progress=False)
    result.score_table().to_csv(tmp_path / "scores.csv")
    back = pd.read_csv(tmp_path / "scores.csv")
    assert list(back.columns) == ["record_id", "record_path", *labels]
    assert back["record_id"].tolist() == list(result.scores.index)
    np.testing.assert_allclose(back["record"], result.scores["record"], atol=1e-6)


def test_each_plot_names_the_file_it_shows(model, two_files) -> None:
    """`--plot` drew `00001_hr` and `00001_hr#2` with nothing to say which folder's file each figure was."""
    from ecglang.cli.zero_shot import plot_notes

    result = ZeroShotClassifier(model, knowledge=False)([str(p) for p in two_files], labels=LABELS, explain=True,
                                                       progress=False)  # fmt: skip
    for rid, path in zip(result.scores.index, two_files, strict=True):
        top = result.scores.loc[rid].idxmax()
        notes = plot_notes(result, rid, top)
        assert notes[0].startswith(f"top label: {result.labels[top].name}")
        assert f"file: {path}" in notes


def test_a_record_reached_twice_is_scored_once(model, two_files, tmp_path, caplog) -> None:
    """A folder and a file in it (or a link to it, or its `.dat`) scored the one record twice, as `00001_hr` and
    `00001_hr#2`: a duplicate row with the same scores, as if two files had been given."""
    first, second = two_files
    (tmp_path / "link.hea").symlink_to(first)
    inputs = [first.parent, first, first.with_suffix(".dat"), tmp_path / "link.hea", second]
    with caplog.at_level("WARNING", logger="ecglang.embeddings.sources"):
        result = ZeroShotClassifier(model, knowledge=False)(inputs, labels=LABELS, progress=False)
    assert list(result.scores.index) == ["00001_hr", "00001_hr#2"]  # a's record once, b's (another file) once
    assert Path(result.sources["00001_hr"]).samefile(first) and Path(result.sources["00001_hr#2"]).samefile(second)
    said = [r.getMessage() for r in caplog.records if "scored once" in r.getMessage()]
    assert len(said) == 3 and all(str(first) in line for line in said)  # each repeat named, none silent


def test_the_scores_csv_keeps_its_columns_when_every_record_failed(model_dir, tmp_path) -> None:
    """With every record failed, `--out` held `record,<labels>`: another layout than a run's with scores, exactly
    when a script reading many runs' CSVs meets a failed one."""
    bad = tmp_path / "rec.npy"
    np.save(bad, np.zeros((12, 5000), np.float32))  # no fs or lead names: this record fails
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", str(bad), "--labels", *LABELS, "--model", str(model_dir), "--knowledge", "off",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli(argv) == 1
    assert out.read_text().splitlines() == [",".join(["record", "path", *LABELS])]

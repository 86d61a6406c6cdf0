"""Age and sex from a table reach zero-shot scoring (`ZeroShotClassifier(..., metadata=)`, `ecglang zero-shot
--metadata CSV`) for records whose headers carry neither, as PTB-XL's do not (issue 17: a tower with
`demographics: true` scored PTB-XL files from the CLI with both unknown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.errors import ConfigError
from ecglang.record.demographics import demographic_codes, read_demographics_table
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["sinus rhythm", "atrial fibrillation", "left bundle branch block"]


def test_a_users_table_by_id_or_path_with_sex_as_letters_or_words(tmp_path: Path) -> None:
    table = tmp_path / "demo.csv"
    table.write_text("id,age,sex\nrec1,63,M\nrec2,,female\nrec3,unknown,\n", encoding="utf-8")
    assert read_demographics_table(table) == {
        "rec1": {"age": 63.0, "sex": "M"},
        "rec2": {"age": None, "sex": "F"},
        "rec3": {"age": None, "sex": None},
    }
    by_path = tmp_path / "paths.csv"
    by_path.write_text("path,age\n/data/x/rec9.hea,71\n/data/x/site.2/rec.10\n", encoding="utf-8")
    # ids as the readers give them (`record_id_of`): a dot in a record's name is not a suffix
    assert read_demographics_table(by_path) == {
        "rec9": {"age": 71.0, "sex": None},
        "rec.10": {"age": None, "sex": None},
    }


def test_a_header_age_is_the_whole_number_or_unknown() -> None:
    """`# Age: 1e308` was read as 1 year (the regular expression took the first digits)."""
    from ecglang.record.demographics import parse_age

    assert [parse_age(t) for t in ("63", " 45", "63 years", "45y", "63.5", "130")] == [63, 45, 63, 45, 63.5, 130]
    assert [parse_age(t) for t in ("1e308", "63.5.1", "131", "NaN", "Unknown", "?", "")] == [None] * 7


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("id,age,sex\nrec1,63,1\n", "line 2: sex '1' is a number"),
        ("record,age\nrec1,63\n", "needs an 'id' or 'path' column"),
        ("id,weight\nrec1,80\n", "needs an 'age' or 'sex' column"),
        ("id,age,sex\nrec1,63,M\n,70,F\n", "line 3: no record id"),
        ("id,age,sex\n", None),  # a header alone is an empty table, not an error
        # read as unknown, or the last row kept, without a word before:
        ("id,age,sex\nrec1,abc,M\n", "line 2: age 'abc' is not an age in years"),
        ("id,age,sex\nrec1,200,M\n", "line 2: age '200' is not an age"),
        ("id,age,sex\nrec1,63,M\nrec1,70,F\n", "line 3: record 'rec1' is listed again with other age/sex"),
        ('id,age,sex\nrec1,63,M\n"rec2,70,F\nrec3,50,M\n', "cannot read the demographics table"),  # open quote
    ],
)
def test_a_table_that_cannot_be_read_names_the_file_and_the_problem(
    tmp_path: Path, text: str, problem: str | None
) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(text, encoding="utf-8")
    if problem is None:
        assert read_demographics_table(table) == {}
        return
    with pytest.raises(ConfigError, match=problem) as err:
        read_demographics_table(table)
    assert str(table) in str(err.value)
    with pytest.raises(ConfigError, match=r"missing\.csv"):
        read_demographics_table(tmp_path / "missing.csv")


@pytest.mark.shared_data
def test_ptbxl_database_reads_as_the_ptbxl_builder_does(ptbxl_dir: Path) -> None:
    from ecglang.evaluation.datasets import ptbxl_index

    table = read_demographics_table(ptbxl_dir / "ptbxl_database.csv")
    index = ptbxl_index(ptbxl_dir)
    assert index.paths
    for rid, path in index.paths.items():
        built = index.demographics[rid]
        read = table[Path(path).name.removesuffix(".hea")]
        assert demographic_codes(read["age"], read["sex"]) == pytest.approx(
            demographic_codes(built["age"], built["sex"]), nan_ok=True
        ), rid


@pytest.mark.shared_data
@pytest.mark.parametrize("demographics", [True, False])
def test_zero_shot_scores_read_the_table_only_in_a_tower_with_demographics(
    tiny_model, ptbxl_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], demographics: bool
) -> None:
    records = [str(ptbxl_dir / "records500" / "00000" / f"0000{i}_hr") for i in (1, 2)]
    table = read_demographics_table(ptbxl_dir / "ptbxl_database.csv")
    assert {Path(r).name for r in records} <= set(table)
    model = tiny_model(demographics)
    clf = ZeroShotClassifier(model, knowledge=False)
    plain = clf(records, labels=LABELS, progress=False).scores
    filled = clf(records, labels=LABELS, progress=False, metadata=table).scores
    assert list(plain.index) == list(filled.index) == ["00001_hr", "00002_hr"]
    assert (not np.allclose(plain.to_numpy(), filled.to_numpy())) == demographics
    # The CLI: the same table, and a line saying how many records it covered and whether the model reads it.
    model.save_pretrained(tmp_path / "model")
    out = tmp_path / "scores.csv"
    argv = ["zero-shot", *records, "--labels", *LABELS, "--model", str(tmp_path / "model"), "--knowledge", "off",
            "--metadata", str(ptbxl_dir / "ptbxl_database.csv"), "--out", str(out), "--quiet"]  # fmt: skip
    assert cli(argv) == 0
    said = capsys.readouterr().out
    assert "has age/sex for 2 of 2 scored record(s)" in said
    assert ("(read by this model)" in said) == demographics
    cli_scores = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(2, 3, 4))  # after the record and its path
    assert np.allclose(cli_scores, filled.to_numpy(), atol=1e-5)

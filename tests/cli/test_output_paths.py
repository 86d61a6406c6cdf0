"""Output paths are checked before the work, and a writer that replaces a whole folder never replaces a user's.

`ecglang prototypes build --records recs --out recs` replaced the records folder with the index (exit 0), and an
existing file given as `--out` was renamed to a hidden `.NAME.old`. `zero-shot --out FOLDER` and `evaluate --out
FILE` scored everything and then ended in a traceback, losing the scores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ecglang.cli.main import main
from ecglang.core.outputs import OutputPathError, check_output_file, check_output_folder, check_replaceable_folder


@pytest.fixture
def records(ptbxl_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "recs"
    folder.mkdir()
    for suffix in (".hea", ".dat"):
        shutil.copy(ptbxl_dir / "records500" / "00000" / f"00001_hr{suffix}", folder)
    (folder / "notes.txt").write_text("mine")
    return folder


def test_prototypes_never_replace_a_folder_of_other_files(records: Path, tmp_path: Path, capsys) -> None:
    before = sorted(p.name for p in records.iterdir())
    code = main(["prototypes", "build", "--records", str(records), "--out", str(records), "--num-workers", "0"])
    assert code == 1
    assert "holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in records.iterdir()) == before  # nothing deleted
    # a new folder, then the same index folder again: written and re-written
    index = tmp_path / "index"
    for _ in range(2):
        assert main(["prototypes", "build", "--records", str(records), "--out", str(index), "--num-workers", "0"]) == 0
    assert (index / "meta.json").is_file()
    # an index folder that a user added a file to is theirs now: refused, the file kept
    (index / "notes.txt").write_text("mine")
    assert main(["prototypes", "build", "--records", str(records), "--out", str(index), "--num-workers", "0"]) == 1
    assert (index / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "argv",
    [
        ["zero-shot", "{rec}", "--labels", "sinus rhythm", "--out", "{folder}"],
        ["zero-shot", "{rec}", "--labels", "sinus rhythm", "--out", "{file}/scores.csv"],
        ["zero-shot", "{rec}", "--labels", "sinus rhythm", "--failures", "{folder}"],
        ["zero-shot", "{rec}", "--labels", "sinus rhythm", "--plot", "{file}/fig.png"],
        ["evaluate", "--labels-csv", "{file}", "--records", "{folder}", "--out", "{file}"],
        ["prototypes", "build", "--records", "{rec}", "--out", "{file}"],
        ["knowledge", "build", "--out", "{file}"],
        ["data", "build", "physionet", "{folder}", "--out", "{file}"],
        ["pretrain", "--config", "smoke", "--output", "{file}"],
    ],
)
def test_a_bad_output_path_fails_when_the_command_is_read(argv: list[str], records: Path, capsys) -> None:
    plain = records / "notes.txt"
    args = [a.format(rec=records / "00001_hr.hea", folder=records, file=plain) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2  # a usage error, before any model or data is loaded
    err = capsys.readouterr().err
    assert "is a folder" in err or "is a file" in err or "is not a folder" in err, err
    assert plain.read_text() == "mine"


def test_output_checks(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert check_output_file(tmp_path / "new" / "deeper" / "a.csv") == tmp_path / "new" / "deeper" / "a.csv"
    assert check_output_folder(tmp_path / "f2") == tmp_path / "f2"
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(OutputPathError, match="is not a folder"):
        check_output_file(tmp_path / "f" / "a.csv")
    with pytest.raises(OutputPathError, match="holds other files"):
        check_replaceable_folder(tmp_path, lambda _: False, "index")
    assert check_replaceable_folder(tmp_path, lambda _: True, "index") == tmp_path

"""`ecglang prototypes build` and `ecglang zero-shot --prototypes`, end to end and offline (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecglang.cli.main import main


def test_build_then_zero_shot_with_prototypes(ptbxl_dir: Path, tmp_path: Path, capsys, one_torch_thread) -> None:
    folder = ptbxl_dir / "records500" / "00000"
    refs = [str(folder / r) for r in ("00002_hr", "00003_hr", "00004_hr")]
    index = tmp_path / "protos"
    assert main(["prototypes", "build", "--records", *refs, "--out", str(index), "--num-workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 records (3 with a report" in out and "ptbxl_database.csv" in out
    assert {p.name for p in index.iterdir()} == {
        "vectors.npy",
        "beat_record.npy",
        "beat_index.npy",
        "lead_mask.npy",
        "windows.f16",
        "records.jsonl",
        "meta.json",
    }

    plot, rows = tmp_path / "fig" / "ecg.png", tmp_path / "protos.json"
    code = main(["zero-shot", str(folder / "00001_hr"), "--knowledge", "off", "--prototypes", str(index),
                 "--prototype-k", "2", "--prototypes-out", str(rows), "--plot", str(plot)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "nearest prototypes of beat" in out
    table = json.loads(rows.read_text())
    assert len(table) == 2 and all(r["record"] == "00001_hr" for r in table)
    assert all(Path(r["path"]).samefile(folder / "00001_hr.hea") for r in table)  # the file, as in the scores CSV
    assert {r["prototype_record"] for r in table} <= {"00002_hr", "00003_hr", "00004_hr"}
    assert all(r["report"] and 0 < r["similarity"] <= 1 for r in table)
    assert plot.is_file() and (plot.parent / "ecg_prototypes.png").stat().st_size > 10_000


def test_zero_shot_without_prototypes_prints_none(ptbxl_dir: Path, capsys, one_torch_thread) -> None:
    folder = ptbxl_dir / "records500" / "00000"
    assert main(["zero-shot", str(folder / "00001_hr"), "--knowledge", "off"]) == 0
    assert "prototype" not in capsys.readouterr().out


def test_a_missing_index_is_one_error_line(ptbxl_dir: Path, tmp_path: Path, capsys) -> None:
    folder = ptbxl_dir / "records500" / "00000"
    code = main(["zero-shot", str(folder / "00001_hr"), "--knowledge", "off", "--prototypes", str(tmp_path / "none")])
    assert code == 1
    assert "not a readable prototype index" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["prototypes"], ["prototypes", "--help"]])
def test_help(argv, capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help
        code = exc.code
    out, err = capsys.readouterr()
    # --help, asked for, on stdout (status 0); no action is a usage error: the help on stderr (status 2)
    assert (code, "build" in out, "build" in err) == ((0, True, False) if "--help" in argv else (2, False, True))

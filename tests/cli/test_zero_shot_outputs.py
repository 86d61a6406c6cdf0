"""What `ecglang zero-shot` leaves on disk (an audit of the CLI): every file written before the tables are
printed (`| head` lost them all), a failures file that says this run's failures (an earlier run's list stayed
beside a clean re-run), a --failures folder created as --out's is, outputs that would overwrite each other
refused, options that do nothing without --prototypes refused, and --plot-max said when it leaves records out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ecglang.cli.main import main as cli

pytestmark = pytest.mark.shared_data


@pytest.fixture
def records(ptbxl_dir: Path, tmp_path: Path) -> Path:
    """Two PTB-XL records and one with a truncated signal file, in one folder."""
    folder = tmp_path / "recs"
    folder.mkdir()
    for i, name in enumerate(("00001_hr", "00002_hr", "00003_hr")):
        for ext in (".hea", ".dat"):
            data = (ptbxl_dir / "records500" / "00000" / f"{name}{ext}").read_bytes()
            (folder / f"{name}{ext}").write_bytes(data[:1000] if i == 2 and ext == ".dat" else data)
    return folder


def _base(model_dir: Path, *paths: Path) -> list[str]:
    return ["zero-shot", *map(str, paths), "--labels", "sinus rhythm", "atrial fibrillation", "--model",
            str(model_dir), "--knowledge", "off", "--no-progress"]  # fmt: skip


def test_a_reader_leaving_early_loses_no_file(model_dir: Path, records: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "s.csv"
    command = [sys.executable, "-m", "ecglang.cli.main", *_base(model_dir, records), "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.readline()  # what `| head -1` reads, then it is gone
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1, err  # a record failed: that, not the closed pipe, decides
    assert pd.read_csv(out)["record"].tolist() == ["00001_hr", "00002_hr"]
    failed = pd.read_csv(out.with_suffix(".failures.csv"))
    assert failed["record"].str.endswith("00003_hr.hea").all() and len(failed) == 1
    assert "1 record(s) failed" in err and "Traceback" not in err


def test_a_clean_rerun_leaves_no_earlier_failures(model_dir: Path, records: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "s.csv"
    assert cli([*_base(model_dir, records), "--out", str(out), "--quiet"]) == 1
    assert len(pd.read_csv(out.with_suffix(".failures.csv"))) == 1
    assert cli([*_base(model_dir, records / "00001_hr.hea"), "--out", str(out), "--quiet"]) == 0
    failures = pd.read_csv(out.with_suffix(".failures.csv"))
    assert failures.empty and list(failures.columns) == ["record", "path", "stage", "error"]


def test_a_failures_file_in_a_new_folder_is_written(model_dir: Path, records: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "new" / "deeper" / "f.csv"
    assert cli([*_base(model_dir, records), "--failures", str(path), "--quiet"]) == 1
    assert pd.read_csv(path)["path"].tolist() == [str(records / "00003_hr.hea")]
    assert f"failures: {path}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--out", "x.csv", "--failures", "x.csv"], "--failures and --out name the same file x.csv"),
        (["--out", "x.csv", "--prototypes-out", "x.failures.csv"], "--prototypes-out and --failures name the same"),
        (["--prototypes-out", "p.csv"], "--prototypes-out need(s) --prototypes DIR"),
        (["--prototype-k", "2"], "--prototype-k need(s) --prototypes DIR"),
    ],
)
def test_outputs_that_collide_and_options_that_do_nothing_are_usage_errors(
    model_dir: Path, records: Path, tmp_path: Path, monkeypatch, capsys, extra: list[str], said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli([*_base(model_dir, records), *extra]) == 2
    assert said in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recs"]  # nothing written, nothing scored


def test_plot_max_says_how_many_records_it_drew(model_dir: Path, records: Path, tmp_path: Path, capsys) -> None:
    assert cli([*_base(model_dir, records), "--plot", str(tmp_path / "fig.png"), "--plot-max", "1"]) == 1
    assert "plot: 1 of 2 records drawn (--plot-max)" in capsys.readouterr().err
    assert [p.name for p in tmp_path.glob("fig*.png")] == ["fig.png"]


def test_a_failure_names_its_file_once(model_dir: Path, tmp_path: Path, capsys) -> None:
    """`[read] /x/rec.npy: /x/rec.npy: NPY file without ...`: the record and the typed error's own prefix both
    named the file. The failures CSV keeps the full reason."""
    import numpy as np

    bad = tmp_path / "rec.npy"
    np.save(bad, np.zeros((12, 5000), np.float32))
    argv = ["zero-shot", str(bad), "--fs", "500", "--labels", "sinus rhythm", "--model", str(model_dir),
            "--knowledge", "off", "--no-progress", "--failures", str(tmp_path / "failed.csv")]  # fmt: skip
    assert cli(argv) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if line.strip().startswith("[read]"))
    assert (
        line.strip() == f"[read] {bad}: NPY file without its lead names (leads): pass fs=/leads= (CLI: --fs, --leads)"
    )
    assert pd.read_csv(tmp_path / "failed.csv")["error"][0].startswith(f"{bad}: NPY file")

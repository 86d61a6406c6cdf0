"""Scale audit 21, findings 4 and 5, in `ecglang data build`.

4: `ecglang data build pairs` printed nothing while it read and checked the pairs (60 s at 100,000 rows), though
`build_pairs` takes `progress`; and every shard's cache bar said "caching signals", whichever shard it was.
5: the records left out of the dataset were listed before the cache step (hours at scale, 16 bars after it), and
the output ended with "cache ...: 599 ok, 0 failed" and exit status 1: the reason for the 1 was far up.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.data.pairs import build_pairs
from ecglang.data.synthetic import write_mimic_like


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 MIMIC-shaped records; the first study's report row removed (a build failure, no cache failure)."""
    root = write_mimic_like(tmp_path_factory.mktemp("mimic21"), 12, seed=5)
    path = root / "machine_measurements.csv"
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows[:1] + rows[2:])
    return root


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """Exit status and the terminal's text (stdout and stderr in the order written, as a user sees them)."""
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(sys, "stderr", screen)
    status = cli(args)
    monkeypatch.undo()
    return status, screen.getvalue()


def test_records_left_out_are_listed_last_with_both_counts(
    mimic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(mimic_root), "--out", str(out), "--shard-size", "5", "--no-progress"]
    status, text = _run(args, monkeypatch)
    assert status == 1
    lines = [line for line in text.splitlines() if line.strip()]
    cache = next(i for i, line in enumerate(lines) if line.startswith("cache "))
    assert "11 ok, 0 failed" in lines[cache]
    listed = next(i for i, line in enumerate(lines) if "left out of the dataset (all listed in" in line)
    assert listed > cache, "\n".join(lines)  # before: listed before the cache step
    assert "no machine_measurements.csv row" in lines[listed + 1]
    last = lines[-1]
    assert last.startswith("failed ") and "1 record(s) left out of the dataset" in last
    assert "0 failed in the cache" in last and "exit status 1" in last and str(out / "build_failures.csv") in last


def test_both_lists_come_last_when_the_cache_fails_too(
    mimic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(shutil.copytree(mimic_root, tmp_path / "mimic"))
    dat = sorted(root.glob("files/*/*/*/*.dat"))[-1]
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated: a cache failure
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(root), "--out", str(out), "--shard-size", "5", "--no-progress"]
    status, text = _run(args, monkeypatch)
    assert status == 1
    lines = [line for line in text.splitlines() if line.strip()]
    order = [next(i for i, line in enumerate(lines) if found(line)) for found in (
        lambda line: line.startswith("cache "), lambda line: "left out of the dataset (all listed" in line,
        lambda line: "failed in the cache (all listed" in line, lambda line: line.startswith("failed "),
    )]  # fmt: skip
    assert order == sorted(order) and order[-1] == len(lines) - 1, "\n".join(lines)
    assert "1 record(s) left out of the dataset" in lines[-1] and "1 failed in the cache" in lines[-1]


def test_an_incomplete_cache_lists_the_build_failures_last(
    mimic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A builder that leaves shards to others (`--shard 0/2`)."""
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(mimic_root), "--out", str(out), "--shard-size", "5", "--no-progress"]
    status, text = _run([*args, "--shard", "0/2"], monkeypatch)
    assert status == 1
    lines = [line for line in text.splitlines() if line.strip()]
    still = next(i for i, line in enumerate(lines) if "still to build" in line)
    listed = next(i for i, line in enumerate(lines) if "left out of the dataset (all listed in" in line)
    assert still < listed and "1 record(s) left out of the dataset" in lines[-1], "\n".join(lines)


def test_each_shard_bar_names_its_shard(mimic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "prepared"
    assert cli(["data", "build", "mimic", str(mimic_root), "--out", str(out), "--shard-size", "5"]) == 1
    err = capsys.readouterr().err
    for k in range(3):
        assert f"caching shard-0000{k}-of-00003" in err, err  # before: three bars "caching signals"


def _pairs_csv(tmp_path: Path, n: int = 3) -> Path:
    signal = np.zeros((12, 5000), dtype=np.float32)
    with (tmp_path / "pairs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "report"])
        for k in range(n):
            np.savez(tmp_path / f"r{k}.npz", signal=signal, fs=500.0)
            writer.writerow([f"r{k}.npz", "sinus rhythm, normal ECG"])
    return tmp_path / "pairs.csv"


def test_build_pairs_shows_its_progress(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pairs = _pairs_csv(tmp_path)
    ds, _ = build_pairs(pairs, progress=True)
    err = capsys.readouterr().err
    assert len(ds) == 3 and "pairs rows" in err and "3/3" in err, err  # before: nothing
    build_pairs(pairs, progress=False)
    assert capsys.readouterr().err == ""


def test_data_build_pairs_shows_its_progress_unless_told_not_to(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pairs = _pairs_csv(tmp_path)
    assert cli(["data", "build", "pairs", str(pairs), "--out", str(tmp_path / "a"), "--no-cache"]) == 0
    assert "pairs rows" in capsys.readouterr().err
    args = ["data", "build", "pairs", str(pairs), "--out", str(tmp_path / "b"), "--no-cache", "--no-progress"]
    assert cli(args) == 0
    assert "pairs rows" not in capsys.readouterr().err

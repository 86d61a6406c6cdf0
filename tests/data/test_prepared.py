"""Prepared datasets (`ecglang data build` → `data.prepared`): shards, resume, locks, the fast WFDB reader."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.data.cache import SignalCache
from ecglang.data.fastread import read_plain_wfdb
from ecglang.data.mimic import build_mimic_ecg
from ecglang.data.prepared import LockHeld, PreparedDataset, build_shards, file_lock, prepare_table, read_manifest
from ecglang.data.synthetic import write_mimic_like
from ecglang.errors import ConfigError, EcgReadError
from ecglang.record.io import load_ecg
from ecglang.signal.preprocess import PreprocessConfig

N = 20
CFG = PreprocessConfig(target_samples=2500)


@pytest.fixture(scope="module")
def mimic_root(tmp_path_factory) -> Path:
    return write_mimic_like(tmp_path_factory.mktemp("mimic"), N, seed=3)


@pytest.fixture(scope="module")
def reference(mimic_root, tmp_path_factory) -> SignalCache:
    """One unsharded cache of all records, built through load_ecg only (no fast path)."""
    ds, _ = build_mimic_ecg(mimic_root, progress=False)
    return SignalCache.build(ds, tmp_path_factory.mktemp("ref") / "cache", CFG, progress=False)


def test_fast_reader_equals_load_ecg(mimic_root, ptbxl_dir):
    paths = sorted(mimic_root.glob("files/*/*/*/*.hea"))[:5] + sorted(Path(ptbxl_dir).glob("records500/*/*.hea"))[:5]
    assert len(paths) == 10
    for hea in paths:
        ecg = load_ecg(hea.with_suffix(""))
        signal, mask, fs = read_plain_wfdb(hea.with_suffix(""))
        np.testing.assert_array_equal(signal, ecg.signal)
        np.testing.assert_array_equal(mask, ecg.lead_mask)
        assert fs == ecg.fs


def test_fast_reader_declines_what_it_does_not_read(mimic_root, tmp_path):
    hea = sorted(mimic_root.glob("files/*/*/*/*.hea"))[0]
    base = tmp_path / hea.stem
    text = hea.read_text()
    dat = hea.with_suffix(".dat").read_bytes()
    (tmp_path / hea.name).write_text(text)
    (tmp_path / f"{hea.stem}.dat").write_bytes(dat[:1000])  # truncated: load_ecg must say so
    assert read_plain_wfdb(base) is None
    (tmp_path / f"{hea.stem}.dat").write_bytes(dat)
    (tmp_path / hea.name).write_text(text.replace(" 16 200(0)/mV", " 212 200(0)/mV"))  # another format
    assert read_plain_wfdb(base) is None


def test_sharded_build_on_two_nodes_equals_one_cache(mimic_root, reference, tmp_path):
    out = tmp_path / "prepared"
    table = prepare_table(out, "mimic", mimic_root, progress=False)
    assert table.built and len(table.dataset) == N
    first = build_shards(out, table.dataset, CFG, shard=(0, 2), shard_size=6, progress=False)
    assert [r.name for r in first] == ["shard-00000-of-00004", "shard-00002-of-00004"]
    with pytest.raises(EcgReadError, match="not built yet"):  # typed: one CLI error line, not a traceback
        PreparedDataset(out)
    again = prepare_table(out, "mimic", mimic_root, progress=False)  # the second node reuses the table
    assert not again.built
    second = build_shards(out, again.dataset, CFG, shard=(1, 2), shard_size=6, workers=2, progress=False)
    assert [r.status for r in second] == ["built", "built"]
    prepared = PreparedDataset(out)
    assert read_manifest(out)["complete"] and prepared.table["id"] == reference.ids
    cache = prepared.cache
    np.testing.assert_array_equal(cache.ok_rows, reference.ok_rows)
    for row in range(N):
        np.testing.assert_array_equal(cache[row][0], reference[row][0])  # workers and shards change nothing
    # A different config in the same folder is refused, not mixed in; the message names the setting.
    with pytest.raises(ConfigError, match=r"other settings .*: preprocess\.target_samples: 2500 → 5000; use another"):
        build_shards(out, again.dataset, PreprocessConfig(), shard_size=6, progress=False)


def test_interrupted_shard_resumes(mimic_root, reference, tmp_path):
    out = tmp_path / "prepared"
    table = prepare_table(out, "mimic", mimic_root, progress=False).dataset
    manifest_shards = build_shards(out, table, CFG, shard=(1, 2), shard_size=10, progress=False)  # shard 1 only
    assert [r.status for r in manifest_shards] == ["built"]
    entry = read_manifest(out)["shards"][0]
    records = list(zip(table["id"][:10], table["path"][:10], strict=True))

    def stop(n_done, n):
        raise KeyboardInterrupt  # a real interruption after the first batch is on disk

    with pytest.raises(KeyboardInterrupt):
        SignalCache.build(records, out / entry["dir"], CFG, batch_size=4, progress=False, on_batch=stop)
    results = build_shards(out, table, CFG, shard_size=10, progress=False)
    assert [r.status for r in results] == ["resumed", "done"]
    for row in range(N):
        np.testing.assert_array_equal(PreparedDataset(out).cache[row][0], reference[row][0])


def test_locks_keep_builders_apart_and_stale_locks_are_taken(mimic_root, tmp_path):
    out = tmp_path / "prepared"
    table = prepare_table(out, "mimic", mimic_root, progress=False).dataset
    (out / "shards").mkdir()
    live = out / "shards" / "shard-00000-of-00002.lock"
    live.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # a live builder (this test)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / "shards" / "shard-00001-of-00002.lock"
    stale.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))  # its owner has exited
    results = build_shards(out, table, CFG, shard_size=10, progress=False)
    assert [(r.name, r.status) for r in results] == [
        ("shard-00000-of-00002", "locked"),
        ("shard-00001-of-00002", "built"),
    ]
    assert live.exists() and not stale.exists()  # the held lock is left alone, the stale one taken and released
    assert not (out / "shards" / "shard-00000-of-00002").exists()  # nothing written under another's lock
    with pytest.raises(LockHeld, match="held by pid"), file_lock(live):
        pass
    live.unlink()
    assert [r.status for r in build_shards(out, table, CFG, shard_size=10, progress=False)] == ["built", "done"]


def test_cli_build_shards_then_complete(mimic_root, tmp_path, capsys):
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(mimic_root), "--out", str(out), "--shard-size", "8", "--workers", "2"]
    assert cli([*args, "--shard", "0/2"]) == 0
    printed = capsys.readouterr().out
    assert "shard-00000-of-00003: built" in printed and "still to build: shard-00001-of-00003" in printed
    assert cli([*args, "--shard", "1/2"]) == 0
    printed = capsys.readouterr().out
    assert "dataset   reused" in printed and f"{N} ok, 0 failed" in printed
    manifest = read_manifest(out)
    assert manifest["complete"] and [e["n_ok"] for e in manifest["shards"]] == [8, 8, 4]
    for bad, message in [("2/2", "need 0 <= i < N"), ("abc", "--shard must be i/N")]:
        assert cli([*args, "--shard", bad]) == 2  # a usage error, as data build's other flag conflicts
        last = capsys.readouterr().err.splitlines()[-1]
        assert last.startswith("ecglang data build: error: ") and message in last


@pytest.mark.parametrize("source", ["physionet-empty", "ptbxl-folds-9-10"])
def test_a_build_with_no_record_is_a_clear_error(source: str, ptbxl_dir: Path, tmp_path: Path, capsys) -> None:
    """An empty folder, or PTB-XL folds that no record of the sample is in, ended in datasets' `IndexError:
    list index out of range` traceback from saving an empty table."""
    if source == "physionet-empty":
        (tmp_path / "empty").mkdir()
        argv = ["data", "build", "physionet", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]
    else:
        argv = ["data", "build", "ptbxl", str(ptbxl_dir), "--out", str(tmp_path / "out"), "--folds", "9-10"]
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "no record to build" in err and "Traceback" not in err


def _pairs_csv(path: Path, records: list[Path]) -> Path:
    rows = "".join(f"{r},sinus rhythm. normal ecg.,r{i}\n" for i, r in enumerate(records))
    path.write_text("path,report,id\n" + rows)
    return path


def test_a_changed_input_is_refused_not_reused(mimic_root: Path, tmp_path: Path, capsys) -> None:
    """Was: rows added to the pairs file (or records moved) and the same command again reused the old table,
    said so in one line, and exited 0; the folder now keeps a fingerprint of its input in table.json."""
    records = [h.with_suffix("") for h in sorted(mimic_root.glob("files/*/*/*/*.hea"))[:4]]
    pairs = _pairs_csv(tmp_path / "mine.csv", records[:2])
    out = tmp_path / "prepared"
    argv = ["data", "build", "pairs", str(pairs), "--out", str(out), "--no-cache", "--no-progress"]
    assert cli(argv) == 0
    assert cli(argv) == 0 and "dataset   reused" in capsys.readouterr().out  # the same input: reused
    _pairs_csv(pairs, records)  # two rows more
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {out}: the input changed since this folder's table was built ({pairs}: " in err
    assert "--out NEW" in err and "Traceback" not in err
    assert json.loads((out / "table.json").read_text())["n_rows"] == 2

    # a records folder: its listing is the input
    folder = tmp_path / "cinc"
    folder.mkdir()
    for r in records[:2]:
        for ext in (".hea", ".dat"):
            (folder / (r.name + ext)).write_bytes(r.with_name(r.name + ext).read_bytes())
    out2 = tmp_path / "prepared2"
    argv = ["data", "build", "physionet", str(folder), "--out", str(out2), "--no-cache", "--no-progress"]
    assert cli(argv) == 0
    for ext in (".hea", ".dat"):
        (folder / (records[2].name + ext)).write_bytes(records[2].with_name(records[2].name + ext).read_bytes())
    assert cli(argv) == 1
    assert f"the files in {folder}: 4 files then, 6 now" in capsys.readouterr().err


def test_a_table_from_before_fingerprints_is_reused_with_a_note(mimic_root: Path, tmp_path: Path, capsys) -> None:
    records = [h.with_suffix("") for h in sorted(mimic_root.glob("files/*/*/*/*.hea"))[:2]]
    pairs = _pairs_csv(tmp_path / "mine.csv", records)
    out = tmp_path / "prepared"
    argv = ["data", "build", "pairs", str(pairs), "--out", str(out), "--no-cache", "--no-progress"]
    assert cli(argv) == 0
    meta = json.loads((out / "table.json").read_text())
    del meta["inputs"]  # as an older ecglang wrote it
    (out / "table.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert cli(argv) == 0
    assert "kept no fingerprint of its input" in capsys.readouterr().out


def test_no_progress_silences_the_table_save_bar_too(mimic_root: Path, tmp_path: Path, capsys) -> None:
    """`data build --no-progress` still drew the `datasets` library's "Saving the dataset" bar (a docs audit's
    finding); now only a build with progress draws it, and the library's setting is restored afterwards."""
    import datasets  # here: only this test reads the library's own switch

    argv = ["data", "build", "mimic", str(mimic_root), "--no-cache"]
    assert cli([*argv, "--out", str(tmp_path / "quiet"), "--no-progress"]) == 0
    assert "Saving the dataset" not in capsys.readouterr().err
    assert not datasets.are_progress_bars_disabled()  # restored
    assert cli([*argv, "--out", str(tmp_path / "loud")]) == 0
    assert "Saving the dataset" in capsys.readouterr().err  # the check can see the bar

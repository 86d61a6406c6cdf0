"""Signal cache: format, failures, resuming after a kill or a damaged progress file, O(batch) reads."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import wfdb

from ecglang.data.cache import (
    INDEX_FILE,
    META_FILE,
    PROGRESS_FILE,
    SIGNALS_FILE,
    SignalCache,
    sha256_json,
)
from ecglang.data.ptbxl import build_ptbxl
from ecglang.errors import ConfigError, EcgReadError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.preprocess import PreprocessConfig, preprocess, preprocess_array

T = 2000
CFG = PreprocessConfig(target_samples=T)
N_GOOD = 23
BAD_ROW = 5


def write_record(folder: Path, name: str, n: int, fs: int, seed: int, flat_lead: int | None = None) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    sig = np.stack(
        [np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * t) + 0.05 * rng.standard_normal(n) for _ in range(12)], 1
    )
    if flat_lead is not None:
        sig[:, flat_lead] = 0.0
    wfdb.wrsamp(
        name, fs=fs, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), p_signal=sig, fmt=["16"] * 12,
        write_dir=str(folder),
    )  # fmt: skip
    return folder / name


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[tuple[str, str]]:
    """24 generated records: varied lengths and rates, one flat lead, and one corrupt record (row 5)."""
    folder = tmp_path_factory.mktemp("records")
    pairs = []
    for i in range(N_GOOD + 1):
        name = f"r{i:03d}"
        if i == BAD_ROW:
            path = write_record(folder, name, 1500, 500, i)
            Path(str(path) + ".dat").write_bytes(b"\x00\x01" * 7)  # truncated signal file
        else:
            n, fs = [(1500, 500), (2600, 500), (1200, 250)][i % 3]
            path = write_record(folder, name, n, fs, i, flat_lead=4 if i == 7 else None)
        pairs.append((f"id{i}", str(path)))
    return pairs


@pytest.fixture(scope="module")
def clean(records, tmp_path_factory) -> SignalCache:
    return SignalCache.build(records, tmp_path_factory.mktemp("clean") / "cache", CFG, batch_size=4, progress=False)


def assert_same_cache(a: SignalCache, b: SignalCache) -> None:
    assert a.shape == b.shape
    np.testing.assert_array_equal(np.asarray(a._signals), np.asarray(b._signals))
    np.testing.assert_array_equal(np.asarray(a._mask), np.asarray(b._mask))
    pd.testing.assert_frame_equal(a.index, b.index)


def test_format_and_contents(clean, records):
    d = clean.directory
    n = len(records)
    assert (d / SIGNALS_FILE).stat().st_size == n * 12 * T * 2  # float16
    meta = json.loads((d / META_FILE).read_text())
    assert meta["shape"] == [n, 12, T] and meta["dtype"] == "float16" and meta["complete"] is True
    assert meta["config_sha256"] == sha256_json(CFG.to_dict())
    assert meta["n_ok"] == N_GOOD and meta["n_failed"] == 1
    assert PreprocessConfig.from_dict(meta["preprocess"]) == CFG
    index = pd.read_parquet(d / INDEX_FILE)
    assert list(index.columns) == ["row", "id", "path", "status", "reason", "quality"]
    assert index["id"].tolist() == [i for i, _ in records]
    assert len(clean) == n and clean.fs == 500.0 and clean.config == CFG

    # Each row is exactly the preprocessed record rounded to float16.
    for row in (0, 1, 2, 7):
        ecg = load_ecg(records[row][1])
        sig, mask, _ = preprocess_array(ecg.signal, ecg.fs, ecg.lead_mask, CFG, rng=np.random.default_rng([0, row]))
        got, got_mask = clean[row]
        assert got.dtype == np.float32 and got.shape == (12, T)
        np.testing.assert_array_equal(got, sig.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(got_mask, mask)
    # The flat lead of record 7 is masked, and its quality flag kept in the index.
    assert not clean[7][1][4] and clean[7][1].sum() == 11
    assert "flat" in json.loads(index.loc[7, "quality"])["aVL"]


def test_failed_record_is_listed_not_dropped(clean, records):
    fails = clean.failures
    assert fails["row"].tolist() == [BAD_ROW] and fails["id"].tolist() == [f"id{BAD_ROW}"]
    assert records[BAD_ROW][1] in fails["reason"].iloc[0]
    assert BAD_ROW not in clean.ok_rows and len(clean.ok_rows) == N_GOOD
    with pytest.raises(EcgReadError, match=f"row {BAD_ROW} .* failed when built"):
        clean[BAD_ROW]
    assert not np.asarray(clean._signals[BAD_ROW]).any()
    assert clean.row_of(f"id{BAD_ROW + 1}") == BAD_ROW + 1


def test_rebuild_of_complete_cache_does_nothing(clean, records):
    again = SignalCache.build(records, clean.directory, CFG, batch_size=4, progress=False)
    assert again.build_stats.n_processed == 0 and again.build_stats.resumed


def test_truncated_progress_file_is_repaired(clean, records, tmp_path):
    d = tmp_path / "damaged"
    shutil.copytree(clean.directory, d)
    keep = 10
    with open(d / PROGRESS_FILE, "r+b") as f:
        f.truncate(keep)
    # Rows past the truncation were "never written": zero them so that only a real recompute matches.
    sig = np.memmap(d / SIGNALS_FILE, dtype=np.float16, mode="r+", shape=(len(records), 12, T))
    sig[keep:] = 0
    sig.flush()
    del sig
    rebuilt = SignalCache.build(records, d, CFG, batch_size=4, progress=False)
    assert rebuilt.build_stats.n_processed == len(records) - keep
    assert any("progress file covers 10 of 24" in r for r in rebuilt.build_stats.repaired)
    assert_same_cache(rebuilt, clean)


KILL_SCRIPT = """
import json, os, signal, sys
from ecglang.data.cache import SignalCache
from ecglang.signal.preprocess import PreprocessConfig
pairs = [tuple(p) for p in json.load(open(sys.argv[1]))]
def die(done, n):
    if done >= 8:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: a real crash
cfg = PreprocessConfig(target_samples=%d)
SignalCache.build(pairs, sys.argv[2], cfg, batch_size=4, progress=False, on_batch=die)
"""


def test_build_killed_midway_resumes_to_identical_cache(clean, records, tmp_path):
    (tmp_path / "pairs.json").write_text(json.dumps(records))
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT % T, str(tmp_path / "pairs.json"), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    progress = np.fromfile(out / PROGRESS_FILE, dtype=np.uint8)
    assert (progress > 0).sum() == 8
    with pytest.raises(EcgReadError, match="incomplete"):
        SignalCache.open(out)
    resumed = SignalCache.build(records, out, CFG, batch_size=4, progress=False)
    assert resumed.build_stats.resumed and resumed.build_stats.n_processed == len(records) - 8
    assert_same_cache(resumed, clean)


def test_different_config_is_refused_unless_overwrite(clean, records, tmp_path):
    d = tmp_path / "c"
    shutil.copytree(clean.directory, d)
    other = PreprocessConfig(target_samples=T, bandpass=(1.0, 30.0))
    with pytest.raises(ConfigError, match="config_sha256"):
        SignalCache.build(records, d, other, progress=False)
    with pytest.raises(ConfigError, match="records_sha256"):
        SignalCache.build(records[:-1], d, CFG, progress=False)
    rebuilt = SignalCache.build(records[:3], d, other, overwrite=True, progress=False)
    assert rebuilt.shape == (3, 12, T) and rebuilt.build_stats.n_processed == 3


def test_bad_arguments(records, tmp_path):
    with pytest.raises(ConfigError, match="fixed length"):
        SignalCache.build(records, tmp_path / "a", PreprocessConfig(target_samples=None))
    with pytest.raises(ConfigError, match="duplicate record id"):
        SignalCache.build([("x", records[0][1]), ("x", records[1][1])], tmp_path / "b")
    with pytest.raises(ConfigError, match="no records"):
        SignalCache.build([], tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / SIGNALS_FILE).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"no cache_meta\.json"):
        SignalCache.build(records, tmp_path / "d", CFG)
    with pytest.raises(EcgReadError, match="not a signal cache"):
        SignalCache.open(tmp_path / "b")


def test_workers_give_the_same_cache(clean, records, tmp_path):
    par = SignalCache.build(records, tmp_path / "par", CFG, batch_size=6, num_workers=2, progress=False)
    assert_same_cache(par, clean)


def test_a_ctrl_c_reaching_the_workers_leaves_the_build_to_the_builder(clean, records, tmp_path):
    """A Ctrl-C sends SIGINT to the whole process group: the builder stops in order (its KeyboardInterrupt, the
    tasks not started cancelled, the pool shut down), and the workers must not act on their copy. Workers that
    did died at random points of the queue: BrokenProcessPool, or (CPython 3.11) the pool's manager thread failing
    on a cancelled future, after which the builder hung at exit waiting for the surviving worker (seen in 3 of 15
    interrupted builds). Here each worker gets SIGINT after the first batch, as a Ctrl-C delivers it to them, and
    the build goes on to the end: only the builder decides to stop."""
    import multiprocessing
    import os
    import signal

    many = [(f"{rid}-{k}", path) for k in range(10) for rid, path in records]  # more rows than the window

    def interrupt_workers(n_done: int, _: int) -> None:
        if n_done == 6:
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGINT)

    try:
        par = SignalCache.build(many, tmp_path / "par", CFG, batch_size=6, num_workers=2, progress=False,
                                on_batch=interrupt_workers)  # fmt: skip
    except BaseException as exc:  # a KeyboardInterrupt must not stop the whole test session
        pytest.fail(f"the workers acted on SIGINT: {type(exc).__name__}: {exc}")
    assert len(par) == len(many)
    for row in range(0, len(many), 7):
        if row % len(records) != BAD_ROW:
            np.testing.assert_array_equal(par[row][0], clean[row % len(records)][0])


def test_path_list_and_dataset_inputs(records, tmp_path):
    paths = [p for _, p in records[:3]]
    by_paths = SignalCache.build(paths, tmp_path / "p", CFG, progress=False)
    assert by_paths.ids == ["r000", "r001", "r002"]
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "path": paths[:2], "report": ["x", "y"]})
    by_ds = SignalCache.build(ds, tmp_path / "ds", CFG, progress=False)
    assert by_ds.ids == ["a", "b"]
    np.testing.assert_array_equal(by_ds[1][0], by_paths[1][0])


def test_reads_are_o_batch_and_work_with_torch(clean):
    import torch
    from torch.utils.data import DataLoader

    blob = pickle.dumps(clean)
    assert len(blob) < 1000  # the memory maps are not pickled, only the folder
    assert len(pickle.loads(blob)) == len(clean)

    full_f32 = len(clean) * 12 * T * 4
    batch_f32 = 4 * 12 * T * 4
    tracemalloc.start()
    for start in range(0, len(clean.ok_rows), 4):
        signals, _ = clean.get_batch(clean.ok_rows[start : start + 4])
        assert signals.shape[1:] == (12, T)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Two live batches (the old one is freed when the new one is assigned) plus the float16 gather.
    assert peak < 3 * batch_f32 < full_f32, (peak, batch_f32, full_f32)

    loader = DataLoader(clean.torch_dataset(), batch_size=5, num_workers=1, shuffle=False)
    batches = list(loader)
    assert sum(len(b["row"]) for b in batches) == N_GOOD
    assert batches[0]["signal"].dtype == torch.float32 and batches[0]["signal"].shape == (5, 12, T)
    assert batches[0]["lead_mask"].dtype == torch.bool
    expected, _ = clean.get_batch(clean.ok_rows[:5])
    np.testing.assert_array_equal(batches[0]["signal"].numpy(), expected)


def test_real_ptbxl_records(ptbxl_dir, tmp_path):
    ds, _ = build_ptbxl(ptbxl_dir, progress=False)
    ds = ds.select(range(4))
    cache = SignalCache.build(ds, tmp_path / "ptbxl", PreprocessConfig(), batch_size=2, progress=False)
    assert cache.shape == (4, 12, 5000) and len(cache.ok_rows) == 4 and cache.ids == ds["id"]
    ref = preprocess(load_ecg(ds[2]["path"]), PreprocessConfig())
    sig, mask = cache[2]
    np.testing.assert_allclose(sig, ref.signal, atol=0.02, rtol=2e-3)  # float16 rounding only
    np.testing.assert_array_equal(mask, ref.lead_mask)


def test_cli_data_build_writes_dataset_failures_and_cache(ptbxl_dir, tmp_path, capsys):
    from ecglang.cli.main import main

    out = tmp_path / "built"
    assert (
        main(
            [
                "data",
                "build",
                "ptbxl",
                str(ptbxl_dir),
                "--out",
                str(out),
                "--folds",
                "3",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "353 metadata rows → 34 records" in printed and "34 ok, 0 failed" in printed
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert len(ds) == 34 and set(ds["fold"]) == {3}
    assert (out / "build_failures.csv").read_text().splitlines() == ["record_id,path,reason"]
    cache = SignalCache.open(out / "cache")
    assert cache.ids == ds["id"] and cache.shape == (34, 12, 5000)
    assert pd.read_csv(out / "cache_failures.csv").empty

    # the command line alone is wrong: a usage error (exit 2), as data build's other flag conflicts
    assert main(["data", "build", "cpsc2018", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "ecglang data build: error: cpsc2018 needs --reference" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    # --preprocess JSON: a missing file, broken JSON and a bad setting are one error line naming the file.
    settings = tmp_path / "pre.json"
    build = ["data", "build", "ptbxl", str(ptbxl_dir), "--out", str(tmp_path / "y"), "--preprocess", str(settings)]
    for text, expected in [(None, "cannot read --preprocess JSON"), ("{not json", "cannot read --preprocess JSON"),
                           ('{"target_fs": 2e6}', "target_fs")]:  # fmt: skip
        if text is not None:
            settings.write_text(text)
        assert main(build) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: {settings}") and expected in err, err


def test_an_index_that_decompresses_far_beyond_its_rows_is_refused(clean, tmp_path):
    """A cache folder is data: its index.parquet, 51 KB of zstd holding a 1.5 GB quality string, took 5.3 GB when
    the cache was opened. The footer's sizes are read first; an index of another row count is refused too."""
    folder = tmp_path / "cache"
    shutil.copytree(clean.directory, folder)
    index = pd.read_parquet(folder / INDEX_FILE)
    index.loc[0, "quality"] = "x" * 20_000_000
    index.to_parquet(folder / INDEX_FILE, compression="zstd")
    assert (folder / INDEX_FILE).stat().st_size < 100_000
    with pytest.raises(EcgReadError, match=r"index\.parquet: .* MB decompressed, for a cache of \d+ records"):
        SignalCache.open(folder)
    index.iloc[:3].assign(quality="{}").to_parquet(folder / INDEX_FILE)
    with pytest.raises(EcgReadError, match=r"index\.parquet: 3 rows"):
        SignalCache.open(folder)

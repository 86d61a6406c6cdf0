"""Signal cache at scale: one bad record never stops a build, and the builder's memory does not grow with the rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ecglang.data.cache import SIGNALS_FILE, SignalCache
from ecglang.data.fastread import read_plain_wfdb
from ecglang.data.synthetic import synthetic_signal, write_wfdb_record
from ecglang.errors import ConfigError
from ecglang.signal.preprocess import PreprocessConfig

CFG = PreprocessConfig(target_samples=1000)


def write_records(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    bases = [folder / f"r{i:03d}" for i in range(n)]
    for base in bases:
        write_wfdb_record(base, synthetic_signal(rng))
    return bases


def test_header_naming_its_signal_file_in_a_subfolder_fails_its_row_not_the_build(tmp_path):
    """`Path.with_name('sub/x.dat')` raised ValueError out of `read_plain_wfdb`: one such header stopped the whole
    cache build (a MIMIC-scale `ecglang data build` with a traceback, nothing listed)."""
    bases = write_records(tmp_path, 4)
    hea = bases[2].with_name(bases[2].name + ".hea")
    hea.write_text(hea.read_text().replace("r002.dat", "sub/r002.dat"), encoding="ascii")
    assert read_plain_wfdb(bases[2]) is None  # not plain: load_ecg reads it or says why not
    cache = SignalCache.build([str(b) for b in bases], tmp_path / "cache", CFG, batch_size=2, progress=False)
    assert cache.build_stats is not None and (cache.build_stats.n_ok, cache.build_stats.n_failed) == (3, 1)
    failed = cache.failures
    assert failed["row"].tolist() == [2]
    assert "r002" in failed["reason"].iloc[0]
    assert cache.get_batch([0, 1, 3])[0].shape == (3, 12, 1000)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc/self/maps (Linux)")
def test_build_writes_rows_without_mapping_the_signal_file(tmp_path):
    """Rows written through a memory map of `signals.f16` stayed in the builder's resident set: peak RSS grew by
    ~115 kB a record (8,000 rows: 1.07 GB of file pages against 0.38 GB at 2,000); a 50,000-row shard ~6 GB."""
    bases = write_records(tmp_path, 6)
    mapped: list[bool] = []

    def look(*_: int) -> None:
        maps = Path("/proc/self/maps").read_text()
        mapped.append(any(line.endswith(SIGNALS_FILE) for line in maps.splitlines()))

    cache = SignalCache.build([str(b) for b in bases], tmp_path / "cache", CFG, batch_size=2, progress=False,
                              on_batch=look)  # fmt: skip
    assert mapped == [False, False, False]
    # the rows written are the records' preprocessed signals, in order
    again = SignalCache.build([str(b) for b in bases[::-1]], tmp_path / "reversed", CFG, progress=False)
    np.testing.assert_array_equal(cache.get_batch(range(6))[0], again.get_batch(range(5, -1, -1))[0])


def test_duplicate_id_names_both_rows_and_paths(tmp_path):
    """The first repeated id was found with `ids.count` per id (40,000 records: 20 s before the error; MIMIC-scale:
    hours) and the message named neither row nor file."""
    pairs = [(str(i), f"/data/r{i}") for i in range(1000)] + [("999", "/data/other/r999")]
    with pytest.raises(ConfigError, match=r"duplicate record id '999' at rows 999 \(/data/r999\) and 1000 "
                                          r"\(/data/other/r999\)"):  # fmt: skip
        SignalCache.build(pairs, tmp_path / "cache", CFG, progress=False)
    assert not (tmp_path / "cache").exists()  # refused before anything is written


def test_reusing_a_complete_cache_writes_nothing(tmp_path):
    """`build` on a complete cache (a second training run on the same data: the default cache folder is shared)
    marked it incomplete and rewrote its index: another process opening it meanwhile failed with "cache build is
    incomplete" (20,000 rows: 2,914 of 3,128 openings failed during the 1.9 s call)."""
    bases = [str(b) for b in write_records(tmp_path, 3)]
    d = tmp_path / "cache"
    SignalCache.build(bases, d, CFG, progress=False)
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in d.iterdir()}
    again = SignalCache.build(bases, d, CFG, progress=False)
    assert again.build_stats is not None and (again.build_stats.n_processed, again.build_stats.n_ok) == (0, 3)
    assert {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in d.iterdir()} == before
    # a complete cache that is damaged is still repaired, not served
    with open(d / SIGNALS_FILE, "r+b") as f:
        f.truncate(100)
    repaired = SignalCache.build(bases, d, CFG, progress=False)
    assert repaired.build_stats is not None and repaired.build_stats.n_processed == 3
    fresh = SignalCache.build(bases, tmp_path / "fresh", CFG, progress=False)
    np.testing.assert_array_equal(repaired.get_batch([0, 1, 2])[0], fresh.get_batch([0, 1, 2])[0])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

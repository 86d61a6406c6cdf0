"""Prepared folders and signal caches travel between machines: a truncated, hand-edited or foreign
`manifest.json`, `table.json` or `cache_meta.json` is a typed `EcgReadError` naming that file, raised when the
folder is opened (not an `AttributeError`/`KeyError`/`TypeError` there or later, and never accepted: a NaN
sampling rate used to open, a shard folder outside the dataset was reported as "not built yet")."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ecglang.data.cache import SignalCache
from ecglang.data.prepared import LockHeld, PreparedDataset, build_shards, file_lock, prepare_table
from ecglang.data.synthetic import write_mimic_like
from ecglang.errors import EcgReadError
from ecglang.signal.preprocess import PreprocessConfig


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-prepared")
    mimic = write_mimic_like(root / "mimic", 6, seed=1)
    out = root / "prep"
    table = prepare_table(out, "mimic", mimic, progress=False)
    build_shards(out, table.dataset, PreprocessConfig(target_samples=2500), shard_size=3, progress=False)
    PreparedDataset(out)  # a sound folder opens
    return out


@pytest.fixture
def folder(prepared: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "prep"
    shutil.copytree(prepared, copy)
    return copy


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def _shard(folder: Path) -> Path:
    return folder / _manifest(folder)["shards"][0]["dir"]


def _edit(path: Path, change: Callable[[dict[str, Any]], Any] | str) -> None:
    text = change if isinstance(change, str) else json.dumps(change(json.loads(path.read_text())))
    path.write_text(text)


def _first_shard(manifest: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**manifest, "shards": [{**manifest["shards"][0], **changes}, *manifest["shards"][1:]]}


MANIFEST_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any] | str, str]] = {
    "a list": (lambda m: [1, 2], "expected a JSON object"),
    "broken JSON": ("{", "corrupt manifest"),
    "another format": (lambda m: {**m, "format": "zip"}, "not a prepared-dataset manifest"),
    "no shards": (lambda m: {k: v for k, v in m.items() if k != "shards"}, "'shards'"),
    "shards not a list": (lambda m: {**m, "shards": 5}, "'shards'"),
    "n_rows a string": (lambda m: {**m, "n_rows": "6"}, "'n_rows'"),
    "a shard outside": (lambda m: _first_shard(m, dir="../../etc"), "inside"),
    "an absolute shard": (lambda m: _first_shard(m, dir="/etc"), "inside"),
    "stop past n_rows": (lambda m: _first_shard(m, stop=99), "'stop'"),
    "preprocess a string": (lambda m: {**m, "preprocess": "x"}, "'preprocess'"),
    "preprocess at 2 MHz": (lambda m: {**m, "preprocess": {**m["preprocess"], "target_fs": 2e6}}, "target_fs"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_a_bad_manifest_is_a_read_error_naming_it(folder: Path, case: str) -> None:
    change, words = MANIFEST_CASES[case]
    _edit(folder / "manifest.json", change)
    with pytest.raises(EcgReadError) as info:
        PreparedDataset(folder)
    assert info.value.path == str(folder / "manifest.json")
    assert words in info.value.problem, info.value.problem


CACHE_CASES: dict[str, tuple[Callable[[dict[str, Any]], Any] | str, str]] = {
    "a list": (lambda m: [1], "expected a JSON object"),
    "shape a string": (lambda m: {**m, "shape": "abc"}, "'shape'"),
    "shape of floats": (lambda m: {**m, "shape": [3.0, 12, 2500]}, "'shape'"),
    "fs NaN": ('{"fs": NaN}', "NaN"),
    "fs zero": (lambda m: {**m, "fs": 0}, "'fs'"),
    "fs a string": (lambda m: {**m, "fs": "500"}, "'fs'"),
    "no preprocess": (lambda m: {k: v for k, v in m.items() if k != "preprocess"}, "'preprocess'"),
    "preprocess fs a word": (lambda m: {**m, "preprocess": {**m["preprocess"], "target_fs": "fast"}}, "target_fs"),
}


@pytest.mark.parametrize("case", list(CACHE_CASES))
def test_bad_cache_metadata_is_a_read_error_naming_it(folder: Path, case: str) -> None:
    change, words = CACHE_CASES[case]
    meta = _shard(folder) / "cache_meta.json"
    _edit(meta, change)
    with pytest.raises(EcgReadError) as info:
        SignalCache.open(meta.parent)
    assert info.value.path == str(meta)
    assert words in info.value.problem, info.value.problem


@pytest.mark.parametrize("change", [lambda m: [m], lambda m: {**m, "n_failures": "none"}], ids=["a list", "a word"])
def test_bad_table_metadata_is_a_read_error_naming_it(folder: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    root = Path(json.loads((folder / "table.json").read_text())["root"])
    _edit(folder / "table.json", change)
    with pytest.raises(EcgReadError) as info:
        prepare_table(folder, "mimic", root, progress=False, wait_s=0.0)
    assert info.value.path == str(folder / "table.json")


def test_a_foreign_lock_file_is_judged_by_its_age(folder: Path) -> None:
    """A lock that holds a JSON list (not one we wrote) is treated like an empty one, not an AttributeError."""
    lock = folder / "shards" / "foreign.lock"
    lock.write_text("[1, 2]")
    with pytest.raises(LockHeld):  # fresh: taken to be being written right now
        with file_lock(lock, stale_after=60.0):
            pass
    with file_lock(lock, stale_after=0.0):  # stale: taken over
        assert json.loads(lock.read_text())["pid"] > 0


@pytest.mark.parametrize("pid", [-1, 0, "abc", None, 2**80], ids=["-1", "0", "a word", "none", "too large"])
def test_a_lock_of_this_host_without_a_real_pid_goes_stale(folder: Path, pid: object) -> None:
    """os.kill(-1, 0) succeeds (it signals every process we may), so such a lock was alive for ever."""
    lock = folder / "shards" / "odd.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))
    with file_lock(lock, stale_after=0.0):
        assert json.loads(lock.read_text())["pid"] > 0


def test_cache_failures_csv_is_never_seen_half_written(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two nodes finishing the last shards together: one read cache_failures.csv while the other rewrote it in
    place (an empty file, pandas' EmptyDataError, seen in the two-node CI test). Here every CSV write stops half
    way and checks that the published file still reads whole."""
    import io

    import pandas as pd

    from ecglang.data.prepared import update_manifest

    target = folder / "cache_failures.csv"
    real = pd.DataFrame.to_csv

    def half_then_check(self: pd.DataFrame, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        buffer = io.StringIO()
        real(self, buffer, *args, **kwargs)
        text = buffer.getvalue()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text[: len(text) // 2])
            fh.flush()
            if target.exists():
                assert list(pd.read_csv(target).columns) == ["row", "id", "path", "reason"]
            fh.write(text[len(text) // 2 :])

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_check)
    update_manifest(folder)
    assert list(pd.read_csv(target).columns) == ["row", "id", "path", "reason"]
    assert not list(folder.glob(".cache_failures.csv.*"))

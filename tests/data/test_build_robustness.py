"""`ecglang data build` at scale, when things go wrong around it: a table build that outlives `--stale-after`, a
builder stopped by SIGTERM or SIGKILL, and a `--shard i/N` node whose own shards had cache failures."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import datasets
import pytest

from ecglang.cli.main import main as cli
from ecglang.data import prepared
from ecglang.data.registry import DatasetSpec
from ecglang.data.synthetic import write_mimic_like


# -- the table lock -------------------------------------------------------------------------------------
def test_a_live_table_build_is_not_taken_over_by_another_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table lock kept its creation time for the whole table build (an hour and more for MIMIC), so a builder
    on another host took a live build over after `stale_after` and built the table a second time into the same
    folder. Builder A here holds the lock as "another host" (its content says so) and builds for 3 s, over 7 times
    `stale_after`; builder B must wait for it and reuse its table."""
    root = write_mimic_like(tmp_path / "mimic", 6, seed=1)
    out = tmp_path / "prepared"
    stale_after = 0.4
    real_build = DatasetSpec.build
    building, builds = threading.Event(), []

    def slow_build(self: DatasetSpec, *args: Any, **kwargs: Any) -> Any:
        builds.append(threading.current_thread().name)
        if len(builds) == 1:  # builder A: its lock now reads as another host's, judged by its age alone
            (out / "table.lock").write_text(json.dumps({"host": "node-a.invalid", "pid": 1}), encoding="utf-8")
            building.set()
            time.sleep(3.0)  # longer than B's 2 s between looks at the lock, plus stale_after
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(DatasetSpec, "build", slow_build)
    result: dict[str, prepared.TableInfo] = {}

    def builder_a() -> None:
        try:
            result["a"] = prepared.prepare_table(out, "mimic", root, progress=False, stale_after=stale_after)
        finally:
            building.set()  # also when A failed: B then finds no lock and builds, and the test says so

    a = threading.Thread(target=builder_a, name="builder-a")
    a.start()
    try:
        assert building.wait(60)
        b = prepared.prepare_table(out, "mimic", root, progress=False, stale_after=stale_after, wait_s=60)
    finally:
        a.join()
    assert builds == ["builder-a"]  # B never built the table
    assert result["a"].built and not b.built and len(b.dataset) == 6
    assert not (out / "table.lock").exists()


def test_stale_after_of_the_cli_reaches_the_table_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--stale-after` was given to the shard locks only; the table lock always used the default (3600 s)."""
    root = write_mimic_like(tmp_path / "mimic", 4, seed=2)
    real, seen = prepared.prepare_table, []

    def spy(*args: Any, **kwargs: Any) -> prepared.TableInfo:
        seen.append(kwargs.get("stale_after"))
        return real(*args, **kwargs)

    monkeypatch.setattr(prepared, "prepare_table", spy)
    args = ["data", "build", "mimic", str(root), "--out", str(tmp_path / "out"), "--no-cache", "--no-progress"]
    assert cli([*args, "--stale-after", "7"]) == 0
    assert seen == [7.0]


# -- a builder stopped by a signal ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def many_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MIMIC-shaped folder of 1,200 rows over 30 record files (each listed 40 times under new study ids): a
    cache build long enough to be stopped in the middle, written in a second."""
    root = write_mimic_like(tmp_path_factory.mktemp("many") / "mimic", 30, seed=4)
    for name, study_column in (("record_list.csv", 1), ("machine_measurements.csv", 1)):
        with (root / name).open(newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
        copies = []
        for k in range(1, 40):
            for row in rows:
                copy = list(row)
                copy[study_column] = str(int(row[study_column]) + 1_000_000 * k)
                if name == "record_list.csv":
                    copy[2] = copy[study_column]  # file_name
                copies.append(copy)
        with (root / name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, *rows, *copies])
    return root


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 on of /proc/PID/stat (state, ppid, ..., starttime at index 19); None when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`: pid → start time (a pid reused later is not taken for them)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) and int(fields[1]) == pid:
            found[int(entry.name)] = fields[19]
    return found


def _running(pid: int, start: str) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"  # a zombie holds no memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stopped_builder_leaves_no_worker_behind(many_rows: Path, tmp_path: Path, signum: int) -> None:
    """A builder stopped by SIGTERM (`kill`, `timeout`, a batch system) or SIGKILL (an OOM kill) left its
    `--workers` running for good, reparented to init, ~384 MB each; Ctrl-C alone was clean."""
    out = tmp_path / "prepared"
    command = [sys.executable, "-m", "ecglang.cli.main", "data", "build", "mimic", str(many_rows), "--out", str(out),
               "--no-progress", "--workers", "2", "--batch-size", "8", "--shard-size", "600"]  # fmt: skip
    # output to files: an orphaned worker keeps pipes open, and reading them to the end waited for ever
    log, err = tmp_path / "build.out", tmp_path / "build.err"
    with log.open("w") as stdout, err.open("w") as stderr:
        builder = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    journal = out / "shards" / "shard-00000-of-00002" / "journal.jsonl"
    workers: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 90
        while not (journal.is_file() and journal.stat().st_size) and builder.poll() is None:
            assert time.monotonic() < deadline, "the build never wrote its first batch"
            time.sleep(0.05)
        assert builder.poll() is None, err.read_text()
        workers = _children(builder.pid)
        assert len(workers) == 2
        builder.send_signal(signum)
        builder.wait(timeout=60)
        deadline = time.monotonic() + 10
        while (left := [pid for pid, start in workers.items() if _running(pid, start)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"workers {left} of the stopped builder still run"
        if signum == signal.SIGTERM:  # stopped as after a Ctrl-C: pool shut down, lock removed, non-zero exit
            assert builder.returncode == 143 and "terminated" in err.read_text()
            assert not list(out.glob("shards/*.lock"))
        else:
            assert builder.returncode == -signal.SIGKILL
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
        for pid, start in workers.items():  # never leave a machine with orphans, whatever failed above
            if _running(pid, start):
                os.kill(pid, signal.SIGKILL)


_ORPHAN = """
import multiprocessing, os, time
from ecglang.core import parallel

def worker():
    parallel._parent_death_signal = lambda signum: False  # the portable way: a thread watching the parent
    parallel.PARENT_POLL_S = 0.05
    parallel.exit_with_parent()
    time.sleep(60)

if __name__ == "__main__":
    child = multiprocessing.get_context("fork").Process(target=worker)
    child.start()
    print(child.pid, flush=True)
    time.sleep(0.5)
    os._exit(0)  # dies without a word to its child, as after a SIGKILL
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_the_parent_death_signal_a_worker_watches_its_parent() -> None:
    """Where `prctl` is not available (not Linux, or refused), a worker still ends when its parent dies."""
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    fields = _stat_fields(child)
    parent.wait(timeout=30)
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while fields and _running(child, fields[19]) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = bool(fields) and _running(child, fields[19])
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive


# -- cache failures of a node's own shards ----------------------------------------------------------------
def test_a_node_lists_the_cache_failures_of_its_own_shards(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--shard 0/2` whose shard held a truncated record exited 1 but neither counted nor listed it:
    `cache_failures.csv` is written only once every shard is complete."""
    root = write_mimic_like(tmp_path / "mimic", 20, seed=6)
    out = tmp_path / "prepared"
    args = ["data", "build", "mimic", str(root), "--out", str(out), "--no-progress", "--shard-size", "5"]
    assert cli([*args, "--no-cache"]) == 0
    table = datasets.load_from_disk(str(out / "dataset"))
    bad_id, bad_path = str(table["id"][0]), Path(table["path"][0])  # row 0: in shard 0, node 0's
    dat = bad_path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1000])  # truncated: readable header, cut signal
    capsys.readouterr()

    assert cli([*args, "--shard", "0/2"]) == 1
    printed = capsys.readouterr()
    assert "still to build: shard-00001-of-00004, shard-00003-of-00004" in printed.out
    assert "cache     this call's 2 shard(s): 9 ok, 1 failed" in printed.out
    listed = out / "shards" / "shard-00000-of-00004.cache_failures.csv"
    assert f"1 record(s) failed in the cache (this call's shards) (all listed in {listed})" in printed.err
    assert bad_id in printed.err
    with listed.open(encoding="utf-8") as f:
        assert [row["id"] for row in csv.DictReader(f)] == [bad_id]
    assert not (out / "cache_failures.csv").exists()

    assert cli([*args, "--shard", "1/2"]) == 1  # the folder is complete now: every shard's failures count
    printed = capsys.readouterr()
    assert "19 ok, 1 failed" in printed.out and bad_id in printed.err
    assert (out / "cache_failures.csv").is_file()

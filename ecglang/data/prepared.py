"""A prepared dataset: the records table and its signal cache in shards, built once (by `ecglang data build`)
before training, on one node or many, and read by training with `data.prepared=DIR`.

Folder layout:

| path | content |
|---|---|
| `dataset/` | the records table (`datasets.Dataset.save_to_disk`): `id, path, report, ...` of the source builder |
| `build_failures.csv` | records the builder left out, and why (`record_id, path, reason`) |
| `table.json` | the table's description: source, root, builder options, input fingerprint, row count, `complete` |
| `shards/shard-00003-of-00016/` | a `SignalCache` of rows `[start, stop)` of the table (`cache/` when one shard) |
| `shards/shard-00003-of-00016.lock` | present while one builder writes that shard (JSON: host, pid, time) |
| `shards/shard-00003-of-00016.cache_failures.csv` | its cache failures, when some shards are still to build |
| `manifest.json` | preprocessing config and its hash, the shards (rows, status, counts); rewritten as shards finish |
| `cache_failures.csv` | records that failed in the cache (all shards), and why |

Sharding: the table's rows are cut into shards of `shard_size` rows (fixed by the first build of the folder).
`--shard i/N` makes one builder take shards `i, i+N, i+2N, ...` (node `i` of `N`); without it a builder takes
every shard nobody else holds, so several builders on one folder share the work. Each shard is resumable
(`SignalCache.build` redoes only the rows not marked done), so a killed build is restarted with the same command.

Reuse: a later call on the same folder (another node, a resumed build) reuses the table when its source, root,
builder options and input are those of the build. The input is fingerprinted in `table.json` by size and
modification time (`input_fingerprint`: the metadata CSVs, REFERENCE.csv or pairs file, or the listing of a
records folder); when it changed, the call is refused with what changed: the folder's table and cache (which
other nodes, or a training run, may be reading) are never rebuilt in place, so a new `--out` is built instead.

Locks: a builder creates `<shard>.lock` with `O_CREAT | O_EXCL` (atomic on local filesystems and on NFSv3+) before
writing a shard and removes it after. A lock whose owner is on this host and no longer running is stale and is
taken over; a lock from another host is stale only after `stale_after` seconds without an update (the owner
touches it after every batch); `--break-locks` removes every lock of the folder first, for use when no builder
is running. The table has the same kind of lock (`table.lock`): the first builder builds it, the others wait; its
builder reports no batches, so a thread touches that lock every `stale_after / 4` seconds (at least once a minute).
"""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any

import datasets
import numpy as np
import pandas as pd

from ecglang.core.jsonio import is_count
from ecglang.core.quiet import datasets_progress
from ecglang.data.cache import META_FILE, SignalCache, preprocess_of, read_json_object, sha256_json
from ecglang.data.cinc import physionet_files
from ecglang.data.registry import get_dataset
from ecglang.errors import ConfigError, EcgReadError
from ecglang.signal.preprocess import PreprocessConfig

MANIFEST_FILE = "manifest.json"
TABLE_META_FILE = "table.json"
TABLE_DIR = "dataset"
SHARDS_DIR = "shards"
SINGLE_SHARD_DIR = "cache"
PREPARED_FORMAT = "ecglang-prepared"
PREPARED_VERSION = 1
DEFAULT_SHARD_SIZE = 50_000
STALE_AFTER_S = 3600.0


class LockHeld(RuntimeError):
    """Another live builder holds the lock."""


def parse_shard_spec(text: str | None) -> tuple[int, int] | None:
    """'i/N' → (i, N) with 0 <= i < N; None → None."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be i/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}"


# -- locks ------------------------------------------------------------------------------------------------
def _owner_alive(owner: dict[str, Any], stale_after: float, lock: Path) -> bool:
    pid = owner.get("pid")
    # only a real process id is asked about: os.kill(-1 or 0, 0) "succeeds" for a whole group, which would
    # keep a hand-written lock alive for ever
    if owner.get("host") == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        except OverflowError:
            pass  # not a pid: judged by age below
        else:
            return True
    try:
        return time.time() - lock.stat().st_mtime < stale_after
    except FileNotFoundError:
        return False


@contextmanager
def file_lock(lock: Path, stale_after: float = STALE_AFTER_S) -> Iterator[Callable[[], None]]:
    """Hold `lock` (created with O_EXCL) for the block; yields `touch()` to mark the lock as still used.

    Raises `LockHeld` when a live builder holds it; a stale lock (see the module docstring) is taken over."""
    me = {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(timezone.utc).isoformat()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError):
                owner = {}
            if not isinstance(owner, dict):  # not a lock we wrote: judged by its age alone, like an empty one
                owner = {}
            if owner and _owner_alive(owner, stale_after, lock):
                raise LockHeld(f"{lock} is held by pid {owner.get('pid')} on {owner.get('host')}") from None
            if not owner and _owner_alive({}, stale_after, lock):  # being written right now
                raise LockHeld(f"{lock} is being taken by another builder") from None
            lock.unlink(missing_ok=True)  # stale: its owner is gone
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(me, f)
        break
    else:
        raise LockHeld(f"{lock} was taken by another builder")
    try:
        yield lambda: os.utime(lock)
    finally:
        lock.unlink(missing_ok=True)


@contextmanager
def kept_fresh(touch: Callable[[], None], stale_after: float) -> Iterator[None]:
    """Call `touch` (of `file_lock`) from a daemon thread every `stale_after / 4` seconds (at least once a minute) for
    the block: for a lock whose holder reports no progress of its own (the records table: CSV parsing and two
    `stat`s per record, an hour and more for MIMIC on a shared filesystem), which another host would otherwise
    take over while it is held."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(min(60.0, stale_after / 4)):
            try:
                touch()
            except OSError:  # removed (--break-locks): nothing left to keep fresh
                pass

    thread = threading.Thread(target=run, name="lock-refresh", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# -- the records table ----------------------------------------------------------------------------------
@dataclass
class TableInfo:
    """What `prepare_table` built or found."""

    dataset: datasets.Dataset
    n_failures: int
    built: bool  # False: an earlier build's table was reused
    summary: str = ""  # the builder's `BuildReport.summary()`
    input_checked: bool = True  # False: a table reused from before input fingerprints were kept (not checked)


def prepare_table(
    out: Path,
    source: str,
    root: str | Path,
    builder_args: dict[str, Any] | None = None,
    wait_s: float = 24 * 3600.0,
    progress: bool = True,
    stale_after: float = STALE_AFTER_S,
) -> TableInfo:
    """Build the records table into `out/dataset` once; a second builder (another node) waits for the first.
    `stale_after`: seconds after which another host's `table.lock` not touched since is taken over (this builder
    touches its own while it builds)."""
    spec = get_dataset(source)
    out.mkdir(parents=True, exist_ok=True)
    args = {k: v for k, v in (builder_args or {}).items() if v is not None}
    meta_path = out / TABLE_META_FILE
    wanted = {"source": spec.name, "root": str(Path(root).expanduser().resolve()), "builder_args": args}
    deadline = time.time() + wait_s
    while True:
        if meta_path.is_file():
            meta = read_json_object(meta_path, "records-table metadata")
            if meta.get("complete"):
                if {k: meta.get(k) for k in wanted} != json.loads(json.dumps(wanted)):
                    raise ConfigError(
                        f"{out} holds a table built from {meta.get('source')} {meta.get('root')} "
                        f"{meta.get('builder_args')}; use another --out folder"
                    )
                checked = _check_inputs(out, meta_path, meta, input_fingerprint(spec.name, root, args))
                table = datasets.load_from_disk(str(out / TABLE_DIR))
                summary = str(meta.get("summary", ""))
                return TableInfo(table, _table_failures(meta_path, meta), False, summary, checked)
        try:
            with file_lock(out / "table.lock", stale_after) as touch, kept_fresh(touch, stale_after):
                # taken before the builder reads them: a change made during the build shows at the next call
                inputs = input_fingerprint(spec.name, root, args)
                extra = {"progress": progress} if spec.accepts("progress") else {}
                ds, report = spec.build(root, **extra, **args)
                if len(ds) == 0:  # an empty folder, or folds that no record is in: there is nothing to prepare
                    report.write_csv(out / "build_failures.csv")
                    failed = f"; the failures are in {out / 'build_failures.csv'}" if report.failures else ""
                    raise ConfigError(f"{root}: no record to build ({report.summary().splitlines()[0]}){failed}")
                with datasets_progress(progress):  # its "Saving the dataset" bar too
                    ds.save_to_disk(str(out / TABLE_DIR))
                report.write_csv(out / "build_failures.csv")
                write_json(meta_path, {**wanted, "n_rows": len(ds), "n_failures": len(report.failures),
                                       "summary": report.summary(), "inputs": inputs, "complete": True})  # fmt: skip
                table = datasets.load_from_disk(str(out / TABLE_DIR))
                return TableInfo(table, len(report.failures), True, report.summary())
        except LockHeld:
            if time.time() > deadline:
                raise
            time.sleep(2.0)  # another builder is writing the table


# What each source's builder reads (beside record files it only looks for): the metadata files, or the listing of
# a records folder. Their sizes and modification times are the table's input fingerprint.
_METADATA_FILES = {
    "ptbxl": ("ptbxl_database.csv", "scp_statements.csv"),
    "mimic_ecg": ("record_list.csv", "machine_measurements.csv"),
}


def input_fingerprint(source: str, root: str | Path, builder_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The size and modification time of what the builder of `source` reads from `root`, as stored in `table.json`
    (`inputs`): `{"files": {path: [size, mtime_ns]}, "listings": {folder: {"n_files", "sha256"}}}`. A missing
    file is `None`. Files: PTB-XL's and MIMIC's metadata CSVs, CPSC's REFERENCE.csv, a pairs file; listings (the
    name, size and time of every file, hashed): a PhysioNet folder's records (walked as the builder does),
    CPSC's `.mat` files, a pairs dataset folder. Stats files only, never reads them."""
    args = builder_args or {}
    base = Path(root).expanduser().resolve()
    files: list[Path] = []
    listings: dict[str, dict[str, Any]] = {}
    if source in _METADATA_FILES:
        files = [base / name for name in _METADATA_FILES[source]]
    elif source == "cpsc2018":
        if args.get("reference_csv") is not None:
            files = [Path(args["reference_csv"]).expanduser().resolve()]
        listings[str(base)] = _listing(base, base.glob("*.mat"))
    elif source == "physionet":
        listings[str(base)] = _listing(base, physionet_files(base))
    elif base.is_dir():  # a pairs dataset folder, or a source added later: every file under it
        listings[str(base)] = _listing(base, base.rglob("*"))
    else:
        files = [base]
    return {"files": {str(f): _stat(f) for f in files}, "listings": listings}


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _listing(base: Path, paths: Iterable[Path]) -> dict[str, Any]:
    lines = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:  # gone since the walk, or a name the system refuses: not part of the input
            continue
        if stat.S_ISREG(st.st_mode):
            lines.append(f"{p.relative_to(base)}\t{st.st_size}\t{st.st_mtime_ns}")
    return {"n_files": len(lines), "sha256": sha256_json(sorted(lines))}


def _check_inputs(out: Path, meta_path: Path, meta: dict[str, Any], now: dict[str, Any]) -> bool:
    """`ConfigError` when the input changed since `out`'s table was built (it would be reused, stale, with exit
    status 0). False for a table from before fingerprints were kept (no `inputs`): it cannot be checked, and is
    reused as it was (a rebuild of a large folder is not forced on its users), with a note from the CLI."""
    before = meta.get("inputs")
    if before is None:
        return False
    if not isinstance(before, dict) or not all(isinstance(before.get(k), dict) for k in ("files", "listings")):
        raise EcgReadError(meta_path, f"corrupt records-table metadata: 'inputs' is {before!r:.200}")
    changes = []
    for name in sorted(before["files"].keys() | now["files"].keys()):
        old, new = before["files"].get(name), now["files"].get(name)
        if old != new:
            changes.append(f"{name}: {_describe(old)} then, {_describe(new)} now")
    for folder in sorted(before["listings"].keys() | now["listings"].keys()):
        old, new = before["listings"].get(folder) or {}, now["listings"].get(folder) or {}
        if old != new:
            n_old, n_new = old.get("n_files", 0), new.get("n_files", 0)
            what = (
                f"{n_old} files then, {n_new} now"
                if n_old != n_new
                else f"{n_new} files, some added, removed or changed"
            )
            changes.append(f"the files in {folder}: {what}")
    if changes:
        raise ConfigError(
            f"{out}: the input changed since this folder's table was built ({'; '.join(changes)}); its table and "
            f"cache would be stale. Build into a new folder (--out NEW), or delete {out} and build again"
        )
    return True


def _describe(entry: Any) -> str:
    """A fingerprint entry `[size, mtime_ns]` for a message."""
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, int) for v in entry)):
        return "missing"
    try:
        when = datetime.fromtimestamp(entry[1] / 1e9, timezone.utc).astimezone().isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # a time no calendar holds (a hand-edited table.json)
        when = f"at {entry[1]} ns"
    return f"{entry[0]} bytes modified {when}"


# -- shards ---------------------------------------------------------------------------------------------
@dataclass
class ShardResult:
    name: str
    status: str  # "built" | "resumed" | "done" (complete before) | "locked" (another builder has it)
    n_ok: int = 0
    n_failed: int = 0
    seconds: float = 0.0
    n_processed: int = 0  # rows computed by this call (on resume: the rows an interrupted build had not done)


def _table_failures(path: Path, meta: dict[str, Any]) -> int:
    n = meta.get("n_failures")
    if not is_count(n):
        raise EcgReadError(path, f"corrupt records-table metadata: 'n_failures' must be a count, got {n!r:.80}")
    return n


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of `out` (None when there is none yet), checked: `EcgReadError` naming it when it is not
    one, or when a shard's folder would lie outside `out`."""
    path = out / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = read_json_object(path, "manifest")
    if manifest.get("format") != PREPARED_FORMAT:
        raise EcgReadError(path, f"not a prepared-dataset manifest (format {manifest.get('format')!r:.80})")
    shards, n_rows = manifest.get("shards"), manifest.get("n_rows")
    if not is_count(n_rows):
        raise EcgReadError(path, f"corrupt manifest: 'n_rows' must be a count, got {n_rows!r:.80}")
    if not isinstance(shards, list) or not shards:
        raise EcgReadError(path, "corrupt manifest: 'shards' must be a non-empty list")
    for k, entry in enumerate(shards):
        if not _valid_shard(entry, n_rows):
            raise EcgReadError(
                path,
                f"corrupt manifest: shard {k} must have a 'name', a relative 'dir' inside the folder and "
                f"0 <= 'start' <= 'stop' <= n_rows; got {entry!r:.200}",
            )
    preprocess_of(manifest, path, "manifest")
    return manifest


def _valid_shard(entry: Any, n_rows: int) -> bool:
    if not isinstance(entry, dict):
        return False
    name, folder, start, stop = (entry.get(k) for k in ("name", "dir", "start", "stop"))
    counts = is_count(start) and is_count(stop)
    inside = isinstance(folder, str) and bool(folder) and not PurePath(folder).is_absolute()
    inside = inside and ".." not in PurePath(folder).parts
    return isinstance(name, str) and inside and counts and 0 <= start <= stop <= n_rows


def init_manifest(out: Path, n_rows: int, cfg: PreprocessConfig, shard_size: int, seed: int) -> dict[str, Any]:
    """The manifest of `out`: written by the first builder, checked by the others (same config and sharding)."""
    cfg_dict = cfg.to_dict()
    count = max(1, math.ceil(n_rows / shard_size))
    shards = [
        {
            "name": shard_name(i, count),
            # One shard keeps the one-folder layout of a plain `ecglang data build` (DIR/cache).
            "dir": SINGLE_SHARD_DIR if count == 1 else f"{SHARDS_DIR}/{shard_name(i, count)}",
            "start": i * shard_size,
            "stop": min(n_rows, (i + 1) * shard_size),
        }
        for i in range(count)
    ]
    manifest = {
        "format": PREPARED_FORMAT, "version": PREPARED_VERSION, "n_rows": n_rows, "shard_size": shard_size,
        "preprocess": cfg_dict, "config_sha256": sha256_json(cfg_dict), "seed": int(seed), "shards": shards,
    }  # fmt: skip
    old = read_manifest(out)
    if old is not None:
        changed = _manifest_changes(old, manifest)
        if changed:
            raise ConfigError(
                f"{out} was prepared with other settings (in the folder → in this call): {'; '.join(changed)}; "
                "use another --out folder"
            )
        return old
    for _ in range(600):  # another builder may be writing it right now
        try:
            with file_lock(out / "manifest.lock", stale_after=60.0):
                if read_manifest(out) is None:
                    write_json(out / MANIFEST_FILE, manifest)
            break
        except LockHeld:
            time.sleep(0.1)
    return init_manifest(out, n_rows, cfg, shard_size, seed)  # checks it against what the other builder wrote


def _manifest_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a folder's manifest and this call's, one `setting: old → new` each; the preprocessing
    setting by setting (its hash alone told the user nothing)."""
    changed = [f"{k}: {old.get(k)!r} → {new[k]!r}" for k in ("n_rows", "shard_size", "seed") if old.get(k) != new[k]]
    if old.get("config_sha256") != new["config_sha256"]:
        before, after = old.get("preprocess") or {}, new["preprocess"]
        keys = [k for k in after if before.get(k, _ABSENT) != after[k]] + [k for k in before if k not in after]
        changed += [f"preprocess.{k}: {before.get(k, _ABSENT)!r} → {after.get(k, _ABSENT)!r}" for k in keys]
        if not keys:  # same settings, another hash (a manifest edited by hand, or another hashing): say so
            changed.append(f"config_sha256: {old.get('config_sha256')!r} → {new['config_sha256']!r}")
    return changed


class _Absent:
    def __repr__(self) -> str:
        return "(not set)"


_ABSENT = _Absent()


def build_shards(
    out: Path,
    table: datasets.Dataset,
    cfg: PreprocessConfig,
    shard: tuple[int, int] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 0,
    seed: int = 0,
    batch_size: int = 256,
    stale_after: float = STALE_AFTER_S,
    progress: bool = True,
) -> list[ShardResult]:
    """Build the signal-cache shards of `out` that this builder is assigned (`shard=(i, N)`) or that are free."""
    manifest = init_manifest(out, len(table), cfg, shard_size, seed)
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    ids, paths = [str(x) for x in table["id"]], [str(x) for x in table["path"]]
    results = []
    for k, entry in enumerate(manifest["shards"]):
        if shard is not None and k % shard[1] != shard[0]:
            continue
        d = out / entry["dir"]
        if shard_complete(d, entry):
            results.append(ShardResult(entry["name"], "done"))
            continue
        start, stop = int(entry["start"]), int(entry["stop"])
        t0 = time.perf_counter()
        try:
            with file_lock(out / SHARDS_DIR / f"{entry['name']}.lock", stale_after) as touch:
                cache = SignalCache.build(
                    list(zip(ids[start:stop], paths[start:stop], strict=True)), d, cfg,
                    batch_size=batch_size, num_workers=workers, seed=seed, progress=progress,
                    on_batch=lambda *_: touch(),
                    desc="caching signals" if len(manifest["shards"]) == 1 else f"caching {entry['name']}",
                )  # fmt: skip
        except LockHeld:
            results.append(ShardResult(entry["name"], "locked"))
            continue
        stats = cache.build_stats
        status = "resumed" if stats and stats.resumed else "built"
        seconds = time.perf_counter() - t0
        results.append(ShardResult(entry["name"], status, stats.n_ok, stats.n_failed, seconds, stats.n_processed))
    update_manifest(out)
    return results


def shard_complete(d: Path, entry: dict[str, Any]) -> bool:
    try:
        meta = read_json_object(d / META_FILE, "cache metadata")
    except EcgReadError:  # not built yet, or being written
        return False
    shape = meta.get("shape")
    complete = meta.get("complete") is True and isinstance(shape, list) and bool(shape)
    return complete and shape[0] == int(entry["stop"]) - int(entry["start"])


def update_manifest(out: Path) -> dict[str, Any]:
    """Record each shard's state in the manifest and, once all are complete, write `cache_failures.csv`."""
    manifest = read_manifest(out)
    if manifest is None:
        raise EcgReadError(out, f"not a prepared dataset: {MANIFEST_FILE} not found")
    failures = []
    for entry in manifest["shards"]:
        d = out / entry["dir"]
        entry["complete"] = shard_complete(d, entry)
        if entry["complete"]:
            cache = SignalCache.open(d)
            entry["n_ok"], entry["n_failed"] = len(cache.ok_rows), len(cache.failures)
            failures.append(_table_rows(cache.failures, entry))
    manifest["complete"] = all(e["complete"] for e in manifest["shards"])
    # Last writer wins: the flags are informational (readers check each shard's own cache_meta.json).
    write_json(out / MANIFEST_FILE, manifest)
    if manifest["complete"]:
        frame = pd.concat(failures) if failures else pd.DataFrame(columns=["row", "id", "path", "reason"])
        # beside, then renamed in: the builders of the last shards finish together, and one read the file while
        # another was rewriting it (an empty file: pandas' EmptyDataError in `ecglang data build`)
        tmp = out / f".cache_failures.csv.{socket.gethostname()}.{os.getpid()}.tmp"
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out / "cache_failures.csv")
    return manifest


def _table_rows(failures: pd.DataFrame, entry: dict[str, Any]) -> pd.DataFrame:
    """A shard's failures with their rows numbered as the records table's."""
    return failures.assign(row=failures["row"] + int(entry["start"]))


def write_shard_failures(out: Path, entry: dict[str, Any]) -> tuple[pd.DataFrame, Path]:
    """The cache failures of one complete shard (`row, id, path, reason`, rows numbered as the table's), also
    written to `shards/<shard>.cache_failures.csv`: a builder that leaves other shards to build lists its own
    failures there (`cache_failures.csv` is written once every shard is complete)."""
    frame = _table_rows(SignalCache.open(out / entry["dir"]).failures, entry)
    path = out / SHARDS_DIR / f"{entry['name']}.cache_failures.csv"
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")  # renamed in: see update_manifest
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return frame, path


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file + rename, unique per process: several builders share a folder)."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# -- reading --------------------------------------------------------------------------------------------
def complete_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared folder whose shards are all built; `EcgReadError` naming the folder otherwise."""
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("format") != PREPARED_FORMAT:
        raise EcgReadError(directory, f"not a prepared dataset ({MANIFEST_FILE} missing or of another format)")
    incomplete = [e["name"] for e in manifest["shards"] if not shard_complete(directory / e["dir"], e)]
    if incomplete:
        raise EcgReadError(
            directory,
            f"{len(incomplete)} shard(s) not built yet ({', '.join(incomplete[:3])}...); run "
            f"`ecglang data build SOURCE ROOT --out {directory}` (on each node: --shard i/N) until all are",
        )
    return manifest


def is_cache_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a signal cache (`cache_meta.json`) or a prepared folder (`manifest.json`): what
    `open_cache` opens."""
    d = Path(path)
    return (d / META_FILE).is_file() or (d / MANIFEST_FILE).is_file()


def open_cache(path: str | os.PathLike) -> SignalCache | ShardedCache:
    """The rows of a signal cache folder, or of a prepared folder's shards read as one (`ecglang data build
    --out`, one shard or many), opened read-only. `EcgReadError` naming the folder when it is neither, or when
    a prepared folder's shards are not all built."""
    d = Path(path).expanduser().resolve()
    if (d / META_FILE).is_file():
        return SignalCache(d)
    if (d / MANIFEST_FILE).is_file():
        return ShardedCache(d, complete_manifest(d))
    raise EcgReadError(
        d, f"neither a signal cache ({META_FILE}) nor a prepared folder ({MANIFEST_FILE}, `ecglang data build`)"
    )


class PreparedDataset:
    """A complete prepared folder, opened for training: the records table and one reader over all shards.

    `cache` has the `SignalCache` interface the training pairs use (`ok_rows`, `failures`, `get_batch`,
    `[row]`, `config`) with rows numbered as the table's."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.manifest = manifest = complete_manifest(self.directory)
        self.table = datasets.load_from_disk(str(self.directory / TABLE_DIR))
        self.table_meta = read_json_object(self.directory / TABLE_META_FILE, "records-table metadata")
        self.cache = ShardedCache(self.directory, manifest)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_saved(self.manifest["preprocess"])


class ShardedCache:
    """The shards of a prepared folder read as one `SignalCache` (rows numbered as the records table; it has
    the `CachedRows` interface that scoring and embedding read)."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.manifest = manifest
        self.starts = np.asarray([int(e["start"]) for e in manifest["shards"]], dtype=np.int64)
        self.shards = [SignalCache.open(self.directory / e["dir"]) for e in manifest["shards"]]
        self.ok_rows = np.concatenate([s.ok_rows + st for s, st in zip(self.shards, self.starts, strict=True)])
        parts = [s.failures.assign(row=s.failures["row"] + st) for s, st in zip(self.shards, self.starts, strict=True)]
        self.failures = pd.concat(parts, ignore_index=True)
        self.config = PreprocessConfig.from_saved(manifest["preprocess"])
        self.fs = self.shards[0].fs

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "manifest": self.manifest}  # workers re-open the shards

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Path(state["directory"]), state["manifest"])

    def __len__(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def ids(self) -> list[str]:
        """Record id of every row, in row order (as `SignalCache.ids`)."""
        return [rid for shard in self.shards for rid in shard.ids]

    @property
    def paths(self) -> list[str]:
        """The file each row was built from, in row order (as `SignalCache.paths`)."""
        return [path for shard in self.shards for path in shard.paths]

    def locate(self, row: int) -> tuple[SignalCache, int]:
        k = int(np.searchsorted(self.starts, int(row), side="right")) - 1
        return self.shards[k], int(row) - int(self.starts[k])

    def __getitem__(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        shard, local = self.locate(row)
        return shard[local]

    def n_valid(self, row: int) -> int | None:
        """Row `row`'s samples before its padding, as its shard says (`SignalCache.n_valid`)."""
        shard, local = self.locate(row)
        return shard.n_valid(local)

    def get_batch(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        items = [self[r] for r in rows]
        return np.stack([s for s, _ in items]), np.stack([m for _, m in items])


__all__ = [
    "DEFAULT_SHARD_SIZE",
    "MANIFEST_FILE",
    "LockHeld",
    "PreparedDataset",
    "ShardResult",
    "ShardedCache",
    "TableInfo",
    "build_shards",
    "complete_manifest",
    "file_lock",
    "init_manifest",
    "input_fingerprint",
    "is_cache_folder",
    "kept_fresh",
    "open_cache",
    "parse_shard_spec",
    "prepare_table",
    "read_manifest",
    "shard_complete",
    "shard_name",
    "update_manifest",
    "write_json",
    "write_shard_failures",
]

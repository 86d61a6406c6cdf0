"""Signal cache: preprocessed signals of a whole dataset in one float16 memory map, built once and
read with O(batch) memory.

Folder format (version 2; version 1, the same without `pad_samples.npy`, is still read: its padding is unknown):

| file | content |
|---|---|
| `signals.f16` | raw little-endian float16 array `[N, 12, T]` (C order, no header), row `i` = record `i` |
| `lead_mask.npy` | bool `[N, 12]` (NumPy `.npy`), the lead mask after preprocessing |
| `pad_samples.npy` | int32 `[N]`: the samples of padding at the end of each row (`preprocess`'s `pad_samples`): |
|  | readers search beats in the first `T - pad` samples only, as zero-shot does (`SignalCache.n_valid`) |
| `index.parquet` | one row per record: `row`, `id`, `path`, `status` (`"ok"`/`"failed"`), `reason` |
|  | (why it failed, `""` if ok), `quality` (JSON: lead → flags from preprocessing) |
| `cache_meta.json` | `format`, `version`, `shape`, `dtype`, `fs`, `preprocess` (the `PreprocessConfig` as a |
|  | dict), `config_sha256` (SHA-256 of that dict as sorted JSON), `records_sha256` (of the id/path |
|  | list), `seed`, `complete`, `n_ok`, `n_failed` |
| `progress.u8` | build bookkeeping: one byte per row, 0 pending, 1 ok, 2 failed |
| `journal.jsonl` | build bookkeeping: one JSON line per processed row (status, reason, quality) |

Failed rows hold zeros and an all-False mask; they are listed in `index.parquet` and
`SignalCache.failures`, never dropped.

Interrupted builds resume. Each batch is written, flushed to disk, then journaled, and only then
marked done in `progress.u8`; `build` on a folder with the same config and records redoes only the
rows not marked done. A missing, truncated or oversized progress file, or a signal/mask file of the
wrong size, is repaired by recomputing the rows it can no longer vouch for. A different config or
record list raises `ConfigError` (use another folder, or `overwrite=True`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ecglang import __version__
from ecglang.core.jsonio import JsonInputError, is_count, parse_json
from ecglang.core.parallel import bounded_map, exit_with_parent
from ecglang.core.paths import cache_root
from ecglang.data.cached_rows import SignalCacheDataset
from ecglang.data.fastread import read_plain_wfdb
from ecglang.errors import ConfigError, EcgLangError, EcgReadError
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.record.leads import N_LEADS
from ecglang.signal.preprocess import PreprocessConfig, preprocess

logger = logging.getLogger(__name__)

CACHE_FORMAT = "ecglang-signal-cache"
CACHE_VERSION = 2
READ_VERSIONS = (1, 2)  # 1: no pad file
SIGNALS_FILE = "signals.f16"
MASK_FILE = "lead_mask.npy"
PAD_FILE = "pad_samples.npy"
INDEX_FILE = "index.parquet"
META_FILE = "cache_meta.json"
PROGRESS_FILE = "progress.u8"
JOURNAL_FILE = "journal.jsonl"

PENDING, OK, FAILED = 0, 1, 2
_STATUS_NAME = {OK: "ok", FAILED: "failed"}
_F16_MAX = float(np.finfo(np.float16).max)

RecordSource = datasets.Dataset | Sequence[str | os.PathLike] | Sequence[tuple[str, str | os.PathLike]]


@dataclass
class CacheBuildStats:
    """What one `SignalCache.build` call did."""

    n_rows: int
    n_ok: int
    n_failed: int
    n_processed: int  # rows computed by this call (all rows for a fresh build, the missing ones on resume)
    resumed: bool
    repaired: list[str]  # what was found damaged and recomputed


def sha256_json(obj: Any) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys): the cache's config and record-list fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in `path` (cache metadata, a prepared manifest), or `EcgReadError` naming the file: these
    folders travel between machines, so a truncated or hand-edited file is input like any other."""
    try:
        obj = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EcgReadError(path, f"cannot read {what}: {exc}") from exc
    except JsonInputError as exc:
        raise EcgReadError(path, f"corrupt {what}: {exc}") from exc
    if not isinstance(obj, dict):
        raise EcgReadError(path, f"corrupt {what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def preprocess_of(meta: dict[str, Any], path: Path, what: str) -> PreprocessConfig:
    """The `preprocess` settings that a folder's metadata file (`path`, a `what`) records, checked: a cache and a
    prepared manifest both keep them; `EcgReadError` naming the file when they are missing or invalid."""
    if not isinstance(meta.get("preprocess"), dict):
        raise EcgReadError(path, f"corrupt {what}: 'preprocess' must be the settings (a JSON object)")
    try:
        return PreprocessConfig.from_saved(meta["preprocess"])
    except ConfigError as exc:
        raise EcgReadError(path, f"corrupt {what}: 'preprocess': {exc}") from exc


def signal_cache_root() -> Path:
    """Where signal caches go by default: `$ECGLANG_CACHE/signal-cache`, else `$XDG_CACHE_HOME/ecglang/signal-cache`
    (`~/.cache/ecglang/signal-cache`): the same root as the knowledge index cache."""
    return cache_root() / "signal-cache"


def default_cache_dir(source: RecordSource, preprocess_cfg: PreprocessConfig, seed: int = 0) -> Path:
    """The default folder of the cache of these records with this preprocessing: keyed by both (and the seed), so
    every run on the same data and preprocessing shares one cache, whatever its output folder."""
    ids, paths = _records(source)
    key = sha256_json({"records": sha256_json([ids, paths]), "preprocess": preprocess_cfg.to_dict(), "seed": seed})
    return signal_cache_root() / f"{len(ids)}-{key[:20]}"


def cache_is_complete(directory: str | os.PathLike) -> bool:
    """True when `directory` holds a complete signal cache (its metadata says so)."""
    try:
        meta = read_json_object(Path(directory) / META_FILE, "cache metadata")
    except EcgReadError:
        return False
    return meta.get("complete") is True


def _records(source: RecordSource) -> tuple[list[str], list[str]]:
    """(ids, paths) from a built dataset (columns `id`, `path`), paths, or (id, path) pairs."""
    if isinstance(source, datasets.Dataset):
        missing = [c for c in ("id", "path") if c not in source.column_names]
        if missing:
            raise ConfigError(f"dataset lacks column(s) {missing}; expected a dataset from ecglang.data.builders")
        ids, paths = [str(x) for x in source["id"]], [str(x) for x in source["path"]]
    else:
        items = list(source)
        if items and all(isinstance(x, tuple) and len(x) == 2 for x in items):
            ids, paths = [str(a) for a, _ in items], [str(b) for _, b in items]
        else:
            paths = [str(Path(x)) for x in items]
            stems = [
                Path(p).stem if Path(p).suffix.lower() in (".hea", ".dat", ".mat") else Path(p).name for p in paths
            ]
            ids = stems if len(set(stems)) == len(stems) else paths  # stems collide across folders: use paths
    if not ids:
        raise ConfigError("no records to cache")
    if len(set(ids)) != len(ids):
        # one pass (`ids.count` per id took 20 s for 40,000 records, hours for MIMIC's 800,000)
        first: dict[str, int] = {}
        for row, rid in enumerate(ids):
            if rid in first:
                a, b = first[rid], row
                raise ConfigError(
                    f"duplicate record id {rid!r} at rows {a} ({paths[a]}) and {b} ({paths[b]}); ids must be unique"
                )
            first[rid] = row
    return ids, paths


def _init_worker() -> None:
    """Worker initializer: a Ctrl-C sends SIGINT to the whole process group, and only the builder acts on it (it
    cancels what is queued and shuts the pool down). A worker that raised KeyboardInterrupt died wherever it was,
    which broke the pool and could leave the builder waiting at exit for the worker that survived. A builder killed
    outright (SIGKILL, an OOM kill) shuts nothing down: the worker then ends with it (`exit_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


def _process_one(
    item: tuple[int, str, dict[str, Any], int],
) -> tuple[int, np.ndarray | None, np.ndarray | None, dict, int, str]:
    """Load + preprocess one record (also in worker processes): (row, signal, mask, quality, pad, reason)."""
    row, path, cfg_dict, seed = item
    cfg = PreprocessConfig.from_dict(cfg_dict)
    try:
        # Plain WFDB records (most of PTB-XL and MIMIC-IV-ECG) are read directly; anything else by load_ecg, only
        # as far as preprocessing uses it (as zero-shot reads it): a Holter record is not read whole.
        plain = read_plain_wfdb(path)
        if plain is None:
            ecg = load_ecg(path, window=cfg.read_window())
            plain = ecg.signal, ecg.lead_mask, ecg.fs
        raw, raw_mask, fs = plain
        rng = np.random.default_rng([seed, row])  # per-row seed: results do not depend on batching/workers
        clean = preprocess(Ecg(raw, fs, raw_mask, metadata={"source_path": path}), cfg, rng=rng)  # and its padding
        signal, mask, info = clean.signal, clean.lead_mask, clean.metadata
    except EcgLangError as exc:
        return row, None, None, {}, 0, str(exc)
    except Exception as exc:  # one record (a reader's bug, a MemoryError) must not stop a build of 800k
        return row, None, None, {}, 0, f"{path}: {type(exc).__name__}: {exc}"
    if not np.all(np.isfinite(signal)):
        return row, None, None, {}, 0, f"{path}: non-finite values after preprocessing"
    if np.abs(signal).max(initial=0.0) > _F16_MAX:
        return row, None, None, {}, 0, f"{path}: values beyond the float16 range (|x| > {_F16_MAX:g}); normalise first"
    return row, signal.astype(np.float16), mask, info["quality"], int(info["pad_samples"]), ""


def _redo_unvouched_rows(status: np.ndarray, journal: dict[int, dict[str, Any]]) -> list[str]:
    """Mark pending again every row whose done mark the journal cannot back; returns what was repaired."""
    repaired = []
    # A failed row whose reason did not reach the journal cannot be reported, and a row marked ok without a
    # journal entry has lost its quality flags: redo both.
    lost = [int(i) for i in np.flatnonzero((status == FAILED) | (status == OK)) if int(i) not in journal]
    if lost:
        status[lost] = PENDING
        repaired.append(f"{len(lost)} row(s) marked done without a journal entry")
    if np.any(status > FAILED):
        bad = np.flatnonzero(status > FAILED)
        status[bad] = PENDING
        repaired.append(f"{len(bad)} row(s) with an invalid progress byte")
    status.flush()
    return repaired


def _write_row(f: Any, row: int, signal: np.ndarray, shape: tuple[int, int]) -> None:
    """Write one float16 `shape` (`[12, T]`) row at its place in the open signal file `f` (unbuffered)."""
    if signal.shape != shape:  # a row of another size would overwrite its neighbours
        raise ValueError(f"cache row {row} has shape {signal.shape}, expected {shape}")
    data = memoryview(np.ascontiguousarray(signal, dtype="<f2")).cast("B")
    f.seek(row * len(data))
    while data:  # a raw write may take fewer bytes than given
        data = data[f.write(data) :]


def _read_journal(path: Path) -> dict[int, dict[str, Any]]:
    entries: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return entries
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                entry = json.loads(line)
                entries[int(entry["row"])] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill: that row is not marked done, it is redone
    return entries


# An index row holds an id, a path, a failure reason and a preprocessing-quality JSON: far below this. The bound
# keeps a cache folder's index (data, like a checkpoint) from decompressing to gigabytes when it is opened (a
# 51 KB zstd file with a 1.5 GB string took 5.3 GB).
INDEX_BYTES_PER_ROW = 64 * 1024


def check_index_size(path: Path, n_rows: int) -> None:
    """`EcgReadError` naming `path` when the parquet index says it holds other than `n_rows` rows or more than
    `INDEX_BYTES_PER_ROW` per row once decompressed (read from its footer, before any column is)."""
    import pyarrow.parquet as pq  # pandas' parquet engine; only the footer is read here

    meta = pq.read_metadata(path)
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if meta.num_rows != n_rows or size > INDEX_BYTES_PER_ROW * n_rows + (1 << 20):
        raise EcgReadError(
            path, f"{meta.num_rows} rows of {size / 1e6:,.1f} MB decompressed, for a cache of {n_rows} records: "
            "not this cache's index (corrupt or replaced); rebuild the cache"
        )  # fmt: skip


class SignalCache:
    """A read-only view of a built cache (see the module docstring for the format).

    `cache[i]` → `(signal float32 [12, T], lead_mask bool [12])` for row `i` (a failed row raises
    `EcgReadError` with the reason). Pickling keeps only the folder, so the object can be handed to
    DataLoader workers; each worker re-opens the memory maps.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.build_stats: CacheBuildStats | None = None
        self._open()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | os.PathLike) -> SignalCache:
        """Memory-map a complete cache read-only."""
        return cls(directory)

    def _open(self) -> None:
        d = self.directory
        meta_path = d / META_FILE
        if not meta_path.is_file():
            raise EcgReadError(d, f"not a signal cache: {META_FILE} not found")
        self.meta: dict[str, Any] = read_json_object(meta_path, "cache metadata")
        if self.meta.get("format") != CACHE_FORMAT or self.meta.get("version") not in READ_VERSIONS:
            raise EcgReadError(
                meta_path, f"unsupported cache format {self.meta.get('format')!r} v{self.meta.get('version')}"
            )
        if not self.meta.get("complete"):
            raise EcgReadError(
                d,
                "cache build is incomplete (interrupted); run SignalCache.build again with the same "
                "arguments to resume",
            )
        self._config = self._check_meta(meta_path)
        n, leads, t = self.meta["shape"]
        sig_path = d / SIGNALS_FILE
        expected = n * leads * t * 2
        if not sig_path.is_file() or sig_path.stat().st_size != expected:
            raise EcgReadError(sig_path, f"signal file missing or not {expected} bytes; rebuild the cache")
        self._signals_map: np.memmap | None = None  # opened on first use of `_signals`; reads use `_read_rows`
        try:
            self._mask = np.load(d / MASK_FILE, mmap_mode="r")
            self._pad = None if self.meta["version"] == 1 else np.load(d / PAD_FILE, mmap_mode="r")  # [N] int32
            check_index_size(d / INDEX_FILE, n)
            self.index = pd.read_parquet(d / INDEX_FILE)
        except (OSError, ValueError) as exc:
            raise EcgReadError(d, f"cannot read cache files: {exc}") from exc
        if self._mask.shape != (n, leads) or len(self.index) != n:
            raise EcgReadError(d, "lead mask or index does not match the signal shape; rebuild the cache")
        pad = self._pad  # checked here, so that no read fails later on a bad value
        if pad is not None and (pad.shape != (n,) or pad.dtype != np.int32 or np.any((pad < 0) | (pad >= t))):
            raise EcgReadError(d / PAD_FILE, f"not {n} pad lengths in [0, {t}) (int32); rebuild the cache")
        self._status = (self.index["status"].to_numpy() == "ok").astype(bool)
        self._row_of: dict[str, int] | None = None

    def _check_meta(self, meta_path: Path) -> PreprocessConfig:
        """The fields that reading uses, checked once at opening (so no read fails later on a bad value)."""
        shape, fs = self.meta.get("shape"), self.meta.get("fs")
        if not (isinstance(shape, list) and len(shape) == 3 and all(is_count(v) for v in shape)):
            raise EcgReadError(meta_path, f"corrupt cache metadata: 'shape' must be 3 counts, got {shape!r:.80}")
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not 0 < fs < float("inf"):
            raise EcgReadError(meta_path, f"corrupt cache metadata: 'fs' must be a positive rate, got {fs!r:.80}")
        return preprocess_of(self.meta, meta_path, "cache metadata")

    @property
    def _signals(self) -> np.memmap:
        """The whole signal file as a read-only memory map `[N, 12, T]` float16, mapped on first use. Row reads
        do not use it (see `_read_rows`): a mapping of a large cache makes every look at the process's memory
        (`/proc/PID/smaps`, PSS) walk the whole file."""
        if self._signals_map is None:
            self._signals_map = np.memmap(self.directory / SIGNALS_FILE, dtype=np.float16, mode="r", shape=self.shape)
        return self._signals_map

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}  # never pickle the memory maps (that copies all data)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.directory = Path(state["directory"])
        self.build_stats = None
        self._open()

    # -- reading -----------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["shape"])  # type: ignore[return-value]

    @property
    def fs(self) -> float:
        return float(self.meta["fs"])

    @property
    def config(self) -> PreprocessConfig:
        return self._config

    @property
    def ids(self) -> list[str]:
        return self.index["id"].tolist()

    @property
    def paths(self) -> list[str]:
        """The file each row was built from, in row order."""
        return self.index["path"].tolist()

    @property
    def ok_rows(self) -> np.ndarray:
        """Row numbers of the records that were cached successfully."""
        return np.flatnonzero(self._status)

    @property
    def failures(self) -> pd.DataFrame:
        """Rows that failed (`row, id, path, reason`)."""
        return self.index.loc[self.index["status"] == "failed", ["row", "id", "path", "reason"]].reset_index(drop=True)

    def row_of(self, record_id: str) -> int:
        if self._row_of is None:
            self._row_of = {rid: i for i, rid in enumerate(self.index["id"])}
        try:
            return self._row_of[str(record_id)]
        except KeyError:
            raise KeyError(f"record id {record_id!r} is not in the cache at {self.directory}") from None

    def __len__(self) -> int:
        return int(self.meta["shape"][0])

    def _check_row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for a cache of {n} rows")
        i = int(i) % n
        if not self._status[i]:
            row = self.index.iloc[i]
            raise EcgReadError(row["path"], f"cache row {i} ({row['id']}) failed when built: {row['reason']}")
        return i

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        i = self._check_row(i)
        return self._read_rows([i])[0].astype(np.float32), np.array(self._mask[i], dtype=bool)

    def n_valid(self, i: int) -> int | None:
        """How many leading samples of row `i` hold the record, the rest being the padding that preprocessing added
        (`pad_samples`): where its beats are searched, as zero-shot does. None in a cache of format 1 (not kept)."""
        return None if self._pad is None else self.shape[2] - int(self._pad[i])

    def get_batch(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`(signals float32 [B, 12, T], lead_masks bool [B, 12])` for these rows."""
        rows = [self._check_row(i) for i in rows]
        return self._read_rows(rows).astype(np.float32), np.array(self._mask[rows], dtype=bool)

    def _read_rows(self, rows: Sequence[int]) -> np.ndarray:
        """float16 `[len(rows), 12, T]` read from the signal file with plain reads, not through the memory
        map: the pages a process touches in a memory map count in its resident set until the kernel takes
        them back, so a pass over a large cache would grow every reader's RSS towards the file's size."""
        _, leads, t = self.shape
        row_bytes = leads * t * 2
        out = np.empty((len(rows), leads, t), dtype=np.float16)
        path = self.directory / SIGNALS_FILE
        with open(path, "rb", buffering=0) as f:
            for j, i in enumerate(rows):
                f.seek(int(i) * row_bytes)
                if f.readinto(memoryview(out[j]).cast("B")) != row_bytes:
                    raise EcgReadError(path, f"cache row {i} is cut short; rebuild the cache")
        return out

    def torch_dataset(self, rows: Sequence[int] | None = None) -> SignalCacheDataset:
        """A map-style dataset for `torch.utils.data.DataLoader` (default: the ok rows)."""
        return SignalCacheDataset(self, self.ok_rows if rows is None else np.asarray(rows, dtype=np.int64))

    def __repr__(self) -> str:
        n, _, t = self.shape
        return f"SignalCache({str(self.directory)!r}, rows={n}, ok={len(self.ok_rows)}, T={t}, fs={self.fs:g})"

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        source: RecordSource,
        out_dir: str | os.PathLike,
        preprocess_cfg: PreprocessConfig | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        overwrite: bool = False,
        progress: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
        desc: str = "caching signals",
    ) -> SignalCache:
        """Preprocess every record of `source` into a cache at `out_dir`, resuming a partial one.

        Args:
            source: a dataset from `ecglang.data.builders` (columns `id`, `path`), record paths, or
                `(id, path)` pairs. Row `i` of the cache is record `i`.
            preprocess_cfg: the preprocessing (default `PreprocessConfig()`); needs a fixed
                `target_samples`.
            batch_size: rows between flushes to disk (the granularity of resuming).
            num_workers: processes that read and preprocess (0: in this process).
            seed: seeds `crop="random"` per row, so the cache does not depend on batching.
            overwrite: discard an existing cache built with a different config or record list.
            on_batch: called as `on_batch(n_done, n_rows)` after each batch is safely on disk.
            desc: the progress bar's label (a sharded build names the shard).

        Returns the opened cache; `cache.build_stats` says what this call computed or repaired.
        """
        cfg = preprocess_cfg or PreprocessConfig()
        if cfg.target_samples is None:
            raise ConfigError("the signal cache needs a fixed length: set PreprocessConfig.target_samples")
        if cfg.target_fs is None:
            raise ConfigError("the signal cache needs a fixed sampling rate: set PreprocessConfig.target_fs")
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        ids, paths = _records(source)
        n, t = len(ids), int(cfg.target_samples)
        shape = (n, N_LEADS, t)
        cfg_dict = cfg.to_dict()
        d = Path(out_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "shape": list(shape),
            "dtype": "float16",
            "fs": None if cfg.target_fs is None else float(cfg.target_fs),
            "preprocess": cfg_dict,
            "config_sha256": sha256_json(cfg_dict),
            "records_sha256": sha256_json([ids, paths]),
            "seed": int(seed),
            "ecglang_version": __version__,
        }

        if not overwrite and (done := cls._complete_as_is(d, meta)) is not None:
            return done
        resumed, repaired = cls._prepare(d, meta, overwrite)
        # Rows are written with plain writes, not through a memory map: every page written through a map counts
        # in this process's resident set until the kernel takes it back (120 kB a 10 s record: a 50,000-row
        # shard grew the builder to ~6 GB). The small mask keeps its map.
        signals = open(d / SIGNALS_FILE, "r+b", buffering=0)  # closed in the finally below
        masks = np.lib.format.open_memmap(d / MASK_FILE, mode="r+")
        pads = np.lib.format.open_memmap(d / PAD_FILE, mode="r+")
        status = np.memmap(d / PROGRESS_FILE, dtype=np.uint8, mode="r+", shape=(n,))
        repaired += _redo_unvouched_rows(status, _read_journal(d / JOURNAL_FILE))

        pending = np.flatnonzero(status == PENDING)
        n_done = n - len(pending)
        zero_row = np.zeros((N_LEADS, t), dtype=np.float16)
        bar = tqdm(total=n, initial=n_done, desc=desc, unit="rec", disable=not progress)
        executor = ProcessPoolExecutor(max_workers=num_workers, initializer=_init_worker) if num_workers > 0 else None
        try:
            items = ((int(r), paths[r], cfg_dict, int(seed)) for r in pending)
            # One stream over all pending rows keeps every worker busy (no wait at the end of each batch);
            # results come back in order and are written `batch_size` at a time. Two batches in flight at most:
            # `executor.map` would submit every pending row at once (memory grew with the record count).
            stream = bounded_map(executor, _process_one, items, window=2 * batch_size + 4 * num_workers, chunksize=4)
            with (d / JOURNAL_FILE).open("a", encoding="utf-8") as jf:
                for start in range(0, len(pending), batch_size):
                    rows = pending[start : start + batch_size]
                    results = [next(stream) for _ in rows]
                    lines = []
                    for row, sig, mask, quality, pad, reason in results:
                        _write_row(signals, row, zero_row if reason else sig, (N_LEADS, t))
                        masks[row], pads[row] = (False, 0) if reason else (mask, pad)
                        code = FAILED if reason else OK
                        lines.append(json.dumps({"row": row, "status": code, "reason": reason, "quality": quality}))
                    # Order matters for resuming: data on disk, then the journal, then the done marks.
                    os.fsync(signals.fileno())
                    masks.flush()
                    pads.flush()
                    jf.write("\n".join(lines) + "\n")
                    jf.flush()
                    os.fsync(jf.fileno())
                    for row, *_, reason in results:
                        status[row] = FAILED if reason else OK
                    status.flush()
                    n_done += len(rows)
                    bar.update(len(rows))
                    if on_batch is not None:
                        on_batch(n_done, n)
        finally:
            bar.close()
            signals.close()
            if executor is not None:
                executor.shutdown(cancel_futures=True)  # an interrupted build stops without draining the queue
        del masks, pads

        journal = _read_journal(d / JOURNAL_FILE)
        final = np.asarray(status).copy()
        index = pd.DataFrame(
            {
                "row": np.arange(n, dtype=np.int64),
                "id": ids,
                "path": paths,
                "status": [_STATUS_NAME[int(s)] for s in final],
                "reason": [journal[i]["reason"] for i in range(n)],
                "quality": [json.dumps(journal[i]["quality"], sort_keys=True) for i in range(n)],
            }
        )
        index.to_parquet(d / INDEX_FILE, index=False)
        meta.update(
            complete=True,
            n_ok=int((final == OK).sum()),
            n_failed=int((final == FAILED).sum()),
            updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        _write_json(d / META_FILE, meta)
        cache = cls(d)
        cache.build_stats = CacheBuildStats(
            n_rows=n,
            n_ok=meta["n_ok"],
            n_failed=meta["n_failed"],
            n_processed=len(pending),
            resumed=resumed,
            repaired=repaired,
        )
        return cache

    @classmethod
    def _complete_as_is(cls, d: Path, meta: dict[str, Any]) -> SignalCache | None:
        """The cache in `d` when it is complete, intact and of these records and settings, opened without a write;
        else None (built, resumed or repaired by `_prepare`). A reused cache is shared: rewriting it (as `_prepare`
        does, marking it incomplete while its index is rewritten) failed every other process's opening of it for
        that time (1.9 s for 20,000 rows, growing with the rows)."""
        try:
            old = read_json_object(d / META_FILE, "cache metadata")
        except EcgReadError:
            return None
        keys = ("format", "shape", "config_sha256", "records_sha256", "seed")  # of format 1 too (said below)
        same = old.get("version") in READ_VERSIONS and all(old.get(k) == meta[k] for k in keys)
        if old.get("complete") is not True or not same:
            return None
        try:
            cache = cls(d)  # checks the signal, mask and index files against the shape
            progress = np.fromfile(d / PROGRESS_FILE, dtype=np.uint8)
        except (EcgReadError, OSError):
            return None
        # the build's own marks must agree with the index: damaged bookkeeping is repaired, not trusted
        if len(progress) != len(cache) or not np.array_equal(progress == OK, cache._status):
            return None
        if cache.meta["version"] == 1:  # reused as it is (a rebuild can take hours), but said
            logger.warning(
                "signal cache %s (format 1) does not record the padding of records shorter than %d samples: their "
                "beats are searched in it too; rebuild it (overwrite=True, or delete it) to search only the record",
                d, cache.shape[2],
            )  # fmt: skip
        n_ok, n_failed = len(cache.ok_rows), len(cache) - len(cache.ok_rows)
        cache.build_stats = CacheBuildStats(len(cache), n_ok, n_failed, n_processed=0, resumed=True, repaired=[])
        return cache

    @staticmethod
    def _prepare(d: Path, meta: dict[str, Any], overwrite: bool) -> tuple[bool, list[str]]:
        """Create a fresh cache in `d`, or check and repair an existing one. Returns (resumed, repairs)."""
        meta_path = d / META_FILE
        files = [d / f for f in (SIGNALS_FILE, MASK_FILE, PAD_FILE, PROGRESS_FILE, JOURNAL_FILE, INDEX_FILE)]
        old: dict[str, Any] | None = None
        if meta_path.is_file():
            try:
                old = read_json_object(meta_path, "cache metadata")
            except EcgReadError as exc:
                if not overwrite:
                    raise EcgReadError(meta_path, f"{exc.problem}; pass overwrite=True to rebuild") from None
        elif any(f.exists() for f in files) and not overwrite:
            raise ConfigError(f"{d} holds cache files but no {META_FILE}; use an empty folder or overwrite=True")
        same = old is not None and all(
            old.get(k) == meta[k] for k in ("format", "version", "shape", "config_sha256", "records_sha256", "seed")
        )
        if old is not None and not same and not overwrite:
            changed = [
                k for k in ("shape", "config_sha256", "records_sha256", "seed", "version") if old.get(k) != meta.get(k)
            ]
            raise ConfigError(
                f"{d} holds a cache built with different {', '.join(changed)}; "
                "use another folder or overwrite=True to rebuild it"
            )
        n, leads, t = meta["shape"]
        if not same:  # fresh build
            for f in files:
                f.unlink(missing_ok=True)
            _write_json(meta_path, {**meta, "complete": False})
            np.memmap(d / SIGNALS_FILE, dtype=np.float16, mode="w+", shape=(n, leads, t)).flush()
            np.lib.format.open_memmap(d / MASK_FILE, mode="w+", dtype=bool, shape=(n, leads)).flush()
            np.lib.format.open_memmap(d / PAD_FILE, mode="w+", dtype=np.int32, shape=(n,)).flush()
            np.zeros(n, dtype=np.uint8).tofile(d / PROGRESS_FILE)
            (d / JOURNAL_FILE).touch()
            return False, []

        repaired: list[str] = []
        _write_json(meta_path, {**old, "complete": False})  # in case this call is interrupted too
        (d / INDEX_FILE).unlink(missing_ok=True)
        reset = False
        sig_path = d / SIGNALS_FILE
        if not sig_path.is_file() or sig_path.stat().st_size != n * leads * t * 2:
            np.memmap(sig_path, dtype=np.float16, mode="w+", shape=(n, leads, t)).flush()
            repaired.append("signal file missing or of the wrong size: all rows recomputed")
            reset = True
        for what, name, dtype, shape in (("lead mask", MASK_FILE, bool, (n, leads)), ("pad", PAD_FILE, np.int32, (n,))):
            try:
                arr = np.load(d / name, mmap_mode="r")
                ok = arr.shape == shape and arr.dtype == dtype
                del arr
            except (OSError, ValueError):
                ok = False
            if not ok:
                np.lib.format.open_memmap(d / name, mode="w+", dtype=dtype, shape=shape).flush()
                repaired.append(f"{what} file missing or unreadable: all rows recomputed")
                reset = True
        prog_path = d / PROGRESS_FILE
        progress = np.fromfile(prog_path, dtype=np.uint8) if prog_path.is_file() else np.zeros(0, np.uint8)
        if reset or len(progress) > n:
            if len(progress) > n:
                repaired.append(f"progress file longer than {n} rows: all rows recomputed")
            progress = np.zeros(n, dtype=np.uint8)
        elif len(progress) < n:
            repaired.append(f"progress file covers {len(progress)} of {n} rows: the rest recomputed")
            progress = np.concatenate([progress, np.zeros(n - len(progress), dtype=np.uint8)])
        progress.tofile(prog_path)
        if reset:
            (d / JOURNAL_FILE).unlink(missing_ok=True)
        (d / JOURNAL_FILE).touch()
        return True, repaired


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a kill never leaves half a metadata file

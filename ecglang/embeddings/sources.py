"""Record sources: the inputs of the embedding pipeline, read one record at a time.

A source is indexable (`len`, `read(i)`); `read` gives an `Ecg` or a `RecordFailure`, never raises for a bad
record, so that one unreadable (or absurd) record cannot stop a batch. Sources must be picklable: the
pipeline's DataLoader workers read from them.

- `ItemSource`: what users pass: `Ecg`s, record paths (read on demand) and input failures
  (`expand_inputs` flattens files, folders, arrays and tensors into these items; an item of another type, such
  as None or a number, becomes a failure).
- `ArraySource`: in-memory `[12, T]` signals in canonical lead order (`[N, 12, T]`, one `[12, T]` record, or a
  sequence of `[12, T_i]`).
- `CacheSource`: rows of a `SignalCache` or prepared folder (already preprocessed: the pipeline only cuts beats).

`ItemSource` and `CacheSource` take `metadata`, one mapping per item (for example `{"age": 63.0, "sex": "F"}`
from a dataset table such as PTB-XL's `ptbxl_database.csv`, whose WFDB headers carry neither): its values
fill the keys that the record itself leaves unset, so a tower with demographics sees what the table knows.
"""

from __future__ import annotations

import abc
import logging
import numbers
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ecglang.errors import ConfigError, EcgLangError, EcgReadError, RecordFailure
from ecglang.record.ecg import Ecg, record_id_of, unique_id
from ecglang.record.io import load_ecg, record_file, scan_records
from ecglang.record.leads import CANONICAL_LEADS, N_LEADS, to_canonical
from ecglang.record.numpy_reader import check_numeric, leads_by_samples, samples_axis_first
from ecglang.record.window import ReadWindow, check_sampling_rate

if TYPE_CHECKING:
    from ecglang.data.cached_rows import CachedRows

logger = logging.getLogger(__name__)

EcgInput = Ecg | str | bytes | PathLike | np.ndarray | torch.Tensor
ACCEPTED_INPUTS = (
    "an Ecg, a record path or folder (str, bytes or os.PathLike), a numpy array or torch tensor [leads, T] "
    "(one record) or [N, leads, T] (a batch), or an iterable of those"
)
NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def tensor_array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array (detached, on the CPU). Floating dtypes that numpy has no type for
    (bfloat16, the float8s) become float32: `.numpy()` refuses them, and a bf16 pipeline hands over such tensors."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.dtype not in NUMPY_FLOATS:
        tensor = tensor.float()
    elif tensor.dtype == torch.complex32:  # no numpy twin either; complex64 is, and the signal check refuses it
        tensor = tensor.to(torch.complex64)
    return tensor.numpy()


def lead_names(leads: str | Sequence[str] | None) -> list[str] | None:
    """`leads` as a list of names. A string is split at commas and whitespace ("I,II", "I II"), the rule of
    `parse_lead_subset` (reduced-lead evaluation), not into its characters; None stays None."""
    if leads is None:
        return None
    if isinstance(leads, str):
        names: list[Any] = [s for s in re.split(r"[,\s]+", leads) if s]
    else:
        try:
            names = list(leads)
        except TypeError:
            names = []
    if not names or not all(isinstance(name, str) for name in names):
        raise ConfigError(f"leads must be lead names, a list such as ['I', 'II'] or a string 'I,II'; got {leads!r}")
    try:  # the readers' rule for names (unknown, repeated, none of the 12), on the names alone
        to_canonical(np.zeros((len(names), 1), np.float32), names)
    except EcgLangError as exc:
        raise ConfigError(f"leads {leads!r}: {exc}") from None
    return names


FS_PER_INPUT_HINT = "to score arrays of different rates, wrap each array as ecglang.Ecg(x, fs) (or call once per rate)"


def check_fs(fs: Any, required: bool = False) -> float | None:
    """`fs` (the sampling rate in Hz that a call gives its arrays) as a float; None stays None unless `required`.

    `ConfigError` for anything but one real number in the rate range of real recorders (`MIN_FS_HZ`–`MAX_FS_HZ`,
    as `Ecg` takes): a string (`float("500")` would pass), a bool (True is 1 Hz), a sequence (one rate per array:
    the message says how to give those), NaN, 0, a rate in kHz."""
    if fs is None and not required:
        return None
    if isinstance(fs, (list, tuple)) or (isinstance(fs, np.ndarray) and fs.ndim > 0):
        raise ConfigError(f"fs must be one sampling rate in Hz for every array of the call, got a "
                          f"{type(fs).__name__} {fs!r:.60}; {FS_PER_INPUT_HINT}")  # fmt: skip
    if isinstance(fs, np.ndarray):  # a 0-d array: its one value
        fs = fs.item()
    if not isinstance(fs, numbers.Real) or isinstance(fs, bool):
        raise ConfigError(f"fs must be a number of Hz, got {fs!r:.60} ({type(fs).__name__})")
    try:  # the readers' rule for a rate (finite, positive, within the range of real recorders)
        return check_sampling_rate(None, fs, "fs argument")
    except EcgReadError as exc:  # the call's argument, not a record's: a ConfigError
        raise ConfigError(f"fs must be a sampling rate in Hz: {exc.problem}") from None


def error_message(exc: BaseException) -> str:
    """A failure's reason: our typed errors already name the file and the problem; anything else (a bug, a
    MemoryError from an absurd record) keeps its type name so that it is recognisable in the failures list."""
    return str(exc) if isinstance(exc, EcgLangError) else f"{type(exc).__name__}: {exc}"


def record_name(item: Any) -> str:
    """How a failure names a record: its file when it came from one, else its id."""
    if isinstance(item, Ecg):
        return item.metadata.get("source_path") or item.record_id or "<record>"
    return str(item)


def input_ids(items: Sequence[Ecg | Path | RecordFailure]) -> list[str]:
    """The record id of each expanded input (`expand_inputs`), the one its row or its failure is named by: an
    `Ecg`'s `record_id` (`record{i}`, its position among the inputs, for one made in memory without an id; an
    array's is `array{n}`), a path's file stem (`record_id_of`, the readers' id), a file that failed to be listed
    (a headerless `.dat`) its stem too, else the failure's own name (`input #n`, an empty folder's path). A stem
    given again gets `#2`, `#3`, ... in input order (`unique_id`), whether the earlier one was scored or failed."""
    seen: dict[str, int] = {}
    ids = []
    for i, item in enumerate(items):
        if isinstance(item, Ecg):
            base = item.record_id or f"record{i}"
        elif isinstance(item, RecordFailure):
            base = record_id_of(item.path) if item.path and not os.path.isdir(item.path) else item.record
        else:
            base = record_id_of(item)
        ids.append(unique_id(base, seen))
    return ids


def fill_metadata(ecg: Ecg, extra: Mapping[str, Any] | None) -> Ecg:
    """`ecg` with the keys of `extra` that its own metadata lacks (or holds as None) filled in."""
    if not extra:
        return ecg
    filled = {k: v for k, v in extra.items() if v is not None and ecg.metadata.get(k) is None}
    return ecg.replace(metadata={**ecg.metadata, **filled}) if filled else ecg


def _check_metadata(metadata: Sequence[Mapping[str, Any]] | None, n: int) -> list[Mapping[str, Any]] | None:
    if metadata is not None and len(metadata) != n:
        raise ConfigError(f"{len(metadata)} metadata entries for {n} records")
    return None if metadata is None else list(metadata)


class RecordSource(abc.ABC):
    """Indexable records for the pipeline: `read(i)` gives an `Ecg` or a `RecordFailure`."""

    preprocessed: bool = False  # True: `read` gives signals already preprocessed (only beats are cut)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def read(self, i: int) -> Ecg | RecordFailure: ...


class ItemSource(RecordSource):
    """`Ecg`s, record paths (read here; `fs`/`leads` fill in what a `.npy`/`.npz` file lacks, and an `.npz` that
    stores another rate or other leads is that record's failure) and input failures.

    `record_ids`: the id each path's record gets (default: the reader's, the file stem). `window`: read only
    this part of each file (`PreprocessConfig.read_window()`: what preprocessing uses, so a 24-hour record costs
    the memory of 10 s). `keep_leads`: a `[12]` bool mask; the other leads are masked and zeroed, as if the
    device had recorded only these (reduced-lead evaluation)."""

    def __init__(
        self,
        items: Sequence[Ecg | str | PathLike | RecordFailure],
        fs: float | None = None,
        leads: str | Sequence[str] | None = None,
        record_ids: Sequence[str] | None = None,
        window: ReadWindow | None = None,
        keep_leads: np.ndarray | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if record_ids is not None and len(record_ids) != len(items):
            raise ConfigError(f"{len(record_ids)} record ids for {len(items)} records")
        self.items, self.fs, self.leads, self.record_ids = list(items), fs, lead_names(leads), record_ids
        self.window = window
        self.keep_leads = None if keep_leads is None else np.asarray(keep_leads, dtype=bool)
        self.metadata = _check_metadata(metadata, len(self.items))

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> Ecg | RecordFailure:
        item = self.items[i]
        if isinstance(item, RecordFailure):
            return item
        if isinstance(item, Ecg):
            return self._keep(item, i)
        rid = None if self.record_ids is None else self.record_ids[i]
        # fs/leads describe arrays and fill in what an NPY/NPZ file lacks (an NPZ storing another value fails, in
        # load_ecg); a WFDB or MATLAB record's header says its own (given to it, they only made a file of another
        # rate or lead set fail beside arrays)
        raw = Path(item).suffix.lower() in RAW_ARRAY_SUFFIXES
        fs, leads = (self.fs, self.leads) if raw else (None, None)
        try:
            return self._keep(load_ecg(item, fs=fs, leads=leads, record_id=rid, window=self.window), i)
        except Exception as exc:
            return RecordFailure(str(item), "read", error_message(exc), path=str(item))

    def _keep(self, ecg: Ecg, i: int) -> Ecg:
        ecg = fill_metadata(ecg, None if self.metadata is None else self.metadata[i])
        if self.keep_leads is None:
            return ecg
        mask = ecg.lead_mask & self.keep_leads
        return ecg.replace(signal=np.where(mask[:, None], ecg.signal, np.float32(0.0)), lead_mask=mask)


class ArraySource(RecordSource):
    """In-memory signals `[12, T]` in canonical order, with optional lead masks and ids.

    `signals`: an array or tensor `[N, 12, T]`, one record `[12, T]` (with its mask `[12]`), or a sequence of
    `[12, T_i]` arrays or tensors. An array or tensor of another rank is a `ConfigError`; a sequence's item of
    the wrong shape is a failure of that record."""

    def __init__(
        self,
        signals: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        fs: float,
        lead_masks: np.ndarray | Sequence[np.ndarray] | None = None,
        record_ids: Sequence[str] | None = None,
        preprocessed: bool = False,
    ) -> None:
        signals, lead_masks = _signal_batch(signals, lead_masks)
        n = len(signals)
        if lead_masks is not None and len(lead_masks) != n:
            raise ConfigError(f"{len(lead_masks)} lead masks for {n} signals")
        if record_ids is not None and len(record_ids) != n:
            raise ConfigError(f"{len(record_ids)} record ids for {n} signals")
        self.signals, self.fs, self.lead_masks, self.record_ids = signals, fs, lead_masks, record_ids
        self.preprocessed = bool(preprocessed)

    def __len__(self) -> int:
        return len(self.signals)

    def read(self, i: int) -> Ecg | RecordFailure:
        rid = str(self.record_ids[i]) if self.record_ids is not None else f"array{i}"
        item = self.signals[i]
        signal = tensor_array(item) if isinstance(item, torch.Tensor) else np.asarray(item)
        mask = None if self.lead_masks is None else np.asarray(self.lead_masks[i])
        if signal.ndim != 2 or signal.shape[0] != N_LEADS:
            flipped = signal.ndim == 2 and signal.shape[1] == N_LEADS  # [T, 12]: canonical order is leads first
            hint = " (it looks transposed, [n_samples, 12]: pass x.T)" if flipped else ""
            return RecordFailure(
                rid, "read", f"signal must be [12, n_samples] in canonical order, got {signal.shape}{hint}"
            )
        if mask is not None and mask.shape != (N_LEADS,):
            return RecordFailure(rid, "read", f"lead mask must have shape (12,), got {mask.shape}")
        return Ecg(signal, self.fs, np.ones(N_LEADS, bool) if mask is None else mask, record_id=rid)


def _signal_batch(signals: Any, lead_masks: Any) -> tuple[Any, Any]:
    """`ArraySource`'s signals (and masks) as a batch: one `[12, T]` array or tensor is one record (its `len` is
    12, which made 12 one-dimensional "records" and 12 failures)."""
    if isinstance(signals, (str, bytes, PathLike, Ecg)) or not hasattr(signals, "__len__"):
        raise ConfigError(
            f"signals must be an array or tensor [N, 12, T] or [12, T], or a sequence of [12, T] arrays; got a "
            f"{type(signals).__name__} (score records and files with the classifier's call)"
        )
    if isinstance(signals, torch.Tensor):
        signals = tensor_array(signals)
    if isinstance(signals, np.ndarray):
        if signals.ndim == 2:
            signals = signals[None]
            if lead_masks is not None and np.ndim(lead_masks) == 1:  # the one record's [12] mask
                lead_masks = np.asarray(lead_masks)[None]
        elif signals.ndim != 3:
            raise ConfigError(
                f"signals must be [N, 12, T] (a batch) or [12, T] (one record), got an array of shape {signals.shape}"
            )
    return signals, lead_masks


class CacheSource(RecordSource):
    """Rows of a `SignalCache` or of a prepared folder's shards (preprocessed; failed rows come back as failures
    with the build's reason). Each record's `source_path` is the file the cache row was built from (its index's
    `path`)."""

    preprocessed = True

    def __init__(
        self,
        cache: CachedRows,
        rows: Sequence[int] | np.ndarray | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        n = len(cache)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ConfigError(f"cache rows must be in [0, {n}), got {rows.min()}..{rows.max()}")
        self.cache, self.rows = cache, rows
        self.ids = cache.ids
        self.paths = cache.paths
        self.metadata = _check_metadata(metadata, len(rows))  # one entry per row read

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, i: int) -> Ecg | RecordFailure:
        row = int(self.rows[i])
        rid = self.ids[row]
        try:
            signal, mask = self.cache[row]
        except Exception as exc:
            return RecordFailure(rid, "read", error_message(exc))
        ecg = Ecg(signal, self.cache.fs, mask, record_id=rid)
        if isinstance(path := self.paths[row], str) and path:
            ecg.metadata["source_path"] = path
        return fill_metadata(ecg, None if self.metadata is None else self.metadata[i])


RAW_ARRAY_SUFFIXES = (".npy", ".npz")


def expand_inputs(
    items: Any, fs: float | None, leads: str | Sequence[str] | None
) -> Iterator[Ecg | Path | RecordFailure]:
    """Flatten the accepted inputs into `Ecg` records, record paths and failures (folders are scanned).

    Accepted (`ACCEPTED_INPUTS`): an `Ecg`; a record path or folder, as str, os.PathLike or bytes (decoded with
    `os.fsdecode`, as `open` does); a numpy array or torch tensor `[leads, T]` (one record; `fs` and `leads`
    describe it) or `[N, leads, T]` (a batch; a bare array of another shape is a `ConfigError`); or an iterable
    of those. Array values must be integer or floating point (complex, bool or text is the record's failure).
    An item of another type (None, a number) is a failure (stage "read") naming its position and type, and the
    other items go on; a bare input of another type that is not iterable (`123`) is a `ConfigError`, as is a
    `leads` that is no lead names.

    An array `[samples, leads]` (rows ≠ lead count, columns = lead count) is transposed, the rule of the NPY/NPZ
    reader (`load_ecg`), and its record's `metadata["transposed"]` is set; a square array is `[leads, samples]`.

    A folder without any record, and a `.dat` file that no `.hea` header names, are failures (stage "scan"):
    the user asked for them to be scored. Other files in a folder (notes, annotations) are logged and skipped.
    A record file reached twice (a folder and a file in it, a link to it, its `.hea` and its `.dat`) is scored
    once, with a warning: scoring it twice gave a duplicate row (`id#2`) with the same scores.

    What applies to the whole call is the caller's mistake, a `ConfigError` raised before anything is read: a
    bad `fs` (`check_fs`) or `leads` (names that are no leads), an array given without `fs`, an array whose
    axes do not fit the `leads` given, a pandas DataFrame or Series (iterated, it is its column names: they
    were read as file paths), and a nested list of numbers (one "unsupported input" per row). The generator
    raises the array errors when it reaches the array: the classifier lists every input before scoring.
    """
    fs = check_fs(fs)
    names = lead_names(leads)  # checked here, not at the first array: a bad value is the caller's, not a record's
    _refuse_tables(items)
    if isinstance(items, (list, tuple)) and _numbers_only(items):
        raise ConfigError(
            f"a {type(items).__name__} of numbers is not read as a signal (its items would be read as inputs): "
            "pass np.asarray(x), an array [leads, samples], with fs="
        )
    if isinstance(items, torch.Tensor):  # tensors are arrays here: one record [leads, T] or a batch [N, leads, T]
        items = tensor_array(items)
    if isinstance(items, np.ndarray) and items.ndim not in (2, 3):  # the caller's shape, not one record's fault
        raise ConfigError(
            f"an array input must be [leads, samples] (one record) or [records, leads, samples] (a batch); got "
            f"shape {items.shape}"
        )
    if isinstance(items, np.ndarray) and items.ndim == 3:
        items = list(items)  # a batch [N, leads, T]: one record per row, as score_arrays takes it
    if isinstance(items, (Ecg, str, bytes, PathLike, np.ndarray)):
        items = [items]
    try:
        iterator = iter(items)
    except TypeError:
        raise ConfigError(f"cannot score an input of type {type(items).__name__}: give {ACCEPTED_INPUTS}") from None
    return _expand(iterator, fs, names)


def _expand(items: Iterator[Any], fs: float | None, leads: list[str] | None) -> Iterator[Ecg | Path | RecordFailure]:
    reached: dict[str, Path] = {}  # record key -> the path it was first reached by
    for n, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            item = tensor_array(item)
        _refuse_tables(item)
        if isinstance(item, Ecg):
            yield item
        elif isinstance(item, np.ndarray):
            yield _array_item(item, n, fs, leads)
        elif isinstance(item, (str, bytes, PathLike)):
            path = Path(os.fsdecode(item))  # bytes (os.listdir(b".")): a path, not a sequence of byte values
            for found in _folder_items(path) if path.is_dir() else [path]:
                if isinstance(found, Path) and (first := reached.setdefault(_record_key(found), found)) is not found:
                    logger.warning("%s is the record %s already given; scored once", found, first)
                    continue
                yield found
        else:  # one bad item is that record's failure, as an unreadable file is, not the end of the run
            reason = f"unsupported input type {type(item).__name__}; expected {ACCEPTED_INPUTS}"
            yield RecordFailure(f"input #{n}", "read", reason)


def _refuse_tables(value: Any) -> None:
    """`ConfigError` for a pandas DataFrame or Series: iterated, a DataFrame is its column names (which were
    read as file paths, "I", "II", ...), a Series its values. (pandas is looked up only if already imported:
    an object of it cannot exist otherwise.)"""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series)):
        raise ConfigError(
            f"a pandas {type(value).__name__} is not an ECG input: pass its values as an array [leads, samples] "
            "with the lead names and the rate, e.g. clf(df.to_numpy().T, leads=list(df.columns), fs=500) for a "
            "table of samples × leads (a Series: series.to_numpy()[None], leads=[series.name])"
        )


def _numbers_only(items: list | tuple) -> bool:
    """Whether a list or tuple holds numbers or lists/tuples of numbers only (a signal typed as Python lists)."""

    def number(value: Any) -> bool:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)

    def row(value: Any) -> bool:
        return number(value) or (isinstance(value, (list, tuple)) and bool(value) and number(value[0]))

    return bool(items) and all(row(value) for value in items)


def _record_key(path: Path) -> str:
    """One key per record: the real path of the file the reader reads for `path` (a WFDB record's header, however
    it was named), or of `path` where there is none (it fails on its own)."""
    return os.path.realpath(record_file(path) or path)


def _array_item(item: np.ndarray, n: int, fs: float | None, leads: list[str] | None) -> Ecg | RecordFailure:
    names = leads if leads is not None else list(CANONICAL_LEADS)
    rid = f"array{n}"  # the same name whether the array is scored or fails
    if fs is None:  # the call's mistake, made for every array alike: not a failed record (an empty table)
        raise ConfigError(f"array input #{n} needs its sampling rate: pass fs= (Hz); {FS_PER_INPUT_HINT}")
    if leads is not None and item.ndim == 2 and len(leads) not in item.shape:
        raise ConfigError(
            f"leads= names {len(leads)} leads ({', '.join(leads)}) but array input #{n} has shape {item.shape}: "
            "leads= describes every array of the call, [leads, samples] or [samples, leads]"
        )
    try:
        check_numeric(Path(rid), item.dtype)  # the reader's rule, so that an array fails as its .npy file does
        # the NPY reader's layout rule, so that an array scores as it would saved to a .npy file
        transposed = samples_axis_first(Path(rid), item.shape, len(names))
        signal, mask, _ = to_canonical(leads_by_samples(item, transposed), names, path=rid)
        ecg = Ecg(signal, fs, mask, record_id=rid)
    except (EcgLangError, ValueError, TypeError) as exc:
        return RecordFailure(rid, "read", str(exc))
    if transposed:
        ecg.metadata["transposed"] = True
    return ecg


def _folder_items(path: Path) -> Iterator[Path | RecordFailure]:
    scan = scan_records(path)
    headerless = 0
    for skipped in scan.skipped:
        if skipped.path.suffix.lower() == ".dat":  # signal data without the header needed to read it
            headerless += 1
            yield RecordFailure(str(skipped.path), "scan", skipped.reason, path=str(skipped.path))
        else:
            logger.info("skipped %s: %s", skipped.path, skipped.reason)
    if not scan.records and not headerless:  # its .dat files are already listed: one failure per input record
        yield RecordFailure(
            str(path), "scan", "no ECG record in this folder (looked for WFDB .hea, .mat, .npy and .npz files)",
            path=str(path),
        )  # fmt: skip
    yield from scan.records

"""THE one path from records to embeddings, shared by zero-shot, evaluation, training validation and benchmarks.

    RecordSource ──read──▶ Ecg ──preprocess + cut beats (BatchPreparer, in DataLoader workers)──▶ PreparedBatch
        ──encoder (this process: autocast, torch threads on the cores the workers leave free)──▶ EncodedBatch

On a CPU with few cores (`encode_in_workers`), each worker runs both stages on its own batches
(`EncodingPreparer`, rhythm path only) and this process only collects: every core is busy all the time.

`encode_batches` yields one `EncodedBatch` per prepared batch, so a caller reduces as it goes and memory
stays O(batch) whatever the number of records; `embed_records` collects every row into an `EmbeddingTable`
(embeddings and pooled features: small), and `embed_cache_rows` does that for rows of a `SignalCache`.

A record that cannot be read or prepared, for whatever reason (a typed error, a MemoryError from an absurd
record, a bug), becomes an `ecglang.errors.RecordFailure` of its batch; the other records go on.

Two encoder paths: `full=False` (default) computes only the rhythm embedding and the pooled features
(`encode_rhythm`: the beat tower skips building its padded per-beat outputs, which costs as much as several
encoder layers in memory traffic) and runs the batch through the encoder `CPU_CHUNK` records at a time on
CPU; `full=True` runs `EcgLangModel.encode_ecg` on the whole batch and keeps its per-beat and per-lead
outputs, with each record's `BeatTokens` and prepared signal (what explanations and their figures need).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ecglang.beats.tokenize import BeatTokens, tokenize_beats
from ecglang.core.threads import torch_threads, usable_cores
from ecglang.embeddings.sources import CacheSource, RecordSource, error_message, record_name
from ecglang.encoders.ecg_processing import EcgProcessor, demographic_tensors
from ecglang.encoders.layers import eval_mode, trim_beat_axis
from ecglang.errors import ConfigError, RecordFailure
from ecglang.record.ecg import Ecg

if TYPE_CHECKING:
    from ecglang.data.cached_rows import CachedRows
    from ecglang.encoders.modeling import EcgLangModel

# On CPU the encoder takes a prepared batch this many records at a time: as fast per record as 64 at a
# time, and glibc's heap, which keeps freed tensor memory for reuse, settles ~0.5 GB lower.
CPU_CHUNK = 16
MAX_ENCODING_WORKERS = 4  # cores up to which every worker also encodes (see `encode_in_workers`)
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


# --------------------------------------------------------------------------------------------- encoder
def default_processor(model: EcgLangModel) -> EcgProcessor:
    """The processor saved with `model`, else the default one for its ECG tower."""
    proc = getattr(model, "processor", None)
    if proc is not None:
        return proc
    return EcgProcessor(return_signal=not model.config.is_beat_model)


DTYPE_PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def check_precision(precision: str, device_type: str) -> str:
    """`precision` if this device can run it, else a `ConfigError` saying what to use. A torch dtype names its
    precision too (`torch.bfloat16` → "bf16")."""
    precision = DTYPE_PRECISIONS.get(precision, precision)  # type: ignore[call-overload]
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device_type == "cpu":
        raise ConfigError("precision='fp16' needs a GPU (CPU autocast runs in bfloat16): use 'bf16' or 'fp32'")
    return precision


def encoding(device_type: str, precision: str = "fp32") -> contextlib.AbstractContextManager[None]:
    """Context of every ECG-encoder call: no autograd, and autocast when `precision` asks for it."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    stack.enter_context(torch.autocast(device_type, dtype=dtype, enabled=precision != "fp32"))
    return stack


def encode_rhythm(model: EcgLangModel, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(rhythm_embeds [B, D], rhythm_features [B, d])` of a processor batch: scores, retrieval and probes need
    neither beat nor token embeddings, so the model skips them (`encode_ecg(rhythm_only=True)`)."""
    out = model.encode_ecg(**batch, rhythm_only=True)
    return out.rhythm_embeds, out.rhythm_features


def workers_fork() -> bool:
    """Whether worker processes start by `fork` (sharing this process's memory, the model included)."""
    # allow_none: asking for the method must not fix it for the caller; the first listed is the default.
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    return method == "fork"


def auto_workers(n_batches: int) -> int:
    """One preparing worker per spare core (up to 4); none for a single batch, where starting one costs more
    than it overlaps, and none where processes do not start by `fork` (spawn pickles the inputs into each
    worker and needs the caller's script to guard its entry point: ask for workers explicitly there)."""
    if n_batches < 2 or not workers_fork():
        return 0
    return min(4, usable_cores() - 1)


# ------------------------------------------------------------------------------------- preparation
@dataclass
class PreparedBatch:
    """One batch ready for the encoder: model input tensors, the record id of each row, failures.

    With `keep_views`, `views` holds each row's prepared `Ecg` (the model's input signal) and `BeatTokens`."""

    tensors: dict[str, torch.Tensor]
    record_ids: list[str]
    failures: list[RecordFailure]
    n_inputs: int
    positions: list[int] = field(default_factory=list)  # the source index of each row
    failed_positions: list[int] = field(default_factory=list)  # the source index of each failure
    views: list[tuple[Ecg, BeatTokens]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # each row's record length (whole file), in seconds
    sources: list[str | None] = field(default_factory=list)  # each row's file (`source_path`); None: in memory


def record_seconds(ecg: Ecg) -> float:
    """The length of the record `ecg` was read from, in seconds: the whole file, where only a window of it was
    read (`load_ecg(window=...)` notes the file's length in `metadata["n_samples_in_file"]`)."""
    return float(ecg.metadata.get("n_samples_in_file", ecg.n_samples)) / float(ecg.fs)


class BatchPreparer(Dataset):
    """Item `b` = batch `b` of a source, read, preprocessed (unless the source already is) and cut into beats:
    the work that a DataLoader worker does while the main process runs the encoder."""

    def __init__(
        self,
        source: RecordSource,
        processor: EcgProcessor,
        batch_size: int,
        first: int | None = None,
        keep_views: bool = False,
    ) -> None:
        self.source, self.processor, self.keep_views = source, processor, keep_views
        # `first`: a smaller first batch, so that the encoder waiting on a worker starts sooner.
        first = batch_size if first is None else min(first, batch_size)
        self.bounds = np.unique(np.concatenate(([0], np.arange(first, len(source), batch_size), [len(source)])))

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def prepare(self, ecg: Ecg) -> tuple[Ecg, BeatTokens]:
        """One record's model input: preprocessed (unless the source already is) and cut into beats."""
        if self.source.preprocessed:  # padding that preprocessing added (`metadata["pad_samples"]`) is not searched
            return ecg, tokenize_beats(ecg, self.processor.beat_config)
        return self.processor.process(ecg)

    def read(self, i: int) -> Ecg | RecordFailure:
        """Record `i` of the source; a cache row says how much of it is padding, as preprocessing a file does."""
        ecg = self.source.read(i)
        if isinstance(self.source, CacheSource) and isinstance(ecg, Ecg):
            n_valid = self.source.cache.n_valid(int(self.source.rows[i]))
            if n_valid is not None:
                ecg.metadata["pad_samples"] = ecg.n_samples - n_valid
        return ecg

    def __getitem__(self, b: int) -> PreparedBatch:
        start, stop = int(self.bounds[b]), int(self.bounds[b + 1])
        tokens, signals, ids, positions, failures, failed, views, metadata = [], [], [], [], [], [], [], []
        seconds: list[float] = []
        sources: list[str | None] = []
        for i in range(start, stop):
            try:  # sources return failures; a source that raises (a bug, a MemoryError) must not kill the batch
                ecg = self.read(i)
            except Exception as exc:
                ecg = RecordFailure(f"record #{i}", "read", error_message(exc))
            if isinstance(ecg, RecordFailure):
                failures.append(ecg)
                failed.append(i)
                continue
            try:
                clean, tok = self.prepare(ecg)
            except Exception as exc:  # one record (even a MemoryError) must not kill the batch
                source_path = str(ecg.metadata.get("source_path") or "")
                failures.append(RecordFailure(record_name(ecg), "process", error_message(exc), path=source_path))
                failed.append(i)
                continue
            tokens.append(tok)
            signals.append(clean.signal)
            ids.append(ecg.record_id)
            positions.append(i)
            metadata.append(ecg.metadata)
            seconds.append(record_seconds(ecg))
            sources.append(str(ecg.metadata.get("source_path") or "") or None)  # ids repeat across folders, paths not
            if self.keep_views:
                views.append((clean.replace(metadata={**ecg.metadata, **clean.metadata}), tok))
        tensors = self.processor.collate(tokens, signals if self.processor.return_signal else None)
        trim_beat_axis(tensors)  # ship only the beat slots in use: less to pass between processes
        tensors.update(demographic_tensors(metadata))  # header age/sex: read only by a tower with demographics
        return PreparedBatch(tensors, ids, failures, stop - start, positions, failed, views, seconds, sources)


class EncodingPreparer(BatchPreparer):
    """A `BatchPreparer` whose workers also run the encoder (rhythm path only) and hand back an `EncodedBatch`.

    With few cores, one process preparing while another encodes leaves the faster stage idle while it waits
    for the slower one; when every worker does both stages for its own batches, every core stays busy."""

    def __init__(
        self, source: RecordSource, processor: EcgProcessor, batch_size: int, models: dict[str, EcgLangModel],
        precision: str,
    ) -> None:  # fmt: skip
        super().__init__(source, processor, batch_size)
        self.models, self.precision = models, precision

    def __getitem__(self, b: int) -> EncodedBatch:  # type: ignore[override]
        # One process per core: DataLoader workers run torch on one thread (torch sets it in each worker).
        return _encode_prepared(super().__getitem__(b), self.models, "cpu", self.precision, full=False)


def encode_in_workers(device_type: str, full: bool, workers: int) -> bool:
    """Whether the preparing workers run the encoder too: on CPU, for the rhythm path, where workers start by
    `fork` (they share the model's memory; spawn would pickle it into each) and on at most
    `MAX_ENCODING_WORKERS` cores. Measured on 2 cores (`benchmarks/bench_zeroshot.py`): end to end ~20 %
    faster than one worker preparing while this process encodes, since then the encoder (~3.5 ms per ECG)
    waits on nothing while the preparing core idles ~40 % of the time. With more cores the encoder keeps its
    many threads in this process (not measured here)."""
    few_cores = usable_cores() <= MAX_ENCODING_WORKERS
    return device_type == "cpu" and not full and workers > 0 and few_cores and workers_fork()


def as_is(item: Any) -> Any:
    """DataLoader `collate_fn` for items that are already batches (module level, so workers can pickle it)."""
    return item


# ---------------------------------------------------------------------------------------- encoding
@dataclass
class EncodedBatch:
    """The encoder's output for one prepared batch, per model key (rows in `record_ids` order).

    `rhythm[key]` `[n, D]` and `features[key]` `[n, d]` are float32 CPU tensors; with `full=True`,
    `outputs[key]` is `encode_ecg`'s whole output and `views` each row's prepared `Ecg` and `BeatTokens`."""

    record_ids: list[str]
    failures: list[RecordFailure]
    n_inputs: int
    positions: list[int]
    failed_positions: list[int]
    rhythm: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]
    outputs: dict[str, Any] = field(default_factory=dict)
    views: list[tuple[Ecg, BeatTokens]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # each row's record length (whole file), in seconds
    sources: list[str | None] = field(default_factory=list)  # each row's file (`source_path`); None: in memory


def encode_batches(
    source: RecordSource,
    models: EcgLangModel | Mapping[str, EcgLangModel],
    processor: EcgProcessor,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    precision: Precision = "fp32",
    full: bool = False,
    progress: bool = False,
    desc: str = "encoding ECGs",
    output_attentions: bool = False,
) -> Iterator[EncodedBatch]:
    """Encode every record of `source`. Batches are prepared in workers while the encoder runs here, except on
    a CPU with at most `MAX_ENCODING_WORKERS` cores (`encode_in_workers`: rhythm path, fork), where every worker
    prepares and encodes its own batches of `CPU_CHUNK` and this process only collects.

    `models`: one model (key `"model"`) or several (`{key: model}`), each run on the same prepared batch
    (e.g. a model and its random-encoder baseline). `num_workers`: preparing processes (None: automatic, see
    `auto_workers`; 0: all in this process). `full`: see the module docstring. `output_attentions` (with
    `full`): the outputs carry the beat tower's lead and beat attention maps.
    """
    models = {"model": models} if not isinstance(models, Mapping) else dict(models)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    workers = auto_workers(-(-len(source) // batch_size)) if num_workers is None else int(num_workers)
    if workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    device_type = next(iter(models.values())).device.type
    for model in models.values():
        check_precision(precision, model.device.type)
    in_workers = encode_in_workers(device_type, full, workers)
    if in_workers:
        if num_workers is None:  # every core prepares and encodes; this process only collects
            workers = max(workers, usable_cores())
        # batches of CPU_CHUNK: the workers finish within one small batch of each other
        preparer: BatchPreparer = EncodingPreparer(source, processor, min(batch_size, CPU_CHUNK), models, precision)
    else:
        preparer = BatchPreparer(source, processor, batch_size, CPU_CHUNK if workers else None, keep_views=full)
    # Its own generator: each iterator draws its workers' base seed from it, and drawn from the global one it
    # changed the user's next torch.rand (a seeded experiment changed when a scoring call was added). Nothing
    # random happens in these workers, so a fixed seed loses nothing.
    loader = DataLoader(
        preparer,
        batch_size=None,
        num_workers=workers,
        collate_fn=as_is,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),
    )
    bar = tqdm(total=len(source), desc=desc, unit="rec", disable=not progress or len(source) < 2)
    try:
        with eval_mode(*models.values()), torch_threads(max(1, usable_cores() - workers) if workers else None):
            for item in loader:
                encoded = (
                    item
                    if in_workers
                    else _encode_prepared(item, models, device_type, precision, full, output_attentions)
                )
                yield encoded
                bar.update(encoded.n_inputs)
    finally:
        bar.close()


def _encode_prepared(
    prepared: PreparedBatch,
    models: dict[str, EcgLangModel],
    device_type: str,
    precision: str,
    full: bool,
    output_attentions: bool = False,
) -> EncodedBatch:
    n = len(prepared.record_ids)
    rhythm: dict[str, torch.Tensor] = {}
    features: dict[str, torch.Tensor] = {}
    outputs: dict[str, Any] = {}
    for key, model in models.items():
        if full:
            with encoding(device_type, precision):
                maps = {"output_attentions": True} if output_attentions else {}
                out = model.encode_ecg(**prepared.tensors, **maps) if n else None
            outputs[key] = out
            parts = [] if out is None else [(out.rhythm_embeds, out.rhythm_features)]
        else:
            step = CPU_CHUNK if model.device.type == "cpu" else max(n, 1)
            parts = []
            for start in range(0, n, step):
                chunk = {k: v[start : start + step] for k, v in prepared.tensors.items()}
                with encoding(device_type, precision):
                    parts.append(encode_rhythm(model, chunk))
        rhythm[key] = _stack([p[0] for p in parts])
        features[key] = _stack([p[1] for p in parts])
    return EncodedBatch(prepared.record_ids, prepared.failures, prepared.n_inputs, prepared.positions,
                        prepared.failed_positions, rhythm, features, outputs, prepared.views,
                        prepared.seconds, prepared.sources)  # fmt: skip


def _stack(parts: list[torch.Tensor]) -> torch.Tensor:
    if not parts:
        return torch.zeros((0, 0), dtype=torch.float32)
    return torch.cat([p.float().cpu() for p in parts]) if len(parts) > 1 else parts[0].float().cpu()


# -------------------------------------------------------------------------------------- collections
@dataclass
class EmbeddingTable:
    """Every encoded record of a source: `positions` (index in the source of each row), ids, unit rhythm
    embeddings and pooled features per model key, and the records that failed (`failed_positions`: the
    source index of each)."""

    positions: np.ndarray
    record_ids: list[str]
    embeddings: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    failures: list[RecordFailure]
    failed_positions: list[int]


def embed_records(
    source: RecordSource,
    models: EcgLangModel | Mapping[str, EcgLangModel],
    processor: EcgProcessor,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    precision: Precision = "fp32",
    progress: bool = False,
    desc: str = "encoding ECGs",
) -> EmbeddingTable:
    """Encode a whole source into an `EmbeddingTable` (L2-normalised rhythm embeddings, pooled features).

    Memory grows with the number of records times the embedding size, never with signal length."""
    keys = ["model"] if not isinstance(models, Mapping) else list(models)
    emb: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    feat: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    positions: list[int] = []
    failed: list[int] = []
    ids: list[str] = []
    failures: list[RecordFailure] = []
    for batch in encode_batches(source, models, processor, batch_size=batch_size, num_workers=num_workers,
                                precision=precision, progress=progress, desc=desc):  # fmt: skip
        failures.extend(batch.failures)
        ids.extend(batch.record_ids)
        positions.extend(batch.positions)
        failed.extend(batch.failed_positions)
        if not batch.record_ids:
            continue
        for key in keys:
            emb[key].append(torch.nn.functional.normalize(batch.rhythm[key], dim=-1).numpy())
            feat[key].append(batch.features[key].numpy())
    return EmbeddingTable(
        positions=np.asarray(positions, dtype=np.int64),
        record_ids=ids,
        embeddings={k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in emb.items()},
        features={k: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for k, v in feat.items()},
        failures=failures,
        failed_positions=failed,
    )


def embed_cache_rows(
    model: EcgLangModel,
    cache: CachedRows,
    rows: Any = None,
    *,
    processor: EcgProcessor | None = None,
    batch_size: int = 64,
    num_workers: int | None = 0,
    precision: Precision = "fp32",
    metadata: Sequence[Mapping[str, Any]] | None = None,
) -> EmbeddingTable:
    """Embed rows of a `SignalCache` or prepared folder (already preprocessed: only beats are cut) with `model`;
    `metadata`: one mapping per row (age/sex from the builder table, read by a tower with demographics).

    For training validation: `table.positions` index `rows` (the rows that were embedded, in order),
    `table.embeddings["model"]` holds their unit rhythm embeddings, `table.failures` the rows left out. The
    cache must have been built with the processor's preprocessing (the caller's contract)."""
    source = CacheSource(cache, rows, metadata)
    return embed_records(source, model, processor or default_processor(model), batch_size=batch_size,
                         num_workers=num_workers, precision=precision)  # fmt: skip

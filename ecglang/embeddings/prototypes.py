"""Case-based explanations (ProtoECGNet): a FAISS index of the beat embeddings of a reference set of records.

    records (+ reports) ──embedding pipeline (full)──▶ unit beat embeddings ──position-centred──▶ IndexFlatIP

Each indexed beat keeps its record id, beat index, the record's lead mask, its window (`[12, beat_len]`
float16, written to a raw file as the build goes and memory-mapped on load, so memory stays bounded) and the
record's file and report when there are. A zero-shot result then shows, beside its score, the reference beats
most similar to the beat that drove it, with their records' files and reports (`ecglang.scores.classifier`).

Record ids are unique within an index by zero-shot's rule (`ecglang.record.ecg.unique_id`): the same stem in a
second folder is `00001_hr#2`. A search leaves out the query's own record by its file (resolved), so a record of
the same stem in another folder is still a match, and fetches as many more neighbours as it leaves out beats.

Beat embeddings are contextual: each carries its beat index and time, and the rhythm model lets it attend to the
record's other beats. Searched as they are, the nearest reference beat of beat k was beat k of another record
for every query beat of the PTB-XL sample (`scripts/prototype_positions.py`). So the search compares beats with
their position's part taken out: every vector minus the reference set's mean vector of its beat index (query
beats minus the mean of theirs), re-normalised, cosine. On the sample (235 reference records, 118 query records)
that brings the matches at the same index from 1.000 to 0.562 and keeps what the matches say about the record
(the two records agree on PTB-XL's NORM superclass for 0.798 → 0.796 of query beats; 0.517 by chance).

On disk, a folder of plain data (loading executes nothing: no pickle):

    vectors.npy     the unit beat embeddings [n, dim] float32 (the centred IndexFlatIP is rebuilt from them on load)
    beat_record.npy row of each beat's record in records.jsonl [n] int32
    beat_index.npy  index of each beat in its record [n] int16
    lead_mask.npy   each beat's record's lead mask [n, 12] bool
    windows.f16     raw float16 [n, 12, beat_len] (shape in meta.json)
    records.jsonl   one object a record: id, report, source (the record's file, absolute; null: built from memory)
    meta.json       format version, the model's identity (config and weight sha256), dims, counts

Every array file's header must declare exactly the shape that meta.json's counts give, and hold exactly those
bytes, before it is read (`ecglang.core.array_files`): FAISS's own index files are not read back, because their
reader allocates what their header claims. An index answers only for the model that built it:
`PrototypeIndex.load(folder, model=m)` (and the zero-shot classifier) raise `PrototypeModelMismatch` for another
model. Folders written before ids were unique (a stem repeated across folders) load with the `#2` ids that a
rebuild would give.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ecglang.core.array_files import ArrayFileError, read_array, write_array
from ecglang.core.atomic import atomic_directory
from ecglang.core.jsonio import JsonInputError, is_count, parse_json
from ecglang.core.outputs import check_replaceable_folder
from ecglang.embeddings.pipeline import default_processor, encode_batches
from ecglang.embeddings.sources import ItemSource, expand_inputs
from ecglang.errors import ConfigError, EcgLangError, RecordFailure
from ecglang.record.ecg import repeated_stem, unique_id
from ecglang.record.leads import N_LEADS
from ecglang.record.tables import read_record_table, record_file_key
from ecglang.text.reports import decode_report, normalize_report

if TYPE_CHECKING:
    from ecglang.encoders.ecg_processing import EcgProcessor
    from ecglang.encoders.modeling import EcgLangModel

__all__ = ["PrototypeError", "PrototypeIndex", "PrototypeMatch", "PrototypeModelMismatch", "Reports",
           "build_prototypes", "find_reports", "model_identity", "read_reports"]  # fmt: skip

log = logging.getLogger(__name__)

# 2: plain NPY arrays checked against meta.json, the FAISS index rebuilt on load (1 kept index.faiss and beats.npz)
FORMAT_VERSION = 2
VECTORS_FILE = "vectors.npy"
# (file, shape after the beat count, dtype) of the per-beat arrays
LAYOUT = (("beat_record.npy", (), "<i4"), ("beat_index.npy", (), "<i2"), ("lead_mask.npy", (N_LEADS,), "|b1"))
WINDOWS_FILE = "windows.f16"
INDEX_FILES = frozenset({VECTORS_FILE, WINDOWS_FILE, "records.jsonl", "meta.json", *(f for f, _, _ in LAYOUT)})


def is_prototype_folder(folder: Path) -> bool:
    """True when `folder` holds a prototype index and nothing else: the only folder (besides a new or empty
    one) that writing an index may replace as a whole."""
    names = {p.name for p in folder.iterdir()}
    return "meta.json" in names and names <= INDEX_FILES


class PrototypeError(EcgLangError, ValueError):
    """A prototype index folder is missing, incomplete or malformed."""


class PrototypeModelMismatch(PrototypeError):
    """The prototype index was built with another model (other config or weights) than the one given, or with
    other preprocessing or beat windows than the processor given."""


@dataclass
class PrototypeMatch:
    """One reference beat near a query beat: its record, its index in that record, the cosine, the report, and
    the record's file (None for a record indexed from memory)."""

    record_id: str
    beat_index: int
    similarity: float
    report: str | None
    row: int  # the beat's row in the index (for `PrototypeIndex.window`)
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON row (without the index row, which means nothing outside this index)."""
        return {"record": self.record_id, "path": self.path, "beat": self.beat_index,
                "similarity": round(self.similarity, 6), "report": self.report}  # fmt: skip


# ------------------------------------------------------------------------------------------ identity
def model_identity(model: EcgLangModel) -> dict[str, str]:
    """sha256 of what makes a beat embedding: the ECG tower and projection config, and the weights of the ECG
    tower and the beat projection (raw bytes, names sorted). Two models with equal identities embed beats alike."""
    cfg = {"ecg_tower": model.config.ecg_tower, "projection": model.config.projection}
    config_sha = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()
    h = hashlib.sha256()
    parts = {"ecg_tower": model.ecg_tower, "beat_proj": getattr(model, "beat_proj", None)}
    for prefix, module in parts.items():
        if module is None:
            continue
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous().reshape(-1)
            h.update(f"{prefix}.{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    return {"config_sha256": config_sha, "weights_sha256": h.hexdigest()}


# ------------------------------------------------------------------------------------------- reports
class Reports(dict[str, str]):
    """Record id → report (what `read_reports` gives), and `by_file`: record file (`record_file_key`) → report,
    from a table keyed by `path`. `ambiguous`: the ids such a table gives several files with different reports,
    which are left out of the ids (only their files find them)."""

    def __init__(
        self,
        by_id: Mapping[str, str] | None = None,
        by_file: Mapping[str, str] | None = None,
        ambiguous: Sequence[str] | frozenset[str] = (),
    ) -> None:
        super().__init__(by_id or {})
        self.by_file = dict(by_file or {})
        self.ambiguous = frozenset(ambiguous)


def read_reports(path: str | os.PathLike) -> Reports:
    """Record id → report from a CSV keyed by record (`ecglang.record.tables`): PTB-XL's `ptbxl_database.csv`
    (reports translated to English as for pretraining), or any CSV with a `report` column and an `id` or `path`
    column. A `path` (relative: from the CSV's folder) also keys its report by the record's file (`Reports.by_file`),
    so two records of one name in two folders get their own reports; such a name is then an id only when its rows
    agree. `ConfigError` naming the line for an id (or a file) listed again with another report: the last row
    won without a word."""
    table = read_record_table(path, "reports table", ("report",))
    by_id: dict[str, str] = {}
    by_file: dict[str, str] = {}
    first: dict[str, int] = {}  # id or file → the line that gave its report
    ambiguous: set[str] = set()
    for row in table.rows:
        if table.ptbxl:  # PTB-XL's device statements: repaired and translated, as for pretraining
            text = normalize_report(decode_report(row.cells["report"]), source="ptbxl")
        else:
            text = normalize_report(row.cells.get("report", ""), source="english")
        keys = list(row.ids)
        if table.key == "path":  # the file decides; the name only where no other file shares it
            try:
                file = record_file_key(row.cells["path"], table.path.parent)
            except ConfigError as exc:
                raise ConfigError(f"{table.path}, line {row.line}: {exc}") from None
            for rid in keys:
                if by_id.setdefault(rid, text) != text:
                    ambiguous.add(rid)
            keys, out = [file], by_file
        else:
            out = by_id
        for key in keys:
            if out.setdefault(key, text) != text:
                hint = f"; for records of one name in two folders, a 'path' column or ids such as {key}#2"
                hint = "" if out is by_file else hint
                raise ConfigError(f"{table.path}, line {row.line}: record {key!r:.200} is listed again with another "
                                  f"report (line {first[key]}); keep one row per record{hint}")  # fmt: skip
            first.setdefault(key, row.line)
    return Reports({k: v for k, v in by_id.items() if k not in ambiguous}, by_file, ambiguous)


def find_reports(records: str | os.PathLike) -> Path | None:
    """PTB-XL's `ptbxl_database.csv` in the records folder or up to two folders above it (where PTB-XL keeps
    it beside `records500/`), else None."""
    folder = Path(records)
    folder = folder if folder.is_dir() else folder.parent
    for candidate in [folder, *folder.resolve().parents[:2]]:
        if (candidate / "ptbxl_database.csv").is_file():
            return candidate / "ptbxl_database.csv"
    return None


# --------------------------------------------------------------------------------------------- index
# A position's mean is shrunk towards the mean of all beats as if this many beats of that mean were added to
# it: a position that a single reference beat reaches (beat 35 of a tachycardia) would otherwise be centred on
# itself, a zero vector that matches nothing, not even itself.
POSITION_PRIOR_BEATS = 1


def position_means(vectors: np.ndarray, beat_index: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """`[max index + 1, D]`: the mean vector of the reference beats at each beat index, shrunk towards `overall`,
    the mean of all beats (`POSITION_PRIOR_BEATS`)."""
    if not len(vectors):
        return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    index = np.asarray(beat_index, dtype=np.int64)
    sums = np.zeros((int(index.max()) + 1, vectors.shape[1]), np.float64)
    np.add.at(sums, index, vectors)
    counts = np.bincount(index, minlength=len(sums))[:, None]
    return ((sums + POSITION_PRIOR_BEATS * overall) / (counts + POSITION_PRIOR_BEATS)).astype(np.float32)


class PrototypeIndex:
    """Beat embeddings of a reference set, searched by cosine after position centring (module docstring) in a
    FAISS inner-product index. `vectors`: the unit beat embeddings as built (what is saved)."""

    def __init__(
        self,
        vectors: np.ndarray,
        records: list[dict[str, Any]],
        beat_record: np.ndarray,
        beat_index: np.ndarray,
        lead_masks: np.ndarray,
        windows: np.ndarray | None,
        meta: dict[str, Any],
    ) -> None:
        import faiss  # here: FAISS loads only when prototypes are used

        self.vectors, self.records, self.meta = vectors, records, meta
        self.beat_record, self.beat_index, self.lead_masks, self.windows = beat_record, beat_index, lead_masks, windows
        # computed once: every search centres its queries on these
        self.overall_mean = vectors.mean(0, dtype=np.float64).astype(np.float32) if len(vectors) else None
        self.position_means = position_means(vectors, beat_index, self.overall_mean)
        self.index = faiss.IndexFlatIP(int(vectors.shape[1]))
        self.index.add(self.centred(vectors, beat_index))
        self._keys: tuple[dict, dict, dict] | None = None  # `_record_keys`, built when first needed

    def centred(self, vectors: np.ndarray, positions: np.ndarray | Sequence[int] | None) -> np.ndarray:
        """`vectors` minus the reference mean of their beat position (the mean of all reference beats where a
        position is None or beyond the reference set's), re-normalised: what the search compares."""
        out = np.array(vectors, dtype=np.float32, copy=True).reshape(-1, self.vectors.shape[1])
        if len(self.position_means) and len(out):
            fallback = self.overall_mean
            if positions is None:
                out -= fallback
            else:
                pos = np.asarray(positions, dtype=np.int64).reshape(-1)
                if len(pos) != len(out):
                    raise ConfigError(f"{len(pos)} beat positions for {len(out)} query beats")
                known = (pos >= 0) & (pos < len(self.position_means))
                out[known] -= self.position_means[pos[known]]
                out[~known] -= fallback
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norms, 1e-12))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return f"PrototypeIndex({len(self)} beats of {len(self.records)} records, dim {self.index.d})"

    @property
    def identity(self) -> dict[str, str]:
        """The identity (`model_identity`) of the model that built the index."""
        return dict(self.meta["model"])

    def check_model(
        self, model: EcgLangModel, where: str | os.PathLike | None = None, processor: EcgProcessor | None = None
    ) -> None:
        """`PrototypeModelMismatch` unless `model` is the model that built this index, and, given a `processor`,
        unless its `preprocess` and `beats` settings are those the index's beats were prepared with (recorded in
        meta.json; an index that recorded none is not checked): beats filtered or cut otherwise are embedded from
        other windows, and the figures would draw them beside the index's as comparable."""
        ours = model_identity(model)
        theirs = self.identity
        differ = [k.removesuffix("_sha256") for k in ("config_sha256", "weights_sha256") if ours[k] != theirs.get(k)]
        if differ:
            name = self.meta.get("model_name") or "another model"
            raise PrototypeModelMismatch(
                f"{where or 'prototype index'}: built with {name}, whose {' and '.join(differ)} differ from the "
                "model given; rebuild it with `ecglang prototypes build --model ...` for this model"
            )
        settings = self.processor_differences(processor) if processor is not None else []
        if settings:
            shown = "; ".join(f"{key}: {built} in the index, {given} given" for key, built, given in settings[:4])
            more = f" and {len(settings) - 4} more" if len(settings) > 4 else ""
            raise PrototypeModelMismatch(
                f"{where or 'prototype index'}: its beats were prepared with other settings than the processor "
                f"given ({shown}{more}); query it with the processor it was built with (EcgProcessor.from_dict of "
                "meta.json's 'processor'), or rebuild it with this one (build_prototypes(..., processor=...))"
            )

    def processor_differences(self, processor: EcgProcessor) -> list[tuple[str, Any, Any]]:
        """`(setting, value in the index, value of processor)` for each `preprocess` and `beats` setting that
        meta.json records and `processor` sets otherwise (none when the index recorded no processor)."""
        recorded = self.meta.get("processor")
        if not isinstance(recorded, dict) or not hasattr(processor, "to_dict"):
            return []
        # through JSON, as meta.json holds them: tuples are lists there
        given = json.loads(json.dumps(processor.to_dict(), default=str))
        out = []
        for section in ("preprocess", "beats"):
            theirs, ours = recorded.get(section), given.get(section)
            if not isinstance(theirs, dict) or not isinstance(ours, dict):
                continue
            for key, value in theirs.items():  # a setting added since the index was built is not in it
                if key in ours and ours[key] != value:
                    out.append((f"{section}.{key}", value, ours[key]))
        return out

    def search(
        self,
        queries: np.ndarray,
        k: int = 3,
        exclude: Sequence[str | None] | None = None,
        positions: np.ndarray | Sequence[int] | None = None,
        exclude_paths: Sequence[str | os.PathLike | None] | None = None,
    ) -> list[list[PrototypeMatch]]:
        """The `k` nearest reference beats of each query beat embedding `[q, D]`, best first.

        `positions[i]`: the beat index of query `i` in its record, for position centring (None: the queries are
        centred on the mean of all reference beats). `exclude_paths[i]` and `exclude[i]`: the file and the id of
        query `i`'s record, whose beats it must not return (when it is in the reference set: a case-based
        explanation that shows the ECG itself explains nothing). A reference record is left out when its file
        (resolved) is the query's; where either has no file (a record indexed or scored from memory), when its id
        is the query's up to a `#n` repeat suffix (without files, records of one stem cannot be told apart). The
        search fetches as many more neighbours as it leaves out beats, so `k` matches come back while the index
        holds `k` others. A match's `similarity` is the cosine of the centred vectors."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        unit = np.asarray(queries, dtype=np.float32).reshape(-1, self.index.d)
        if not len(self):  # an index built in memory from no beats (folders without beats are refused): FAISS
            return [[] for _ in range(len(unit))]  # asserts k > 0
        unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        q = self.centred(unit, positions)
        skips = self._excluded(len(q), exclude, exclude_paths)
        # exactly as many more as the most beats any query leaves out: k matches remain after leaving them out
        beats = np.bincount(self.beat_record, minlength=len(self.records))
        extra = max((int(beats[sorted(skip)].sum()) for skip in set(skips) if skip), default=0)
        sims, rows = self.index.search(q, min(len(self), k + extra))
        out = []
        for i in range(len(q)):
            hits = []
            for sim, row in zip(sims[i], rows[i], strict=True):
                if row < 0 or int(self.beat_record[row]) in skips[i]:
                    continue
                rec = self.records[int(self.beat_record[row])]
                hits.append(PrototypeMatch(rec["id"], int(self.beat_index[row]), float(sim), rec.get("report"),
                                           int(row), rec.get("source")))  # fmt: skip
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    def _excluded(
        self, n: int, ids: Sequence[str | None] | None, paths: Sequence[str | os.PathLike | None] | None
    ) -> list[frozenset[int]]:
        """The rows in `records` of each query's own record (`search`), found once per distinct query record."""
        for name, given in (("exclude", ids), ("exclude_paths", paths)):
            if given is not None and len(given) != n:
                raise ConfigError(f"{len(given)} {name} entries for {n} query beats")
        if ids is None and paths is None:
            return [frozenset()] * n
        by_file, by_bare_id, by_id = self._record_keys()
        found: dict[tuple[str | None, str | os.PathLike | None], frozenset[int]] = {}
        out = []
        for i in range(n):
            key = (None if ids is None else ids[i], None if paths is None else paths[i])
            if key not in found:
                rid, file = _stem(key[0]), _resolved(key[1])
                rows = (by_file.get(file, []) + by_bare_id.get(rid, [])) if file else by_id.get(rid, [])
                found[key] = frozenset(rows)
            out.append(found[key])
        return out

    def _record_keys(self) -> tuple[dict[str, list[int]], dict[str | None, list[int]], dict[str | None, list[int]]]:
        """(resolved file → record rows, id stem → rows of records without a file, id stem → rows): built on the
        first search that excludes, as resolving every reference file costs a stat per path component."""
        if self._keys is None:
            by_file: dict[str, list[int]] = {}
            by_bare_id: dict[str | None, list[int]] = {}
            by_id: dict[str | None, list[int]] = {}
            for r, rec in enumerate(self.records):
                file = _resolved(rec.get("source"))
                (by_file.setdefault(file, []) if file else by_bare_id.setdefault(_stem(rec["id"]), [])).append(r)
                by_id.setdefault(_stem(rec["id"]), []).append(r)
            self._keys = (by_file, by_bare_id, by_id)
        return self._keys

    def window(self, row: int) -> np.ndarray | None:
        """The beat window `[12, beat_len]` (float32) of index row `row`, or None when windows were not kept."""
        return None if self.windows is None else np.asarray(self.windows[row], dtype=np.float32)

    # ---------------------------------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index folder (atomically; see the module docstring). It replaces the folder as a whole, so
        the folder must be new, empty or an index (`OutputPathError` otherwise: nothing of a user's is deleted)."""
        check_replaceable_folder(directory, is_prototype_folder, "prototype index")
        with atomic_directory(directory) as tmp:
            self.write(tmp)
        return Path(directory)

    def write(self, folder: Path) -> None:
        """Write every file of the index into `folder` (the caller makes it atomic)."""

        write_array(folder / VECTORS_FILE, self.vectors, "<f4")
        for (name, _, dtype), array in zip(LAYOUT, (self.beat_record, self.beat_index, self.lead_masks), strict=True):
            write_array(folder / name, array, dtype)
        if self.windows is not None and WINDOWS_FILE not in {p.name for p in folder.iterdir()}:
            with open(folder / WINDOWS_FILE, "wb") as fh:
                for start in range(0, len(self.windows), 4096):  # in chunks: the windows may be memory-mapped
                    fh.write(np.ascontiguousarray(self.windows[start : start + 4096], dtype=np.float16).tobytes())
        with open(folder / "records.jsonl", "w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(
        cls, directory: str | os.PathLike, model: EcgLangModel | None = None, processor: EcgProcessor | None = None
    ) -> PrototypeIndex:
        """Read an index folder; with `model` (and `processor`), check that they built the index
        (`check_model`: `PrototypeModelMismatch`). A folder without beats is a `PrototypeError`: nothing to search."""

        folder = Path(directory)
        meta_path = folder / "meta.json"
        try:
            meta = parse_json(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, JsonInputError) as exc:
            raise PrototypeError(f"{meta_path}: not a readable prototype index ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise PrototypeError(f"{folder}: prototype index format {found!r}, expected {FORMAT_VERSION}; rebuild it")
        if not isinstance(meta.get("model"), dict):
            raise PrototypeError(f"{meta_path}: 'model' must be the identity of the model that built the index")
        n, dim = meta.get("n_beats"), meta.get("dim")
        if n == 0:  # written before builds refused it, or by hand: FAISS failed at the first search (assert k > 0)
            raise PrototypeError(f"{meta_path}: the index holds no beats (n_beats 0), so it has nothing to show; "
                                 "rebuild it from records whose beats are detected")  # fmt: skip
        arrays = {}
        for name, shape, dtype in ((VECTORS_FILE, (n, dim), "<f4"), *((f, (n, *rest), t) for f, rest, t in LAYOUT)):
            try:
                arrays[name] = read_array(folder / name, shape, dtype, finite=name == VECTORS_FILE)
            except ArrayFileError as exc:
                raise PrototypeError(f"{folder / name}: not this index's array: {exc}; rebuild the index") from None
        records = _read_records(folder / "records.jsonl")
        seen: dict[str, int] = {}
        for rec in records:  # folders built before ids were made unique repeat a stem: the ids a rebuild gives
            rec["id"] = unique_id(rec["id"], seen)
        windows = None
        if meta.get("windows_shape") is not None:
            raw = meta["windows_shape"]
            shape = tuple(raw) if isinstance(raw, list) else (raw,)
            if len(shape) != 3 or shape[:2] != (n, N_LEADS) or not all(is_count(v) for v in shape):
                raise PrototypeError(f"{meta_path}: windows_shape {shape!r:.80} does not fit {n} beats")
            try:
                windows = np.memmap(folder / WINDOWS_FILE, dtype=np.float16, mode="r", shape=shape) if shape[0] else (
                    np.zeros(shape, np.float16))  # fmt: skip
            except (OSError, ValueError) as exc:  # a file shorter than the shape: mmap refuses, nothing is read
                raise PrototypeError(f"{folder / WINDOWS_FILE}: not this index's windows ({exc})") from None
        beat_record, beat_index, lead_masks = (arrays[f] for f, _, _ in LAYOUT)
        if n and (int(beat_record.min()) < 0 or int(beat_record.max()) >= len(records)):
            raise PrototypeError(f"{folder}: beat_record.npy names records that records.jsonl lacks; rebuild it")
        if n and int(beat_index.min()) < 0:
            raise PrototypeError(f"{folder}: beat_index.npy holds negative beat indexes; rebuild it")
        result = cls(arrays[VECTORS_FILE], records, beat_record, beat_index, lead_masks, windows, meta)
        if model is not None:
            result.check_model(model, folder, processor)
        return result


def _report_of(
    uid: str, source: str | None, reports: Mapping[str, str], by_file: Mapping[str, str], ambiguous: frozenset[str]
) -> str | None:
    """A record's report (`build_prototypes`): by its file, else its id in the index, else its name."""
    if source is not None and by_file:
        report = by_file.get(record_file_key(source))
        if report is not None:
            return report
    rid = _stem(uid)
    if rid in ambiguous and uid not in reports:  # the table names several files so, none of them this one
        log.warning("%s (%s): the reports table gives other files of this name different reports, and not this "
                    "file (relative paths are taken from the table's folder): indexed without a report", uid,
                    source)  # fmt: skip
        return None
    return reports.get(uid, reports.get(rid))


def _stem(rid: str | None) -> str | None:
    """`rid` without the `#n` that `unique_id` gives a repeated stem."""
    return None if rid is None else repeated_stem(rid)


def _resolved(path: str | os.PathLike | None) -> str | None:
    """`path` resolved (symbolic links followed), so that one file given two ways is one record; None for none."""
    return str(Path(path).resolve()) if path else None


def _read_records(path: Path) -> list[dict[str, Any]]:
    """records.jsonl: one JSON object a line (parsed as data; `PrototypeError` naming the file and line)."""
    records, number = [], 0
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):  # noqa: B007 - `number` names the line in the error below
                if line.strip():
                    record = parse_json(line)
                    if not isinstance(record, dict):
                        raise JsonInputError(f"expected an object, got {type(record).__name__}")
                    if not isinstance(record.get("id"), str):  # search and the tables read ids and files as text
                        raise JsonInputError(f"'id' must be a string, got {record.get('id')!r:.80}")
                    if not all(isinstance(record.get(k), str | None) for k in ("report", "source")):
                        raise JsonInputError("'report' and 'source' must be strings or null")
                    records.append(record)
    except (OSError, UnicodeDecodeError) as exc:
        raise PrototypeError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    except JsonInputError as exc:
        raise PrototypeError(f"{path}: line {number}: {exc}") from None
    return records


# --------------------------------------------------------------------------------------------- build
def build_prototypes(
    model: EcgLangModel,
    records: Any,
    out: str | os.PathLike,
    *,
    processor: EcgProcessor | None = None,
    reports: Mapping[str, str] | None = None,
    beats_per_record: int | None = None,
    keep_windows: bool = True,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[PrototypeIndex, list[RecordFailure]]:
    """Embed every beat of `records` (paths, folders, `Ecg`s: what zero-shot takes) with `model` through the
    embedding pipeline and write the index folder `out` (atomically). Returns the loaded index and the records
    that failed.

    `reports`: record id → report (see `read_reports`); None (default): PTB-XL's `ptbxl_database.csv` found
    beside the first record path (`find_reports`, as `ecglang prototypes build` does), if any; a record's own
    `Ecg.report` is used otherwise. A record's report is found by its file first (`Reports.by_file`, from a
    table keyed by path), then by its id in the index (`00001_hr#2` for a name repeated in another folder),
    then by its name.
    Raises `PrototypeError` (and writes nothing) when no beat is indexed: every record failed.
    `beats_per_record`: keep at most this many beats of a record, evenly spaced (default: all).
    `keep_windows`: store each beat's window for figures (2 bytes × 12 × beat_len a beat)."""
    import faiss  # here: FAISS loads only when prototypes are used

    if not model.config.is_beat_model:
        raise ConfigError(f"prototypes need beat embeddings; the {model.config.ecg_tower['type']} tower has none")
    if beats_per_record is not None and beats_per_record < 1:
        raise ConfigError(f"beats_per_record must be >= 1, got {beats_per_record}")
    # checked before any work: the index replaces `out` as a whole, which must not be the records or a user's
    check_replaceable_folder(out, is_prototype_folder, "prototype index")
    processor = processor or default_processor(model)
    source = ItemSource(list(expand_inputs(records, None, None)), window=processor.preprocess_config.read_window())
    if reports is None:
        first = next((item for item in source.items if isinstance(item, Path)), None)
        found = find_reports(first) if first is not None else None
        reports = read_reports(found) if found else {}
    by_file, ambiguous = getattr(reports, "by_file", {}), getattr(reports, "ambiguous", frozenset())
    reports = dict(reports)
    embeddings: list[np.ndarray] = []
    recs: list[dict[str, Any]] = []
    beat_record: list[np.ndarray] = []
    beat_index: list[np.ndarray] = []
    lead_masks: list[np.ndarray] = []
    failures: list[RecordFailure] = []
    seen: dict[str, int] = {}  # `unique_id`'s counts: a stem repeated in another folder is `#2`, as in zero-shot
    beat_len = int(model.config.ecg_tower["beat_len"])
    with atomic_directory(out) as tmp, open(tmp / WINDOWS_FILE, "wb") as windows:
        batches = encode_batches(source, model, processor, batch_size=batch_size, num_workers=num_workers, full=True,
                                 progress=progress, desc="prototype beats")  # fmt: skip
        for batch in batches:
            failures.extend(batch.failures)
            for row, rid in enumerate(batch.record_ids):
                # every record counts, as zero-shot's ids do, so the same inputs get the same ids in both
                uid = unique_id(rid or f"record{sum(seen.values())}", seen)
                ecg, tokens = batch.views[row]
                n = int(tokens.n_beats)
                keep = np.arange(n) if beats_per_record is None or n <= beats_per_record else (
                    np.unique(np.linspace(0, n - 1, beats_per_record).round().astype(int)))  # fmt: skip
                if not len(keep):
                    path = str(ecg.metadata.get("source_path") or "")
                    failures.append(RecordFailure(rid or "<record>", "process", "no beat detected", path=path))
                    continue
                embeddings.append(batch.outputs["model"].beat_embeds[row, keep].float().cpu().numpy())
                if keep_windows:
                    windows.write(np.ascontiguousarray(tokens.beats[keep], dtype=np.float16).tobytes())
                source = str(ecg.metadata.get("source_path") or "") or None
                report = _report_of(uid, source, reports, by_file, ambiguous) or ecg.report or None
                recs.append({"id": uid, "report": report, "source": source})
                beat_record.append(np.full(len(keep), len(recs) - 1, np.int32))
                beat_index.append(keep.astype(np.int16))
                lead_masks.append(np.repeat(np.asarray(tokens.lead_mask, bool)[None], len(keep), 0))
        if not embeddings:  # an index of no beats loaded, and then failed in FAISS at the first search
            said = [str(f) for f in failures[:3]] + ([f"and {len(failures) - 3} more"] if len(failures) > 3 else [])
            cause = f"every record failed ({len(failures)}: {'; '.join(said)})" if failures else "no records given"
            raise PrototypeError(f"{out}: no beats indexed: {cause}; no index was written")
        emb = np.ascontiguousarray(np.concatenate(embeddings), dtype=np.float32)
        dim = int(emb.shape[1])
        faiss.normalize_L2(emb)
        counts = [len(b) for b in beat_record]
        meta = {
            "format": FORMAT_VERSION,
            "model": model_identity(model),
            "model_name": str(getattr(model, "name_or_path", "") or "") or None,
            "processor": processor.to_dict() if hasattr(processor, "to_dict") else None,
            "dim": dim,
            "n_beats": len(emb),
            "n_records": len(recs),
            "max_beats_per_record": max(counts, default=0),
            "n_with_report": sum(bool(r["report"]) for r in recs),
            "windows_shape": [len(emb), N_LEADS, beat_len] if keep_windows else None,
        }
        result = PrototypeIndex(
            emb,
            recs,
            np.concatenate(beat_record) if beat_record else np.zeros(0, np.int32),
            np.concatenate(beat_index) if beat_index else np.zeros(0, np.int16),
            np.concatenate(lead_masks) if lead_masks else np.zeros((0, N_LEADS), bool),
            None,
            meta,
        )
        windows.close()
        if not keep_windows:
            (tmp / WINDOWS_FILE).unlink()
        result.write(tmp)
    return PrototypeIndex.load(out), failures

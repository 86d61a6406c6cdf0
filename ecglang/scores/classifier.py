"""Zero-shot classification: the user's labels or prompts scored against ECG embeddings.

Flow: inputs (records, paths, folders, arrays) → `load_ecg` → `EcgProcessor` → `EcgLangModel.encode_ecg`
→ cosine with cached label embeddings → a records × labels DataFrame (+ explanations on request).

Scores
    `cosine` (default): cosine similarity between the ECG's rhythm embedding and the label embedding.
        Use it for ranking and AUROC; it is what the published protocol reports.
    `softmax`: softmax over the labels of `logit_scale × cosine`. Use it when exactly one label is true
        (single-label tasks: rate class, rhythm class); rows sum to 1.
    `sigmoid`: `sigmoid(logit_scale × (cosine − threshold))`, independently per label. Use it for
        multi-label tasks when you want scores in (0, 1). Not calibrated: choose `threshold` on your own
        validation data. Its ranking, and so AUROC, equals cosine's.

Label embeddings
    `ecglang.scores.labels`: the re-normalised mean of a label's prompt embeddings, mixed with its retrieved
    knowledge prompts (`knowledge_weight`, default 0.75).

Throughput
    Records go through `ecglang.embeddings.pipeline` (the one records → embeddings path). Without
    explanations only the rhythm embedding is computed, in DataLoader worker processes (`num_workers`; by
    default when there are at least two batches and processes start by fork; 0: all in this process). On a
    CPU with at most `MAX_ENCODING_WORKERS` (4) usable cores there is one worker per core, and each reads,
    preprocesses, cuts beats *and* runs the encoder (torch on one thread) for its own batches of 16, while
    this process only collects (`pipeline.encode_in_workers`). With more cores, one worker per spare core
    (up to 4) reads, preprocesses and cuts beats while this process runs the encoder, with torch on the cores
    the workers leave free (restored afterwards). `score_arrays` scores in-memory `[12, T]` arrays and
    `score_cache` the rows of a `SignalCache` or prepared folder (already preprocessed: only beats are cut),
    with memory O(batch) whatever the number of records.

Explanations
    `ecglang.scores.explain`: beat contributions from beat-level similarities, lead contributions by leaving each
    lead out (occlusion; no gradients), and the beat tower's lead and beat attention maps.

Prototypes (case-based explanations)
    Given a `PrototypeIndex` (`ecglang.embeddings.prototypes`, built from a reference set such as the pretraining
    pairs), every explanation also carries the `prototype_k` reference beats nearest to the label's most
    contributing beat, with their records' reports and files (`ZeroShotResult.prototype_table`). Beats of the
    scored record itself are left out (the same file, resolved; the same id where either has no file), and only
    those: another folder's record of the same stem is another record. This runs the explanation path, so
    explanations are returned (`__call__` only: `score_arrays` and `score_cache` score without explanations).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from ecglang.core.jsonio import is_count
from ecglang.embeddings.pipeline import (
    Precision,
    check_precision,
    default_processor,
    encode_batches,
)
from ecglang.embeddings.prototypes import PrototypeIndex
from ecglang.embeddings.sources import (
    ArraySource,
    CacheSource,
    EcgInput,
    ItemSource,
    RecordSource,
    check_fs,
    expand_inputs,
    input_ids,
)
from ecglang.encoders.ecg_processing import LEAD_ORDERS, EcgProcessor
from ecglang.encoders.modeling import EcgLangModel, load_model
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.errors import ConfigError, RecordFailure
from ecglang.record.ecg import Ecg, record_id_of, unique_id
from ecglang.scores import labels as label_embeddings
from ecglang.scores.explain import Explanation, explain_record, lead_occlusion, unit_rows
from ecglang.scores.labels import KnowledgeArg, LabelSpec, resolve_knowledge
from ecglang.scores.prompts import LabelsArg, PromptSource

if TYPE_CHECKING:  # the data layer (and `datasets`, 0.35 s) loads only when a cache is scored
    from ecglang.data.cached_rows import CachedRows

__all__ = ["EcgInput", "Explanation", "LabelSpec", "RecordFailure", "ScoreMode", "ZeroShotClassifier",
           "ZeroShotResult", "resolve_knowledge"]  # fmt: skip

logger = logging.getLogger(__name__)

ScoreMode = Literal["cosine", "softmax", "sigmoid"]
SCORE_MODES = ("cosine", "softmax", "sigmoid")


def _free_name(names: tuple[str, str], taken: set[str]) -> str:
    """The first of `names`, then `names[1]_2`, `_3`, …, that no column of `taken` has."""
    candidates = itertools.chain(names, (f"{names[1]}_{i}" for i in itertools.count(2)))
    return next(n for n in candidates if n not in taken)


SHORT_RECORD_SLACK_S = 0.5  # `ZeroShotResult.short_records`: how much shorter than the window a record must be


@dataclass
class ZeroShotResult:
    """Scores (records × labels), the labels' prompts and snippets, failures, and optional explanations.

    `sources` (indexed like `scores`): the file each record was read from (`Ecg.metadata["source_path"]`,
    absolute), None for a record without one (an array, an `Ecg` made in memory, a `SignalCache` row). Record ids
    are file stems, made unique with a suffix (`00317_lr#2` for a second folder's `00317_lr`): the path is what
    joins a row back to its file.

    `failures`: the records left out and why. A failure's `record` is its file as given (the CLI prints and
    writes it so) where it came from one, else the id its row would have had (`array3`, `record7` for an `Ecg`
    without an id, the `Ecg`'s `record_id`); `path` is its file. `failure_ids` holds every failure's would-be
    row id (a file's stem, numbered as the rows are), the key `ranked` and `to_dict` join failures by."""

    scores: pd.DataFrame
    labels: dict[str, LabelSpec]
    failures: list[RecordFailure]
    mode: str
    explanations: dict[str, dict[str, Explanation]] | None = None
    durations: pd.Series | None = None  # each scored record's length in seconds (the whole file, not the part read)
    window: tuple[float, str] | None = None  # (seconds, "start" / "center"): the part of a record the model scores
    sources: pd.Series | None = None  # record id → the file it was read from (None: in memory)
    failure_ids: list[str] | None = None  # the id each failed record's row would have had (parallel to `failures`)

    def long_records(self) -> list[str]:
        """Records longer than the part the model scores (`window`, the processor's crop): each was scored on
        that part only (its first 10 s for the bundled model, as in the published protocol)."""
        if self.durations is None or self.window is None:
            return []
        return [str(rid) for rid, sec in self.durations.items() if sec > self.window[0] + 1e-6]

    def short_records(self) -> list[str]:
        """Records shorter than the part the model scores (`window`): each was padded to it (with zeros for the
        bundled model: the processor's `pad`), so its scores, above all rhythm and rate labels, are unreliable (a
        3 s strip padded to 10 s reads as a slow rhythm). Scores are not changed; the CLI prints a note naming them.
        A `SignalCache` row is stored padded, so a record scored from a cache is never listed here. Listed: records
        more than `SHORT_RECORD_SLACK_S` (0.5 s) short; a few padded samples (a 9.998 s export) change nothing."""
        if self.durations is None or self.window is None:
            return []
        return [str(rid) for rid, sec in self.durations.items() if sec < self.window[0] - SHORT_RECORD_SLACK_S]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (`json.dumps(result.to_dict())`), as a pipeline returns: the mode, each record's
        scores by label, each label's name, prompts and the snippets behind it, the failures, each record's length
        (`seconds`) and file (`sources`: its path, or None for a record scored from memory). A failure is its
        record (the id its row would have had, `failure_ids`: the key of `scores`), path (its file, None in
        memory), stage and error: the columns of the CLI's failures CSV, whose `record` is the file as given."""
        return {
            "mode": self.mode,
            "scores": {str(rid): {str(k): float(v) for k, v in row.items()} for rid, row in self.scores.iterrows()},
            "labels": {
                label: {"name": spec.name, "prompts": list(spec.prompts),
                        "knowledge_prompts": list(spec.knowledge_prompts),
                        "snippets": [dict(s) for s in spec.snippets]}
                for label, spec in self.labels.items()
            },
            "failures": [failure_row(f, rid) for f, rid in zip(self.failures, self._failure_ids(), strict=True)],
            "seconds": {} if self.durations is None else {str(r): float(v) for r, v in self.durations.items()},
            "sources": {} if self.sources is None else {str(r): self.source_of(r) for r in self.sources.index},
        }  # fmt: skip

    def _failure_ids(self) -> list[str]:
        return [f.record for f in self.failures] if self.failure_ids is None else list(self.failure_ids)

    def source_of(self, record_id: str) -> str | None:
        """The file `record_id` was read from; None when it was scored from memory (or `sources` is unknown)."""
        path = None if self.sources is None else self.sources.get(record_id)
        return None if path is None or pd.isna(path) else str(path)

    def _has_paths(self) -> bool:
        return self.sources is not None and bool(self.sources.notna().any())

    def score_table(self, with_path: bool | None = None) -> pd.DataFrame:
        """`scores` with each record's file in a `path` column first (the CLI's `--out` CSV), where any record was
        read from a file: an id such as `00317_lr#2` does not say which folder's `00317_lr` it is. A record
        scored from memory has an empty path beside files; when none has a file the table is `scores` as is,
        unless `with_path=True` (the CLI's: its CSV keeps one layout even when every record failed).
        Where a label is itself called "path", the file column is `record_path` (two columns of one name would
        read back as one), and `record_path_2`, `_3`, … where labels take those too; the same for the record
        column (`record`, then `record_id`, `record_id_2`, …) where a label is called "record"."""
        taken = set(self.scores.columns)
        record = _free_name(("record", "record_id"), taken)
        scores = self.scores.rename_axis(record)
        if not (self._has_paths() if with_path is None else with_path):
            return scores
        name = _free_name(("path", "record_path"), taken | {record})
        paths = pd.Series([self.source_of(r) for r in scores.index], index=scores.index, name=name, dtype=object)
        return pd.concat([paths, scores], axis=1)

    def ranked(self, record_id: str) -> pd.DataFrame:
        """The labels of one record, best first, with their names and the snippets behind them. `KeyError` for a
        record without scores, with the reason where it failed (found by its id or its file)."""
        if record_id not in self.scores.index:
            known = ", ".join(map(str, self.scores.index[:5])) + (", …" if len(self.scores) > 5 else "")
            failed = [f for f, rid in zip(self.failures, self._failure_ids(), strict=True)
                      if record_id in (rid, f.record, f.path)]  # fmt: skip
            why = f" (it failed: {failed[0].reason})" if failed else ""
            raise KeyError(f"no scores for record {record_id!r}{why}; scored records: {known}")
        row = self.scores.loc[record_id].sort_values(ascending=False)
        return pd.DataFrame(
            {
                "label": row.index,
                "name": [self.labels[lab].name for lab in row.index],
                "score": row.to_numpy(),
                "snippets": [", ".join(s["id"] for s in self.labels[lab].snippets) for lab in row.index],
            },
            index=pd.RangeIndex(1, len(row) + 1, name="rank"),
        )

    def top_label(self) -> pd.Series:
        """The best-scoring label of every record."""
        return self.scores.idxmax(axis=1)

    def prototype_table(self, label: str | None = None) -> pd.DataFrame:
        """The nearest prototypes of each record for `label` (default: each record's top label), one row per
        prototype: record, path (as in `score_table`: only where any record was read from a file), label, beat
        (the record's most contributing beat), rank, prototype record, its file (`prototype_path`: two reference
        folders may hold one stem; None for a reference record built from memory) and beat, similarity, report.
        Empty when the classifier had no prototype index."""
        rows = []
        for rid, exps in (self.explanations or {}).items():
            lab = label or str(self.scores.loc[rid].idxmax())
            exp = exps[lab]
            for rank, match in enumerate(exp.prototypes or [], 1):
                rows.append({"record": rid, "label": lab, "beat": exp.prototype_beat, "rank": rank,
                             "prototype_record": match.record_id, "prototype_path": match.path,
                             "prototype_beat": match.beat_index, "similarity": match.similarity,
                             "report": match.report})  # fmt: skip
        columns = ["record", "label", "beat", "rank", "prototype_record", "prototype_path", "prototype_beat",
                   "similarity", "report"]  # fmt: skip
        table = pd.DataFrame(rows, columns=columns)
        if self._has_paths():  # None, not NaN, for a record without a file: the table is also written as JSON
            table.insert(1, "path", [self.source_of(r) for r in table["record"]])
        return table


def failure_row(failure: RecordFailure, record_id: str) -> dict[str, Any]:
    """A failure as plain data: `RecordFailure.to_dict()` with `record_id` (the id its row would have had) as its
    record and its file (`path`, None where it has none) after it: the columns of the CLI's failures CSV."""
    row = failure.to_dict()
    del row["record"]
    return {"record": record_id, "path": failure.path or None, **row}


def _metadata_for(items: Sequence[Any], table: Mapping[str, Mapping[str, Any]] | None) -> list[Mapping] | None:
    """Each input's entry of `table`, by the id its record will get ({} where the table has none)."""
    if table is None:
        return None
    keys = [item.record_id if isinstance(item, Ecg) else record_id_of(item) if isinstance(item, Path) else None
            for item in items]  # fmt: skip
    return [table.get(k, {}) if k else {} for k in keys]


class ZeroShotClassifier:
    """Scores ECGs against labels with an `EcgLangModel`.

    Args:
        model: the model (see `EcgLangModel.from_pretrained`), or a checkpoint name, Hub id or folder, loaded
            with `ecglang.load_model` (as a transformers pipeline takes a model name).
        processor: preprocessing + beats, an `EcgProcessor`; an `EcgLangProcessor` gives its ECG half
            (`.ecg_processor`); default: the one saved with the model, else `EcgProcessor()`.
        knowledge: a `KnowledgeIndex`, a folder with a saved index or knowledge JSONL files, `"default"`
            / `True` for the bundled knowledge base (the default, as in `ecglang zero-shot`), or None / `False` /
            `"off"` / `"none"` for none.
        k: snippets retrieved per label (default 1, `DEFAULT_KNOWLEDGE_K`: chosen by the label-free composition
            check; more snippets add differential diagnoses that blur the label).
        knowledge_weight: weight of the knowledge prompts in a label's embedding (0–1).
        drop_ambiguous_prompts: leave out prompts that the text tower places nearer another label's name than
            their own (`ecglang.scores.labels.drop_ambiguous_prompts`; each spec lists them in `dropped`). Off by
            default: it helped report-derived labels but hurt group labels (PTB-XL CD, sub) end to end (README).
        batch_size: records per forward pass (without explanations: records per prepared batch, which the
            encoder takes 16 at a time on CPU).
        precision: the ECG encoder's arithmetic: `"fp32"` (default, exact), `"bf16"` (autocast to bfloat16:
            ~1.4x faster on CPUs with native bfloat16, e.g. AVX512-BF16 or AMX, and on GPUs; scores move by
            ~1e-3) or `"fp16"` (GPU only). Prompt and knowledge embeddings stay in float32.
        prototypes: a `PrototypeIndex` or its folder, built with this model and processor (else
            `PrototypeModelMismatch`); None (default): no prototypes. prototype_k: reference beats returned per
            explanation.
    """

    def __init__(
        self,
        model: EcgLangModel | str | PathLike,
        processor: EcgProcessor | EcgLangProcessor | None = None,
        knowledge: KnowledgeArg = "default",
        k: int = label_embeddings.DEFAULT_KNOWLEDGE_K,
        knowledge_weight: float = label_embeddings.DEFAULT_KNOWLEDGE_WEIGHT,
        batch_size: int = 64,
        precision: Precision = "fp32",
        prototypes: PrototypeIndex | str | PathLike | None = None,
        prototype_k: int = 3,
        drop_ambiguous_prompts: bool = False,
    ) -> None:
        if not 0.0 <= knowledge_weight <= 1.0:
            raise ConfigError(f"knowledge_weight must be in [0, 1], got {knowledge_weight}")
        for name, value in (("batch_size", batch_size), ("k", k), ("prototype_k", prototype_k)):
            if not is_count(value, 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(model, (str, PathLike)):
            model = load_model(model)
        elif not isinstance(model, EcgLangModel):  # was an AttributeError ('str' object has no attribute 'config')
            raise ConfigError(
                "model must be an EcgLangModel or a checkpoint name or folder (ecglang.load_model), got "
                f"{type(model).__name__} {model!r:.60}"
            )
        if isinstance(processor, EcgLangProcessor):  # the ECG half: the classifier tokenizes its prompts itself
            processor = processor.ecg_processor
        elif processor is not None and not isinstance(processor, EcgProcessor):  # else an error at the first call
            raise ConfigError(
                "processor must be an EcgProcessor (model.get_processor()) or an EcgLangProcessor, got "
                f"{type(processor).__name__} {processor!r:.60}"
            )
        self.model = model  # left in its mode: scoring switches to eval mode and back (`eval_mode`)
        self.processor = default_processor(model) if processor is None else processor
        self.knowledge = resolve_knowledge(knowledge)
        self.k = k
        self.knowledge_weight = float(knowledge_weight)
        self.drop_ambiguous_prompts = bool(drop_ambiguous_prompts)
        self.batch_size = batch_size
        self.precision = check_precision(precision, self.model.device.type)
        if prototypes is not None and not isinstance(prototypes, PrototypeIndex):
            prototypes = PrototypeIndex.load(prototypes, model=self.model, processor=self.processor)
        elif prototypes is not None:
            prototypes.check_model(self.model, processor=self.processor)
        self.prototypes = prototypes
        self.prototype_k = prototype_k

    # -- labels ------------------------------------------------------------------------------------
    def label_specs(
        self, labels: LabelsArg | None = None, prompts: PromptSource | None = None, knowledge: KnowledgeArg = "inherit"
    ) -> dict[str, LabelSpec]:
        """Resolve the user's labels/prompts (and retrieve knowledge) into one `LabelSpec` per label."""
        inherit = isinstance(knowledge, str) and knowledge == "inherit"
        index = self.knowledge if inherit else resolve_knowledge(knowledge)
        return label_embeddings.label_specs(self.model, labels, prompts, index, self.k, self.drop_ambiguous_prompts)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Unit embeddings `[n, D]` of prompts, cached per model: each distinct prompt is embedded once."""
        return label_embeddings.embed_texts(self.model, texts, batch_size)

    def label_matrix(self, specs: dict[str, LabelSpec], head: str = "text", progress: bool = True) -> np.ndarray:
        """`[n_labels, D]` label embeddings (see `ecglang.scores.labels` for the aggregation)."""
        return label_embeddings.label_matrix(self.model, specs, self.knowledge_weight, head, progress)

    # -- scoring -----------------------------------------------------------------------------------
    def __call__(
        self,
        ecgs: EcgInput | Iterable[EcgInput],
        labels: LabelsArg | None = None,
        prompts: PromptSource | None = None,
        *,
        knowledge: KnowledgeArg = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        explain: bool = False,
        fs: float | None = None,
        leads: str | Sequence[str] | None = None,
        progress: bool = True,
        num_workers: int | None = None,
        keep_signals: int = 0,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ZeroShotResult:
        """Score `ecgs` against `labels` / `prompts`.

        `ecgs`: an `Ecg`, a path (str, os.PathLike, or bytes decoded with `os.fsdecode`), a folder (every record
        inside), a `[leads, samples]` array or tensor (give `fs`; `leads`, a list or a string such as "I,II",
        defaults to the canonical 12; a tensor of a dtype numpy lacks, such as bfloat16, is read as float32), a
        `[N, leads, samples]` batch, or an iterable of those. An array `[samples, leads]` (rows ≠ lead count,
        columns = lead count) is transposed, as `load_ecg` does for a `.npy` file. `labels`: label names, a
        prompt-set name (e.g. "ptbxl_super") or a `PromptSet`; `prompts`: a dict label → prompt(s). Bad records
        do not stop the run: they are listed in `result.failures`, as is an input of an unsupported type (None, a
        number) in a list; a bare input of such a type is a `ConfigError`. `num_workers`: processes that read and
        prepare records, and on at most 4 cores also encode them (None: automatic, see the module docstring's
        Throughput; 0: all in this process; not used with `explain`).
        `keep_signals`: with `explain`, the first this many explained records keep the prepared signal and
        beats the model saw (`Explanation.signal`/`.tokens`), for figures without reading them again. With a
        prototype index, explanations are computed (and returned) whatever `explain` says. `metadata`: record
        id (a file's stem, an `Ecg`'s `record_id`) → `Ecg.metadata` entries such as age and sex
        (`ecglang.record.demographics.read_demographics_table`), filling what a record's header lacks; only a
        tower with `demographics: true` reads age and sex.

        What applies to the whole call is checked before anything is read, and a mistake in it is a
        `ConfigError`, not a table of failed records: `fs` (one rate in Hz for every array: arrays of different
        rates are given as `ecglang.Ecg(x, fs)` each), an array without `fs`, `leads` that name no leads or fit
        neither axis of an array, a pandas DataFrame (pass `df.to_numpy().T, leads=list(df.columns)`).

        Each row is named by its input's id: a file's stem (`00317_lr#2` for a second input of that stem, whether
        the first was scored or failed), an `Ecg`'s `record_id`, `array{n}` for an array, `record{i}` (its
        position among the inputs) for an `Ecg` without an id. A failed input without a file is named the same
        way; a failed file by its file as given (`RecordFailure.path` holds it too). `result.failure_ids` gives
        every failure's would-be row id, and `result.ranked(id)` of a failed record says why it failed.
        """
        check_mode(mode, threshold)
        fs = check_fs(fs)
        items = list(expand_inputs(ecgs, fs, leads))  # before the labels: an argument error costs no embedding
        names = input_ids(items)
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs, progress=progress))
        window = self.processor.preprocess_config.read_window()  # a Holter record is read only as far as used
        source = ItemSource(items, fs, leads, window=window, metadata=_metadata_for(items, metadata))
        if not explain and self.prototypes is None:
            return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress, names)
        sent_emb = torch.from_numpy(self.label_matrix(specs, head="sentence", progress=progress))
        ids: list[str] = []
        seconds: list[float] = []
        sources: list[str | None] = []
        blocks: list[np.ndarray] = []
        failures: list[RecordFailure] = []
        failure_ids: list[str] = []
        explanations: dict[str, dict[str, Explanation]] = {}
        batches = encode_batches(source, self.model, self.processor, batch_size=self.batch_size, num_workers=0,
                                 precision=self.precision, full=True, progress=progress, desc="zero-shot",
                                 output_attentions=True)  # fmt: skip
        for batch in batches:
            name_failures(batch, names, failures, failure_ids)
            if not batch.record_ids:
                continue
            blocks.append((unit_rows(batch.rhythm["model"]) @ label_emb.T).numpy())
            seconds.extend(batch.seconds)
            sources.extend(batch.sources)
            nearest = self._nearest_prototypes(batch)
            for row, position in enumerate(batch.positions):
                rid = names[position]
                ids.append(rid)
                leads = lead_occlusion(self.model, self.processor, batch.views[row], label_emb, blocks[-1][row],
                                       self.precision)  # fmt: skip
                explanations[rid] = explain_record(batch.outputs["model"], row, batch.views[row], rid,
                                                   blocks[-1][row], specs, sent_emb,
                                                   keep_signal=len(explanations) < keep_signals,
                                                   beat_prototypes=nearest[row], lead_scores=leads,
                                                   lead_order=LEAD_ORDERS[self.processor.lead_order])  # fmt: skip
        return self._result(blocks, ids, specs, (failures, failure_ids), mode, threshold, explanations, seconds,
                            sources)  # fmt: skip

    def _nearest_prototypes(self, batch: Any) -> list[list[list[Any]] | None]:
        """For each row of an encoded batch, the nearest prototypes of each of its real beats (one FAISS search
        for the whole batch), leaving out the row's own record (its file; its id when it has none); None per row
        without an index."""
        n_rows = len(batch.record_ids)
        out = batch.outputs["model"]
        if self.prototypes is None or out.beat_embeds is None:
            return [None] * n_rows
        counts = [int(view[1].n_beats) for view in batch.views]
        queries = np.concatenate([out.beat_embeds[r, :c].float().cpu().numpy() for r, c in enumerate(counts)])
        exclude = [rid for rid, c in zip(batch.record_ids, counts, strict=True) for _ in range(c)]
        paths = [src for src, c in zip(batch.sources, counts, strict=True) for _ in range(c)]
        positions = np.concatenate([np.arange(c) for c in counts])  # each query beat's index: position centring
        matches = self.prototypes.search(queries, self.prototype_k, exclude=exclude, positions=positions,
                                         exclude_paths=paths)  # fmt: skip
        bounds = np.cumsum([0, *counts])
        return [matches[bounds[r] : bounds[r + 1]] for r in range(n_rows)]

    def score_arrays(
        self,
        signals: np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor],
        fs: float,
        labels: LabelsArg | None = None,
        prompts: PromptSource | None = None,
        *,
        lead_masks: np.ndarray | Sequence[np.ndarray] | None = None,
        record_ids: Sequence[str] | None = None,
        preprocessed: bool = False,
        knowledge: KnowledgeArg = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> ZeroShotResult:
        """Score decoded signals in canonical lead order: an array or tensor `[N, 12, T]`, one record `[12, T]`
        (as the call takes it; its mask is `[12]`), or a sequence of `[12, T_i]` arrays or tensors.

        `fs`: their sampling rate, one number (`ConfigError` otherwise: arrays of different rates are scored in
        separate calls). `lead_masks`: `[N, 12]` (default: all leads present). `record_ids`: row names (default
        `array0`, `array1`, ...). `preprocessed=True`: the signals already went through this model's
        preprocessing (e.g. rows of a `SignalCache`), so only beats are cut. An array or tensor of
        another rank is a `ConfigError`; arrays of a sequence with the wrong shape (a `[T, 12]` one is not
        transposed here: the order is canonical) or with a bad mask are listed in `result.failures` like
        unreadable files.
        """
        check_mode(mode, threshold)
        rate = check_fs(fs, required=True)  # None, "500" or a list were raw numpy errors
        source = ArraySource(signals, rate, lead_masks, record_ids, preprocessed)
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs, progress=progress))
        return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress)

    def score_cache(
        self,
        cache: CachedRows | str | PathLike,
        labels: LabelsArg | None = None,
        prompts: PromptSource | None = None,
        *,
        rows: Sequence[int] | None = None,
        knowledge: KnowledgeArg = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> ZeroShotResult:
        """Score the records of a `SignalCache`, or of a prepared folder's shards (`ecglang data build --out`),
        given opened or as a folder; rows are read from the signal files a batch at a time, so memory does not
        grow with the number of records.

        `rows`: the cache rows to score (default: all; rows that failed when the cache was built are listed
        in `result.failures`). Record ids are the cache's ids. Raises `ConfigError` when the cache was built
        with other preprocessing than this classifier's processor uses.
        """
        from ecglang.data.prepared import open_cache  # here: the data layer is needed only for caches

        check_mode(mode, threshold)
        cache = open_cache(cache) if isinstance(cache, str | PathLike) else cache
        ours, theirs = self.processor.preprocess_config.to_dict(), cache.config.to_dict()
        if ours != theirs:
            changed = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise ConfigError(
                f"{cache.directory}: the cache was preprocessed with other settings than this model's processor "
                f"({', '.join(f'{k}={theirs.get(k)!r} vs {ours[k]!r}' for k in changed)}); rebuild it with "
                "the processor's PreprocessConfig (CLI: `ecglang data build ... --out NEW --model CHECKPOINT`)"
            )
        source = CacheSource(cache, rows)
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs, progress=progress))
        return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress)

    def _score_source(
        self,
        source: RecordSource,
        specs: dict[str, LabelSpec],
        label_emb: torch.Tensor,
        mode: str,
        threshold: float,
        num_workers: int | None,
        progress: bool,
        names: list[str] | None = None,
    ) -> ZeroShotResult:
        """Score every record of `source` through the embedding pipeline (rhythm embeddings only). `names`: each
        input's id (`input_ids`), for rows and failures alike; None: as the source names them."""
        ids: list[str] = []
        seconds: list[float] = []
        sources: list[str | None] = []
        blocks: list[np.ndarray] = []
        failures: list[RecordFailure] = []
        failure_ids: list[str] = []
        seen: dict[str, int] = {}
        for batch in encode_batches(source, self.model, self.processor, batch_size=self.batch_size,
                                    num_workers=num_workers, precision=self.precision, progress=progress,
                                    desc="zero-shot"):  # fmt: skip
            name_failures(batch, names, failures, failure_ids)
            if batch.record_ids:
                blocks.append((unit_rows(batch.rhythm["model"]) @ label_emb.T).numpy())
            if names is not None:
                ids.extend(names[position] for position in batch.positions)
            else:
                ids.extend(unique_id(rid or f"record{len(ids)}", seen) for rid in batch.record_ids)
            seconds.extend(batch.seconds)
            sources.extend(batch.sources)
        return self._result(blocks, ids, specs, (failures, failure_ids), mode, threshold, None, seconds, sources)

    def _result(
        self,
        blocks: list[np.ndarray],
        ids: list[str],
        specs: dict[str, LabelSpec],
        failed: tuple[list[RecordFailure], list[str]],
        mode: str,
        threshold: float,
        explanations: dict[str, dict[str, Explanation]] | None,
        seconds: list[float],
        sources: list[str | None],
    ) -> ZeroShotResult:
        failures, failure_ids = failed
        cos = np.concatenate(blocks) if blocks else np.zeros((0, len(specs)), np.float32)
        scores = pd.DataFrame(self._transform(cos, mode, threshold), index=pd.Index(ids, name="record"),
                              columns=list(specs))  # fmt: skip
        if failures:
            logger.warning("%d record(s) could not be scored: %s", len(failures), "; ".join(
                f"{f.record} ({f.reason})" for f in failures[:5]) + (" ..." if len(failures) > 5 else ""))  # fmt: skip
        cfg = self.processor.preprocess_config
        window = None
        if cfg.target_samples is not None and cfg.target_fs is not None:  # else the part scored differs per record
            used = min(cfg.target_samples, cfg.keep_samples or cfg.target_samples)
            window = (used / cfg.target_fs, "start" if cfg.keep_samples else cfg.crop)
        durations = pd.Series(seconds, index=scores.index, dtype=float, name="seconds")
        paths = pd.Series(sources, index=scores.index, dtype=object, name="path")  # object: None stays None
        return ZeroShotResult(scores, specs, failures, mode, explanations, durations, window, paths, failure_ids)

    def _transform(self, cos: np.ndarray, mode: str, threshold: float) -> np.ndarray:
        if mode == "cosine":
            return cos
        scale = float(self.model.loss_fn.scale("rhythm").detach())
        if mode == "softmax":
            z = scale * cos
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-scale * (cos - threshold)))


def name_failures(batch: Any, names: list[str] | None, failures: list[RecordFailure], ids: list[str]) -> None:
    """Append a batch's failures to `failures` and the id each one's row would have had to `ids` (`names`, one
    per source position: `input_ids`; None: the failure's own name). A failure without a file (an `Ecg` or an
    array in memory, named "<record>" by the pipeline where it has no id) takes that id as its `record`; a
    file's failure keeps its file there, as the CLI prints and writes it."""
    for failure, position in zip(batch.failures, batch.failed_positions, strict=True):
        rid = failure.record if names is None else names[position]
        if not failure.path and rid != failure.record:
            failure = dataclasses.replace(failure, record=rid)
        failures.append(failure)
        ids.append(rid)


def check_mode(mode: str, threshold: float = 0.0) -> None:
    """`ConfigError` unless `mode` is one of `SCORE_MODES`, and for a `threshold` that `mode` would ignore (only
    sigmoid reads it: given with another mode it was dropped without a word)."""
    if mode not in SCORE_MODES:
        raise ConfigError(f"mode must be 'cosine', 'softmax' or 'sigmoid', got {mode!r}")
    if threshold != 0.0 and mode != "sigmoid":
        raise ConfigError(f"threshold={threshold!r} is read by mode='sigmoid' only, not by mode={mode!r}")

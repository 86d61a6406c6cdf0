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
    Each prompt is embedded with the model's text tower; a label's embedding is the re-normalised mean of
    its prompt embeddings. With knowledge retrieval, the top-k snippets for the label (queried with the
    label name plus its prompts) are turned into extra prompts ("<label>: <criterion>"); the label embedding
    is then `normalise((1 − w) · mean(own prompts) + w · mean(knowledge prompts))` with `w =
    knowledge_weight` (default 0.5), so that many snippets cannot drown the user's own wording. The ids of
    the snippets behind every label are kept and reported.

Throughput
    Without explanations, reading, preprocessing and beat cutting run in a DataLoader worker process while
    this process runs the encoder (`num_workers`; by default one worker per spare core, up to 4, when there
    are at least two batches and processes start by fork), and only the rhythm embedding is computed.
    During scoring torch uses the cores the workers leave free (restored afterwards). `score_arrays` scores
    in-memory `[12, T]` arrays and `score_cache` the rows of a `SignalCache` (already preprocessed: only
    beats are cut), with memory O(batch) whatever the number of records.

Explanations
    From beat-level similarities (no gradients): the label is also embedded through the sentence head
    that the beat-level loss aligned with beats; a beat's contribution is the cosine between its beat
    embedding and that label sentence embedding, a lead's contribution is the mean cosine of its (beat,
    lead) token embeddings with it. Cheap, exact for what the model computed, and defined for every beat.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import multiprocessing
import os
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ecglang.errors import ConfigError, EcgLangError, EcgReadError, PromptError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS, N_LEADS, to_canonical
from ecglang.scores.prompts import PromptSet, load_prompt_set, resolve_prompts

if TYPE_CHECKING:
    from ecglang.data.cache import SignalCache
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.encoders.processing import EcgProcessor
    from ecglang.knowledge.index import KnowledgeIndex

logger = logging.getLogger(__name__)

ScoreMode = Literal["cosine", "softmax", "sigmoid"]
EcgInput = Ecg | str | PathLike | np.ndarray

# On CPU the encoder takes a prepared batch this many records at a time: as fast per record as 64 at a
# time, and glibc's heap, which keeps freed tensor memory for reuse, settles ~0.5 GB lower.
_CPU_CHUNK = 16
Precision = Literal["fp32", "bf16", "fp16"]
_PRECISIONS = get_args(Precision)

# Prompt embeddings are cached per model (weakly, so a dropped model frees its cache).
_PROMPT_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, np.ndarray]] = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------------------ results
@dataclass
class LabelSpec:
    """What a label is scored with: its prompts, the knowledge prompts and snippet ids behind them."""

    label: str
    name: str
    prompts: list[str]
    knowledge_prompts: list[str] = field(default_factory=list)
    snippets: list[dict[str, Any]] = field(default_factory=list)  # id, title, source, score


@dataclass
class RecordFailure:
    """A record a batch run could not score, and why."""

    record: str
    stage: str  # "read" or "process"
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"record": self.record, "stage": self.stage, "error": self.error}


@dataclass
class Explanation:
    """Why one record got its score for one label."""

    record_id: str
    label: str
    score: float
    beat_contributions: np.ndarray  # [n_beats]
    lead_contributions: np.ndarray  # [12]; NaN for missing leads
    rpeaks: np.ndarray  # [n_beats] sample indices at `fs`
    fs: float
    snippets: list[dict[str, Any]]
    source: str | None = None  # the record's file, when it came from one

    def top_leads(self, n: int = 3) -> list[str]:
        order = np.argsort(-np.nan_to_num(self.lead_contributions, nan=-np.inf))
        return [CANONICAL_LEADS[i] for i in order[:n] if np.isfinite(self.lead_contributions[i])]


@dataclass
class ZeroShotResult:
    """Scores (records × labels), the labels' prompts and snippets, failures, and optional explanations."""

    scores: pd.DataFrame
    labels: dict[str, LabelSpec]
    failures: list[RecordFailure]
    mode: str
    explanations: dict[str, dict[str, Explanation]] | None = None

    def ranked(self, record_id: str) -> pd.DataFrame:
        """The labels of one record, best first, with their names and the snippets behind them."""
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


# ------------------------------------------------------------------------------------- classifier
class ZeroShotClassifier:
    """Scores ECGs against labels with an `EcgLangModel`.

    Args:
        model: the model (see `EcgLangModel.from_pretrained`).
        processor: preprocessing + beats; default: the one saved with the model, else `EcgProcessor()`.
        knowledge: a `KnowledgeIndex`, a folder with a saved index or knowledge JSONL files, `"default"`
            / `True` for the bundled knowledge base, or None / `False` / `"off"` for none.
        k: snippets retrieved per label.
        knowledge_weight: weight of the knowledge prompts in a label's embedding (0–1).
        batch_size: records per forward pass (without explanations: records per prepared batch, which the
            encoder takes 16 at a time on CPU).
        precision: the ECG encoder's arithmetic: `"fp32"` (default, exact), `"bf16"` (autocast to bfloat16:
            ~1.4x faster on CPUs with native bfloat16, e.g. AVX512-BF16 or AMX, and on GPUs; scores move by
            ~1e-3) or `"fp16"` (GPU only). Prompt and knowledge embeddings stay in float32.
    """

    def __init__(
        self,
        model: EcgLangModel,
        processor: EcgProcessor | None = None,
        knowledge: Any = None,
        k: int = 3,
        knowledge_weight: float = 0.5,
        batch_size: int = 64,
        precision: Precision = "fp32",
    ) -> None:
        if not 0.0 <= knowledge_weight <= 1.0:
            raise ConfigError(f"knowledge_weight must be in [0, 1], got {knowledge_weight}")
        if batch_size < 1 or k < 1:
            raise ConfigError("batch_size and k must be >= 1")
        self.model = model.eval()
        self.processor = processor or _processor_for(model)
        self.knowledge = resolve_knowledge(knowledge)
        self.k = k
        self.knowledge_weight = float(knowledge_weight)
        self.batch_size = batch_size
        self.precision = _check_precision(precision, self.model.device.type)

    @contextlib.contextmanager
    def _encoding(self) -> Iterator[None]:
        """Context of every ECG-encoder call: no autograd, and autocast when `precision` asks for it."""
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        autocast = torch.autocast(self.model.device.type, dtype=dtype, enabled=self.precision != "fp32")
        with torch.inference_mode(), autocast:
            yield

    # -- labels ------------------------------------------------------------------------------------
    def label_specs(self, labels: Any = None, prompts: Any = None, knowledge: Any = "inherit") -> dict[str, LabelSpec]:
        """Resolve the user's labels/prompts (and retrieve knowledge) into one `LabelSpec` per label."""
        index = self.knowledge if knowledge == "inherit" else resolve_knowledge(knowledge)
        names = _label_names(labels, prompts)
        table = resolve_prompts(labels=labels, prompts=prompts)
        specs = {lab: LabelSpec(lab, names.get(lab, lab), list(ps)) for lab, ps in table.items()}
        if index is not None:
            from ecglang.knowledge.retrieval import compose_prompts, retrieve_for_labels

            tokenizer = self.model.get_tokenizer()
            max_len = int(self.model.config.text_tower.get("max_length", 128))
            namespace = _code_namespace(labels, prompts)
            todo = list(specs.values())
            # One batched retrieval for all labels; a prompt-set code selects the snippets written for it.
            found = retrieve_for_labels(index, [s.name for s in todo], [s.prompts for s in todo], k=self.k,
                                        codes=[(namespace, s.label) if namespace else None for s in todo])  # fmt: skip
            for spec, hits in zip(todo, found, strict=True):
                spec.knowledge_prompts = list(
                    compose_prompts(spec.name, hits, max_prompts=3 * self.k, max_tokens=max_len, tokenizer=tokenizer)
                )
                spec.snippets = [
                    {"id": h.snippet.id, "title": h.snippet.title, "source": h.snippet.source, "score": h.score}
                    for h in hits
                ]
        return specs

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Unit embeddings `[n, D]` of prompts, cached per model: each distinct prompt is embedded once."""
        cache = _PROMPT_CACHE.setdefault(self.model, {})
        missing = list(dict.fromkeys(t for t in texts if ("text", t) not in cache))
        for start in tqdm(
            range(0, len(missing), batch_size), desc="embedding prompts", unit="batch", disable=len(missing) < 2048
        ):
            chunk = missing[start : start + batch_size]
            with torch.inference_mode():
                out = self.model.encode_text(chunk)
            emb = out.text_embeds.float().cpu().numpy()
            sent = _sentence_vectors(out)
            for i, text in enumerate(chunk):
                cache[("text", text)] = emb[i]
                if sent is not None:
                    cache[("sentence", text)] = sent[i]
        return np.stack([cache[("text", t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)

    def label_matrix(self, specs: Mapping[str, LabelSpec], head: str = "text") -> np.ndarray:
        """`[n_labels, D]` label embeddings (see the module docstring for the aggregation)."""
        every = [t for s in specs.values() for t in (*s.prompts, *s.knowledge_prompts)]
        self.embed_texts(every)
        cache = _PROMPT_CACHE[self.model]
        rows = []
        for spec in specs.values():
            own = _mean_unit([cache[(head, t)] for t in spec.prompts])
            if spec.knowledge_prompts:
                know = _mean_unit([cache[(head, t)] for t in spec.knowledge_prompts])
                own = _unit((1 - self.knowledge_weight) * own + self.knowledge_weight * know)
            rows.append(own)
        return np.stack(rows).astype(np.float32)

    # -- scoring -----------------------------------------------------------------------------------
    def __call__(
        self,
        ecgs: EcgInput | Iterable[EcgInput],
        labels: Any = None,
        prompts: Any = None,
        *,
        knowledge: Any = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        explain: bool = False,
        fs: float | None = None,
        leads: Sequence[str] | None = None,
        progress: bool = True,
        num_workers: int | None = None,
    ) -> ZeroShotResult:
        """Score `ecgs` against `labels` / `prompts`.

        `ecgs`: an `Ecg`, a path, a folder (every record inside), a `[leads, samples]` array (give `fs`;
        `leads` defaults to the canonical 12), or an iterable of those. `labels`: label names, a prompt-set
        name (e.g. "ptbxl_super") or a `PromptSet`; `prompts`: a dict label → prompt(s). Bad records do not
        stop the run: they are listed in `result.failures`. `num_workers`: processes that read and prepare
        records while the encoder runs (None: automatic; 0: all in this process; not used with `explain`).
        """
        _check_mode(mode)
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs))
        if not explain:
            source = _ItemSource(list(_expand(ecgs, fs, leads)), fs, leads)
            return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress)
        sent_emb = torch.from_numpy(self.label_matrix(specs, head="sentence"))
        ids: list[str] = []
        blocks: list[np.ndarray] = []
        failures: list[RecordFailure] = []
        explanations: dict[str, dict[str, Explanation]] | None = {} if explain else None
        seen: dict[str, int] = {}
        for batch_ecgs, read_failures in _batches(ecgs, self.batch_size, fs, leads, progress):
            failures.extend(read_failures)
            if not batch_ecgs:
                continue
            batch = self.processor(batch_ecgs, errors="collect")
            failures.extend(
                RecordFailure(_record_name(batch_ecgs[f.index]), "process", str(f.error)) for f in batch.failures
            )
            if not batch.indices:
                continue
            with self._encoding():
                out = self.model.encode_ecg(**batch)
            rhythm = out.rhythm_embeds.float().cpu()
            blocks.append((rhythm @ label_emb.T).numpy())
            for row, idx in enumerate(batch.indices):
                rid = _unique_id(batch_ecgs[idx].record_id or f"record{len(ids)}", seen)
                ids.append(rid)
                if explanations is not None:
                    explanations[rid] = _explain(
                        out, row, batch.tokens[row], batch_ecgs[idx], rid, blocks[-1][row], specs, sent_emb
                    )
        return self._result(blocks, ids, specs, failures, mode, threshold, explanations)

    def score_arrays(
        self,
        signals: np.ndarray | Sequence[np.ndarray],
        fs: float,
        labels: Any = None,
        prompts: Any = None,
        *,
        lead_masks: np.ndarray | Sequence[np.ndarray] | None = None,
        record_ids: Sequence[str] | None = None,
        preprocessed: bool = False,
        knowledge: Any = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> ZeroShotResult:
        """Score decoded signals: `[N, 12, T]` or a sequence of `[12, T_i]` arrays in canonical lead order.

        `fs`: their sampling rate. `lead_masks`: `[N, 12]` (default: all leads present). `record_ids`: row
        names (default `array0`, `array1`, ...). `preprocessed=True`: the signals already went through this
        model's preprocessing (e.g. rows of a `SignalCache`), so only beats are cut. Arrays of the wrong
        shape or with a bad mask are listed in `result.failures` like unreadable files.
        """
        _check_mode(mode)
        if not (np.isfinite(fs) and fs > 0):
            raise ConfigError(f"fs must be a positive number of Hz, got {fs!r}")
        source = _ArraySource(signals, float(fs), lead_masks, record_ids, preprocessed)
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs))
        return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress)

    def score_cache(
        self,
        cache: SignalCache | str | PathLike,
        labels: Any = None,
        prompts: Any = None,
        *,
        rows: Sequence[int] | None = None,
        knowledge: Any = "inherit",
        mode: ScoreMode = "cosine",
        threshold: float = 0.0,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> ZeroShotResult:
        """Score the records of a `SignalCache` (or its folder); rows are read from its signal file a batch
        at a time, so memory does not grow with the number of records.

        `rows`: the cache rows to score (default: all; rows that failed when the cache was built are listed
        in `result.failures`). Record ids are the cache's ids. Raises `ConfigError` when the cache was built
        with other preprocessing than this classifier's processor uses.
        """
        from ecglang.data.cache import SignalCache

        _check_mode(mode)
        cache = cache if isinstance(cache, SignalCache) else SignalCache(cache)
        ours, theirs = self.processor.preprocess_config.to_dict(), cache.config.to_dict()
        if ours != theirs:
            changed = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise ConfigError(
                f"{cache.directory}: the cache was preprocessed with other settings than this model's processor "
                f"({', '.join(f'{k}={theirs.get(k)!r} vs {ours[k]!r}' for k in changed)}); rebuild it with "
                "the processor's PreprocessConfig"
            )
        source = _CacheSource(cache, np.arange(len(cache)) if rows is None else np.asarray(rows, dtype=np.int64))
        specs = self.label_specs(labels, prompts, knowledge)
        label_emb = torch.from_numpy(self.label_matrix(specs))
        return self._score_source(source, specs, label_emb, mode, threshold, num_workers, progress)

    def _score_source(
        self,
        source: _Source,
        specs: dict[str, LabelSpec],
        label_emb: torch.Tensor,
        mode: str,
        threshold: float,
        num_workers: int | None,
        progress: bool,
    ) -> ZeroShotResult:
        """Score every record of `source`: batches are prepared (in workers) while the encoder runs here."""
        workers = _auto_workers(-(-len(source) // self.batch_size)) if num_workers is None else int(num_workers)
        if workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        preparer = _BatchPreparer(source, self.processor, self.batch_size, _CPU_CHUNK if workers else None)
        loader = DataLoader(
            preparer, batch_size=None, num_workers=workers, collate_fn=_as_is, prefetch_factor=4 if workers else None
        )
        ids: list[str] = []
        blocks: list[np.ndarray] = []
        failures: list[RecordFailure] = []
        seen: dict[str, int] = {}
        bar = tqdm(total=len(source), desc="zero-shot", unit="rec", disable=not progress or len(source) < 2)
        with _torch_threads(max(1, _usable_cores() - workers) if workers else None):
            for prepared in loader:
                failures.extend(prepared.failures)
                n = len(prepared.record_ids)
                step = _CPU_CHUNK if self.model.device.type == "cpu" else max(n, 1)
                for start in range(0, n, step):
                    chunk = {k: v[start : start + step] for k, v in prepared.tensors.items()}
                    with self._encoding():
                        rhythm = _rhythm_embeds(self.model, chunk).float().cpu()
                    blocks.append((rhythm @ label_emb.T).numpy())
                ids.extend(_unique_id(rid or f"record{len(ids)}", seen) for rid in prepared.record_ids)
                bar.update(prepared.n_inputs)
        bar.close()
        return self._result(blocks, ids, specs, failures, mode, threshold, None)

    def _result(
        self,
        blocks: list[np.ndarray],
        ids: list[str],
        specs: dict[str, LabelSpec],
        failures: list[RecordFailure],
        mode: str,
        threshold: float,
        explanations: dict[str, dict[str, Explanation]] | None,
    ) -> ZeroShotResult:
        cos = np.concatenate(blocks) if blocks else np.zeros((0, len(specs)), np.float32)
        scores = pd.DataFrame(self._transform(cos, mode, threshold), index=pd.Index(ids, name="record"),
                              columns=list(specs))  # fmt: skip
        if failures:
            logger.warning("%d record(s) could not be scored: %s", len(failures), "; ".join(
                f"{f.record} ({f.error})" for f in failures[:5]) + (" ..." if len(failures) > 5 else ""))  # fmt: skip
        return ZeroShotResult(scores, specs, failures, mode, explanations)

    def _transform(self, cos: np.ndarray, mode: str, threshold: float) -> np.ndarray:
        if mode == "cosine":
            return cos
        scale = float(self.model.loss_fn.scale("rhythm").detach())
        if mode == "softmax":
            z = scale * cos
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return z / z.sum(axis=1, keepdims=True)
        return 1.0 / (1.0 + np.exp(-scale * (cos - threshold)))


# ---------------------------------------------------------------------------------------- helpers
def resolve_knowledge(knowledge: Any) -> KnowledgeIndex | None:
    """Turn the `knowledge` argument into a `KnowledgeIndex` (or None for no retrieval)."""
    if knowledge is None or knowledge is False or (isinstance(knowledge, str) and knowledge.lower() == "off"):
        return None
    from ecglang.knowledge.index import KnowledgeBase, KnowledgeIndex

    if isinstance(knowledge, KnowledgeIndex):
        return knowledge
    if knowledge is True or (isinstance(knowledge, str) and knowledge.lower() in ("default", "on")):
        return KnowledgeIndex.default(show_progress=False)
    path = Path(knowledge)
    if path.is_dir() and (path / "index.faiss").exists():
        return KnowledgeIndex.load(path)
    return KnowledgeIndex.default(kb=KnowledgeBase.load(path), show_progress=False)


def _processor_for(model: EcgLangModel) -> EcgProcessor:
    from ecglang.encoders.processing import EcgProcessor

    proc = getattr(model, "processor", None)
    if proc is not None:
        return proc
    return EcgProcessor(return_signal=not model.config.is_beat_model)


def _label_names(labels: Any, prompts: Any) -> dict[str, str]:
    """Readable names for prompt-set codes (e.g. CLBBB → complete left bundle branch block)."""
    source = labels if labels is not None and prompts is None else prompts
    if isinstance(source, str) and not isinstance(labels, list):
        try:
            source = load_prompt_set(source)
        except PromptError:
            return {}
    if isinstance(source, PromptSet):
        return {code: lp.name for code, lp in source.labels.items()}
    return {}


def _code_namespace(labels: Any, prompts: Any) -> str | None:
    """The knowledge-base code namespace of a prompt set (its label codes are that dataset's codes)."""
    source = labels if labels is not None and prompts is None else prompts
    name = source.name if isinstance(source, PromptSet) else source if isinstance(source, str) else None
    if not name:
        return None
    for prefix, namespace in (("ptbxl", "ptbxl"), ("cpsc", "cpsc2018"), ("icbeb", "cpsc2018"),
                              ("chapman", "chapman"), ("cinc", "snomed")):  # fmt: skip
        if Path(str(name)).stem.lower().startswith(prefix):
            return namespace
    return None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _mean_unit(vectors: list[np.ndarray]) -> np.ndarray:
    return _unit(np.mean(np.stack(vectors), axis=0))


def _sentence_vectors(out: Any) -> np.ndarray | None:
    """One sentence-head vector per prompt: the masked mean of its sentence embeddings."""
    if getattr(out, "sentence_embeds", None) is None:
        return None
    mask = out.sentence_mask.float().unsqueeze(-1)
    mean = (out.sentence_embeds.float() * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()


def _explain(
    out: Any,
    row: int,
    tokens: Any,
    ecg: Ecg,
    rid: str,
    cosines: np.ndarray,
    specs: Mapping[str, LabelSpec],
    sent_emb: torch.Tensor | None,
) -> dict[str, Explanation]:
    result = {}
    n = int(tokens.n_beats)
    have_beats = out.beat_embeds is not None and sent_emb is not None and sent_emb.numel() > 0
    for j, (lab, spec) in enumerate(specs.items()):
        beat_c = np.full(n, np.nan, np.float32)
        lead_c = np.full(len(CANONICAL_LEADS), np.nan, np.float32)
        if have_beats:
            q = sent_emb[j]
            beats = out.beat_embeds[row, :n].float().cpu()
            beat_c = (beats @ q).numpy()
            tok = out.token_embeds[row, :n].float().cpu() @ q  # [n, 12]
            lm = out.lead_mask[row].cpu().numpy()
            lead_c = np.where(lm, tok.mean(0).numpy(), np.nan).astype(np.float32)
        result[lab] = Explanation(
            rid, lab, float(cosines[j]), beat_c, lead_c, np.asarray(tokens.rpeaks[:n]), float(tokens.fs),
            spec.snippets, ecg.metadata.get("source_path"),
        )  # fmt: skip
    return result


def _record_name(item: Any) -> str:
    if isinstance(item, Ecg):
        return item.metadata.get("source_path") or item.record_id or "<record>"
    return str(item)


def _unique_id(rid: str, seen: dict[str, int]) -> str:
    """Record ids index the score table, so repeated ids (same stem in two folders) get a suffix."""
    count = seen.get(rid, 0)
    seen[rid] = count + 1
    return rid if count == 0 else f"{rid}#{count + 1}"


def _check_mode(mode: str) -> None:
    if mode not in ("cosine", "softmax", "sigmoid"):
        raise ConfigError(f"mode must be 'cosine', 'softmax' or 'sigmoid', got {mode!r}")


def _rhythm_embeds(model: EcgLangModel, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Rhythm embeddings `[B, D]` of a processor batch. Scores need neither beat nor token embeddings, and
    the beat tower skips building their padded outputs (`rhythm_only`), which costs as much as several
    encoder layers in memory traffic."""
    if not model.config.is_beat_model:
        return model.encode_ecg(**batch).rhythm_embeds
    dev = model.device
    keys = ("beats", "beat_mask", "lead_mask", "rr", "times")
    out = model.ecg_tower(*(batch[k].to(dev) for k in keys), rhythm_only=True)
    return model.rhythm_proj(out["rhythm"])


def _check_precision(precision: str, device_type: str) -> str:
    if precision not in _PRECISIONS:
        raise ConfigError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device_type == "cpu":
        raise ConfigError("precision='fp16' needs a GPU (CPU autocast runs in bfloat16): use 'bf16' or 'fp32'")
    return precision


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _auto_workers(n_batches: int) -> int:
    """One preparing worker per spare core (up to 4); none for a single batch, where starting one costs more
    than it overlaps, and none where processes do not start by `fork` (spawn pickles the inputs into each
    worker and needs the caller's script to guard its entry point: ask for workers explicitly there)."""
    # allow_none: asking for the method must not fix it for the caller; the first listed is the default.
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    if n_batches < 2 or method != "fork":
        return 0
    return min(4, _usable_cores() - 1)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run torch on `n` threads (None: unchanged), restoring the setting afterwards. With workers busy on
    the other cores, more OpenMP threads than free cores spin-wait on each other and run slower."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_is(item: Any) -> Any:
    """DataLoader `collate_fn` for items that are already batches (module level, so workers can pickle it)."""
    return item


class _Source(abc.ABC):
    """Indexable records for `_BatchPreparer`: `read(i)` gives an `Ecg` or a `RecordFailure`."""

    preprocessed: bool = False  # True: `read` gives signals already preprocessed (only beats are cut)

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def read(self, i: int) -> Ecg | RecordFailure: ...


class _ItemSource(_Source):
    """The inputs of `ZeroShotClassifier.__call__`: `Ecg`s, record paths (read here) and input failures."""

    def __init__(self, items: list[Ecg | Path | RecordFailure], fs: float | None, leads: Sequence[str] | None):
        self.items, self.fs, self.leads = items, fs, leads

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> Ecg | RecordFailure:
        from ecglang.record.io import load_ecg

        item = self.items[i]
        if isinstance(item, (Ecg, RecordFailure)):
            return item
        try:
            return load_ecg(item, fs=self.fs, leads=self.leads)
        except EcgReadError as exc:
            return RecordFailure(str(item), "read", str(exc))


class _ArraySource(_Source):
    """In-memory signals `[12, T]` in canonical order, with optional lead masks and ids."""

    def __init__(
        self,
        signals: np.ndarray | Sequence[np.ndarray],
        fs: float,
        lead_masks: np.ndarray | Sequence[np.ndarray] | None,
        record_ids: Sequence[str] | None,
        preprocessed: bool,
    ) -> None:
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
        signal = np.asarray(self.signals[i])
        mask = None if self.lead_masks is None else np.asarray(self.lead_masks[i])
        if signal.ndim != 2 or signal.shape[0] != N_LEADS:
            return RecordFailure(rid, "read", f"signal must be [12, n_samples] in canonical order, got {signal.shape}")
        if mask is not None and mask.shape != (N_LEADS,):
            return RecordFailure(rid, "read", f"lead mask must have shape (12,), got {mask.shape}")
        return Ecg(signal, self.fs, np.ones(N_LEADS, bool) if mask is None else mask, record_id=rid)


class _CacheSource(_Source):
    """Rows of a `SignalCache` (preprocessed; failed rows come back as failures with the build's reason)."""

    preprocessed = True

    def __init__(self, cache: SignalCache, rows: np.ndarray) -> None:
        n = len(cache)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ConfigError(f"cache rows must be in [0, {n}), got {rows.min()}..{rows.max()}")
        self.cache, self.rows = cache, rows
        self.ids = cache.ids

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, i: int) -> Ecg | RecordFailure:
        row = int(self.rows[i])
        rid = self.ids[row]
        try:
            signal, mask = self.cache[row]
        except EcgReadError as exc:
            return RecordFailure(rid, "read", str(exc))
        return Ecg(signal, self.cache.fs, mask, record_id=rid)


@dataclass
class _Prepared:
    """One batch ready for the encoder: model input tensors, the record id of each row, failures."""

    tensors: dict[str, torch.Tensor]
    record_ids: list[str]
    failures: list[RecordFailure]
    n_inputs: int


class _BatchPreparer(Dataset):
    """Item `b` = batch `b` of a source, read, preprocessed (unless the source already is) and cut into beats:
    the work that a DataLoader worker does while the main process runs the encoder."""

    def __init__(self, source: _Source, processor: EcgProcessor, batch_size: int, first: int | None = None) -> None:
        self.source, self.processor = source, processor
        # `first`: a smaller first batch, so that the encoder waiting on a worker starts sooner.
        first = batch_size if first is None else min(first, batch_size)
        self.bounds = np.unique(np.concatenate(([0], np.arange(first, len(source), batch_size), [len(source)])))

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, b: int) -> _Prepared:
        from ecglang.beats.tokenize import tokenize_array

        start, stop = int(self.bounds[b]), int(self.bounds[b + 1])
        tokens, signals, ids, failures = [], [], [], []
        for i in range(start, stop):
            ecg = self.source.read(i)
            if isinstance(ecg, RecordFailure):
                failures.append(ecg)
                continue
            try:
                if self.source.preprocessed:
                    name = str(ecg.metadata.get("source_path") or ecg.record_id or "") or None
                    tok = tokenize_array(ecg.signal, ecg.fs, ecg.lead_mask, self.processor.beat_config, record=name)
                    clean = ecg.signal
                else:
                    clean_ecg, tok = self.processor.process(ecg)
                    clean = clean_ecg.signal
            except EcgLangError as exc:
                failures.append(RecordFailure(_record_name(ecg), "process", str(exc)))
                continue
            tokens.append(tok)
            signals.append(clean)
            ids.append(ecg.record_id)
        tensors = self.processor.collate(tokens, signals if self.processor.return_signal else None)
        # Ship only the beat slots in use (the encoder would drop the rest): less to pass between processes.
        real = tensors["beat_mask"].any(0).nonzero()
        n = int(real.max()) + 1 if len(real) else 1
        for key in ("beats", "beat_mask", "rr", "times"):
            tensors[key] = tensors[key][:, :n].contiguous()
        return _Prepared(tensors, ids, failures, stop - start)


def _expand(items: Any, fs: float | None, leads: Sequence[str] | None) -> Iterator[Ecg | Path | RecordFailure]:
    """Flatten the accepted inputs into Ecg records and record paths (folders are scanned)."""
    if isinstance(items, (Ecg, str, PathLike, np.ndarray)):
        items = [items]
    for n, item in enumerate(items):
        if isinstance(item, Ecg):
            yield item
        elif isinstance(item, np.ndarray):
            names = list(leads) if leads is not None else list(CANONICAL_LEADS)
            if fs is None:
                yield RecordFailure(f"array #{n}", "read", "an array input needs fs= (sampling rate in Hz)")
                continue
            try:
                signal, mask, _ = to_canonical(item, names, path=f"array #{n}")
                yield Ecg(signal, fs, mask, record_id=f"array{n}")
            except (EcgLangError, ValueError) as exc:
                yield RecordFailure(f"array #{n}", "read", str(exc))
        else:
            path = Path(item)
            if path.is_dir():
                from ecglang.record.io import scan_records

                scan = scan_records(path)
                for skipped in scan.skipped:
                    logger.info("skipped %s: %s", skipped.path, skipped.reason)
                yield from scan.records
            else:
                yield path


def _batches(
    ecgs: Any, batch_size: int, fs: float | None, leads: Sequence[str] | None, progress: bool
) -> Iterator[tuple[list[Ecg], list[RecordFailure]]]:
    """Read inputs lazily, `batch_size` records at a time, so memory stays O(batch)."""
    from ecglang.record.io import load_ecg

    items = list(_expand(ecgs, fs, leads))
    bar = tqdm(total=len(items), desc="zero-shot", unit="rec", disable=not progress or len(items) < 2)
    batch: list[Ecg] = []
    failures: list[RecordFailure] = []
    for item in items:
        if isinstance(item, RecordFailure):
            failures.append(item)
        elif isinstance(item, Ecg):
            batch.append(item)
        else:
            try:
                batch.append(load_ecg(item, fs=fs, leads=leads))
            except EcgReadError as exc:
                failures.append(RecordFailure(str(item), "read", str(exc)))
        bar.update(1)
        if len(batch) >= batch_size:
            yield batch, failures
            batch, failures = [], []
    bar.close()
    if batch or failures:
        yield batch, failures

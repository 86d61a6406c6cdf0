"""The zero-shot evaluation protocol, end to end: label sets → one encoding pass → every prompt source,
beside a random-encoder baseline → metrics with bootstrap CIs → JSON / Markdown / ROC figures.

Protocol (`run_evaluation`):

1. Each label set is joined with the records on disk (`ecglang.evaluation.datasets`); rows whose record
   is missing are counted and listed, never silently dropped.
2. Every record is read, preprocessed and tokenized ONCE, then encoded by the model and by the random
   baseline in the same batch (`EmbeddingStore`; memory O(batch) for signals). Records shared by label
   sets (PTB-XL super/sub/form/rhythm) are encoded once. Read/process failures are collected with the
   label sets they affect; evaluation goes on without them.
3. Each prompt source gives label embeddings through `ZeroShotClassifier.label_specs/label_matrix`
   (cached per model): `names` (the label's name alone), `prompts` (the prompt set), `knowledge`
   (prompt set + retrieved knowledge snippets), `external:PATH` (a third-party `{code: description}`
   file; codes it lacks are listed and those labels are skipped for that source).
4. A record's score for a label is the cosine between its rhythm embedding and the label embedding.
   `evaluate_scores` gives per-class AUROC, max-F1 and accuracy at that threshold, skipped classes,
   and seeded bootstrap CIs of every macro figure.

The random-encoder baseline (`random_encoder_baseline`) is the same architecture built from the model's
config with a seeded default initialisation of everything except the text tower, whose weights (base
model + LoRA adapter) and tokenizer are copied from the model. It sees the same records, preprocessing
and prompts, so the gap between the two columns is what pretraining the ECG side bought.
"""

from __future__ import annotations

import copy
import datetime as _dt
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ecglang import __version__
from ecglang.encoders.modeling import load_model
from ecglang.errors import ConfigError, PromptError, RecordFailure
from ecglang.evaluation.compare import compare_sources
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import (
    HEADER_LABELS,
    LabelSetData,
    load_label_set,
    load_labels_csv,
    parse_data_roots,
)
from ecglang.evaluation.metrics import evaluate_scores
from ecglang.evaluation.probe import run_probe_for_set
from ecglang.evaluation.results import MODEL, RANDOM, EvaluationRun, RecordScores
from ecglang.evaluation.retrieval import run_retrieval
from ecglang.evaluation.store import EmbeddingStore, processor_for
from ecglang.evaluation.writers import results_markdown, write_outputs
from ecglang.record.leads import CANONICAL_LEADS, parse_lead_subset
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import LabelSpec
from ecglang.scores.prompts import load_external_prompts

if TYPE_CHECKING:
    from ecglang.encoders.ecg_processing import EcgProcessor
    from ecglang.encoders.modeling import EcgLangModel

__all__ = [
    "RANDOM_BASELINE",
    "EmbeddingStore",
    "EvaluateConfig",
    "EvaluationRun",
    "PromptSource",
    "RecordFailure",
    "random_encoder_baseline",
    "results_markdown",
    "run_evaluation",
    "write_outputs",
]

log = logging.getLogger(__name__)

KINDS = ("names", "prompts", "knowledge", "external")

RANDOM_BASELINE = {
    "what": "same architecture as the model (its config.json), built with EcgLangModel(config)",
    "random": [
        "ecg_tower: every weight at PyTorch's default initialisation",
        "projection heads: rhythm_proj, text_proj (and beat_proj, ecg_token_proj, sentence_proj, "
        "text_token_proj for the beat tower) at default initialisation",
        "loss logit scales (not used by cosine scores)",
    ],
    "shared_with_model": [
        "text_tower: base text model weights and the LoRA adapter copied from the model (state_dict)",
        "tokenizer",
        "preprocessing (the same EcgProcessor) and therefore the same model inputs",
        "prompts, knowledge snippets and label-embedding aggregation",
    ],
    "seed": "torch.manual_seed(random_seed) immediately before construction (global RNG state restored)",
}


# ---------------------------------------------------------------------------------------------------------
# models


def random_encoder_baseline(model: EcgLangModel, seed: int = 0) -> EcgLangModel:
    """The random-encoder baseline of `model` (see `RANDOM_BASELINE` for exactly what is random).

    Built from a copy of `model.config` under `torch.manual_seed(seed)` (the caller's RNG state is
    restored), then the text tower's state and tokenizer are copied from `model`. Returned in eval mode
    on the model's device and dtype.
    """
    config = copy.deepcopy(model.config)
    text_cfg = config.text_tower
    text_weights = "config" if text_cfg["finetune"] == "full" and text_cfg.get("hf_config") else "pretrained"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        baseline = type(model)(config, text_weights=text_weights)
    try:
        baseline.text_tower.load_state_dict(model.text_tower.state_dict())
    except RuntimeError as exc:  # would mean the config does not describe the model's own text tower
        raise ConfigError(f"random baseline: the model's text tower does not match its config: {exc}") from exc
    baseline.text_tower.tokenizer = model.text_tower.tokenizer
    param = next(model.parameters())
    return baseline.to(device=param.device, dtype=param.dtype).eval()


def _same_ecg_weights(model: EcgLangModel, baseline: EcgLangModel) -> bool:
    """True when the baseline's ECG tower equals the model's: an untrained model built with the same seed."""
    same = all(
        torch.equal(a, b) for a, b in zip(model.ecg_tower.parameters(), baseline.ecg_tower.parameters(), strict=True)
    )
    if same:
        log.warning("the random baseline equals the model's ECG tower (an untrained model?); use another --random-seed")
    return same


def model_summary(model: EcgLangModel) -> dict[str, Any]:
    """Architecture facts for the report."""
    cfg = model.config
    return {
        "name_or_path": str(getattr(cfg, "name_or_path", "") or ""),
        "ecg_tower": dict(cfg.ecg_tower),
        "text_model": cfg.text_tower.get("name_or_path"),
        "text_finetune": cfg.text_tower.get("finetune"),
        "projection_dim": cfg.projection.get("dim"),
        "parameters": {
            "ecg_tower": sum(p.numel() for p in model.ecg_tower.parameters()),
            "text_tower": sum(p.numel() for p in model.text_tower.parameters()),
            "total": sum(p.numel() for p in model.parameters()),
        },
    }


# ---------------------------------------------------------------------------------------------------------
# prompt sources


@dataclass(frozen=True)
class PromptSource:
    """One way of turning labels into text: `names`, `prompts`, `knowledge` or `external` (with a path)."""

    kind: str
    path: Path | None = None

    @property
    def key(self) -> str:
        """Column name in the reports: the kind, or `external:<file stem>`."""
        return self.kind if self.path is None else f"external:{self.path.stem}"

    @classmethod
    def parse(cls, text: str) -> PromptSource:
        """`names`, `prompts`, `knowledge` or `external:PATH`."""
        kind, sep, rest = str(text).partition(":")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ConfigError(f"unknown prompt source {text!r}; use names, prompts, knowledge or external:PATH")
        if kind == "external":
            if not sep or not rest.strip():
                raise ConfigError("the external prompt source needs a file: external:PATH")
            path = Path(rest.strip()).expanduser()
            if not path.is_file():
                raise PromptError(path, "external prompt file not found")
            return cls(kind, path)
        if sep:
            raise ConfigError(f"prompt source {kind!r} takes no argument (got {text!r})")
        return cls(kind)


def parse_sources(items: Sequence[str | PromptSource]) -> list[PromptSource]:
    out: list[PromptSource] = []
    for item in items:
        src = item if isinstance(item, PromptSource) else PromptSource.parse(item)
        if src.key in {s.key for s in out}:
            raise ConfigError(f"prompt source {src.key!r} given twice")
        out.append(src)
    if not out:
        raise ConfigError("no prompt source given")
    return out


def source_specs(
    source: PromptSource, data: LabelSetData, clf: ZeroShotClassifier
) -> tuple[dict[str, LabelSpec], dict[str, Any]]:
    """Label specs of one source for one label set, and what the report should say about them.

    Returns `({code: LabelSpec}, info)`; `info` has `labels_missing` (codes the source has no text for,
    skipped for this source), `suspect` (external entries that look unusable as prompts) and `note`.
    """
    codes, names = data.label_codes, data.names
    info: dict[str, Any] = {"labels_missing": [], "suspect": {}, "note": ""}
    if source.kind == "names":
        return {c: LabelSpec(c, names[c], [names[c]]) for c in codes}, info
    if source.kind == "external":
        ext = load_external_prompts(source.path, for_labels=codes)
        info["labels_missing"] = list(ext.missing)
        info["suspect"] = dict(ext.suspect)
        info["file"] = str(source.path)
        return {c: LabelSpec(c, names[c], list(ext.prompts[c])) for c in codes if c in ext.prompts}, info
    if data.prompt_set is not None:
        table: Any = data.prompt_set
    else:  # a labels CSV without a prompt set: the column names are the prompts
        table = {c: [names[c]] for c in codes}
        info["note"] = "no prompt set: each label's name is its only prompt"
    knowledge = "inherit" if source.kind == "knowledge" else None
    return clf.label_specs(labels=list(codes), prompts=table, knowledge=knowledge), info


def cut_prompts(model: EcgLangModel, specs: dict[str, LabelSpec]) -> dict[str, list[dict[str, Any]]]:
    """`{code: [{"prompt", "tokens", "read", "dropped", "unread"}]}` for the prompts (and knowledge prompts) of
    `specs` longer than the text tower's `max_length`: the tower reads `read` of their `tokens` (special tokens
    counted in both, as the tower sees them) and never the `unread` end. Empty when every prompt fits.

    An external file is used verbatim, so a long description (CKEPE's MI: 121 tokens) loses its end without
    a word unless this is reported. `read` is what `model.tokenize` keeps; `tokens` is the untruncated count
    of the same tokenizer."""
    texts = list(dict.fromkeys(str(p) for s in specs.values() for p in [*s.prompts, *s.knowledge_prompts]))
    if not texts:
        return {}
    read = model.tokenize(texts)["attention_mask"].sum(dim=1).tolist()
    lowered = [t.lower() for t in texts] if model.config.text_tower.get("lowercase") else texts
    full = model.get_tokenizer()(lowered, truncation=False, return_offsets_mapping=True,
                                 return_special_tokens_mask=True)  # fmt: skip
    cut: dict[str, dict[str, Any]] = {}
    for i, text in enumerate(texts):
        ids, special = full["input_ids"][i], full["special_tokens_mask"][i]
        if len(ids) <= read[i]:
            continue
        # the special tokens are kept when the tokenizer truncates: the first unread word is the next content token
        content = [k for k, flag in enumerate(special) if not flag]
        first = content[min(read[i] - (len(ids) - len(content)), len(content) - 1)]
        shown = text if len(text) == len(lowered[i]) else lowered[i]  # offsets are those of the lowered text
        cut[text] = {"prompt": text, "tokens": len(ids), "read": int(read[i]), "dropped": len(ids) - int(read[i]),
                     "unread": shown[full["offset_mapping"][i][first][0]:]}  # fmt: skip
    own = {c: dict.fromkeys(str(p) for p in [*s.prompts, *s.knowledge_prompts]) for c, s in specs.items()}
    out = {c: [cut[t] for t in texts_of if t in cut] for c, texts_of in own.items()}
    return {c: v for c, v in out.items() if v}


# ---------------------------------------------------------------------------------------------------------
# configuration and results


# ---------------------------------------------------------------------------------------------------------
# the runner


def _load_sets(cfg: EvaluateConfig) -> list[LabelSetData]:
    roots = parse_data_roots(cfg.data_roots)
    sets = [
        load_label_set(name, cfg.split_root, roots, part=cfg.part, limit=cfg.limit, folds=cfg.folds, seed=cfg.seed)
        for name in cfg.label_sets
    ]
    if cfg.labels_csv is not None:
        sets.append(
            load_labels_csv(cfg.labels_csv, cfg.records, id_column=cfg.id_column, prompt_set=cfg.prompt_set,
                            limit=cfg.limit, seed=cfg.seed)
        )  # fmt: skip
        if cfg.folds is not None:  # beside --label-sets (alone it is refused): said, not silently ignored
            sets[-1].notes["folds_not_applied"] = (
                f"--folds {' '.join(map(str, cfg.folds))} selects strat_folds of --label-sets only; every row of "
                "this labels CSV was evaluated"
            )
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise ConfigError(f"label set given twice: {names}")
    return sets


def run_evaluation(cfg: EvaluateConfig, model: EcgLangModel | None = None) -> EvaluationRun:
    """Run the protocol described in the module docstring; see `write_outputs` for the files."""
    cfg.validate()
    sources = parse_sources(cfg.sources)
    sets = _load_sets(cfg)
    if model is None:
        model = load_model(cfg.model, cfg.device)
    random_seed = cfg.seed if cfg.random_seed is None else cfg.random_seed
    baseline = random_encoder_baseline(model, seed=random_seed)
    models = {MODEL: model, RANDOM: baseline}
    want_knowledge = any(s.kind == "knowledge" for s in sources)
    clf = ZeroShotClassifier(model, knowledge=cfg.knowledge if want_knowledge else None, k=cfg.k,
                             knowledge_weight=cfg.knowledge_weight, batch_size=cfg.batch_size,
                             drop_ambiguous_prompts=cfg.drop_ambiguous_prompts)  # fmt: skip
    clf_random = ZeroShotClassifier(baseline, knowledge=None, knowledge_weight=cfg.knowledge_weight)
    try:
        keep = None if cfg.leads is None else parse_lead_subset(cfg.leads)
    except ValueError as exc:
        raise ConfigError(f"--leads: {exc}") from exc
    # the canonical names ("ii" → "II"), for the reports
    leads = "all" if keep is None else ",".join(CANONICAL_LEADS[i] for i in np.flatnonzero(keep))
    store = EmbeddingStore(models, batch_size=cfg.batch_size, progress=cfg.progress, keep_leads=keep)

    tree: dict[str, Any] = {
        "ecglang_version": _version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(next(model.parameters()).device),
        },
        "protocol": {
            "part": cfg.part,
            # the label sets that --part (and --folds) select from; labels CSVs and header-labelled folders
            # have no split part: every row / record is evaluated
            "part_applies_to": [d.name for d in sets if d.task not in (None, HEADER_LABELS)],
            "folds": cfg.folds,
            "preprocess": cfg.preprocess,
            "leads": leads,
            "sources": [s.key for s in sources],
            "score": "cosine(rhythm embedding, label embedding)",
            "drop_ambiguous_prompts": cfg.drop_ambiguous_prompts,
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
            "ci": "95 % percentile bootstrap over records",
            "limit": cfg.limit,
            "knowledge": {"base": cfg.knowledge, "k": cfg.k, "weight": cfg.knowledge_weight}
            if want_knowledge
            else None,
            "split_root": None if cfg.split_root is None else str(cfg.split_root),
            "data_roots": [str(r) for r in cfg.data_roots],
        },
        "model": {"source": str(cfg.model), **model_summary(model)},
        "random_baseline": {
            **RANDOM_BASELINE,
            "random_seed": random_seed,
            "identical_to_model": _same_ecg_weights(model, baseline),
        },
        "label_sets": {},
    }
    roc: dict[str, Any] = {}
    probe_curves: dict[str, Any] = {}
    record_scores: dict[str, RecordScores] = {}
    for data in tqdm(sets, desc="label sets", unit="set", disable=not cfg.progress or len(sets) < 2):
        processor = processor_for(model, cfg.preprocess, data.dataset)
        entry, roc_inputs, scores = _evaluate_set(data, sources, store, processor, clf, clf_random, cfg)
        tree["label_sets"][data.name] = entry
        if roc_inputs is not None:
            roc[data.name] = roc_inputs
        if cfg.save_scores and scores is not None:
            record_scores[data.name] = scores
        if cfg.probe:
            probe_entry, curves = run_probe_for_set(data, cfg, store, processor)
            entry["probe"] = probe_entry
            if curves:
                probe_curves[data.name] = curves
    if cfg.retrieval:
        tree["retrieval"] = run_retrieval(cfg, store, {MODEL: clf, RANDOM: clf_random}, model)
    failures = store.failure_list()
    tree["failures"] = [f.to_dict() for f in failures]
    tree["n_failures"] = len(failures)
    missing = {d.name: d.missing for d in sets}
    return EvaluationRun(tree, failures, missing, roc, probe_curves, record_scores)


def _evaluate_set(
    data: LabelSetData,
    sources: list[PromptSource],
    store: EmbeddingStore,
    processor: EcgProcessor,
    clf: ZeroShotClassifier,
    clf_random: ZeroShotClassifier,
    cfg: EvaluateConfig,
) -> tuple[dict[str, Any], tuple | None, RecordScores | None]:
    entry: dict[str, Any] = {
        "dataset": data.dataset,
        "task": data.task,
        "part": data.part,
        "files": list(data.sources),
        "labels": {c: data.names[c] for c in data.label_codes},
        "preprocess": processor.to_dict()["preprocess"],
        "notes": dict(data.notes),
    }
    rows = store.encode(data.paths, data.record_ids, processor, label_set=data.name, metadata=data.metadata)
    ok = rows >= 0
    records = data.record_summary()
    records["failed"] = int((~ok).sum())
    records["evaluated"] = int(ok.sum())
    entry["records"] = records
    entry["sources"] = {}
    if not ok.any():
        entry["status"] = "no records to evaluate" + (
            f" ({records['missing']} of {records['rows']} rows missing from disk)" if records["missing"] else ""
        )
        if data.notes.get("no_match"):
            entry["status"] += f": {data.notes['no_match']}"
        log.warning("%s: %s", data.name, entry["status"])
        return entry, None, None
    y = data.labels[ok].astype(bool)
    per_record = RecordScores([r for r, keep in zip(data.record_ids, ok, strict=True) if keep],
                              list(data.label_codes), y.astype(np.int8), {})  # fmt: skip
    emb = {key: store.embeddings(key, rows[ok]) for key in (MODEL, RANDOM)}
    roc_codes = list(data.label_codes)
    for src in sources:
        specs, info = source_specs(src, data, clf)
        if not specs:
            entry["sources"][src.key] = {**info, "status": "no label has text in this source"}
            continue
        codes = list(specs)
        cols = [data.label_codes.index(c) for c in codes]
        out: dict[str, Any] = {}
        for key, classifier in ((MODEL, clf), (RANDOM, clf_random)):
            matrix = classifier.label_matrix(specs)
            matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            scores = emb[key] @ matrix.T
            out[key] = evaluate_scores(y[:, cols], scores, codes, n_boot=cfg.n_boot, seed=cfg.seed)
            per_record.scores[(src.key, key)] = (codes, scores)
        out.update(info)
        out["labels_scored"] = codes
        if cut := cut_prompts(clf.model, specs):  # results.md Notes and stderr say so (writers.cut_prompts_text)
            out["truncated_prompts"] = cut
        out["prompts"] = {c: [str(p) for p in s.prompts] for c, s in specs.items()}
        if any(s.dropped for s in specs.values()):
            out["dropped_prompts"] = {c: [str(p) for p in s.dropped] for c, s in specs.items() if s.dropped}
        if any(s.knowledge_prompts for s in specs.values()):
            out["knowledge_prompts"] = {c: [str(p) for p in s.knowledge_prompts] for c, s in specs.items()}
            out["snippets"] = {c: [h["id"] for h in s.snippets] for c, s in specs.items()}
        entry["sources"][src.key] = out
        roc_codes = [c for c in roc_codes if c in codes]
    # source → (codes, scores) of the model: the paired comparisons
    model_scores = {src: v for (src, key), v in per_record.scores.items() if key == MODEL}
    if len(model_scores) > 1:
        entry["paired"] = compare_sources(y, data.label_codes, model_scores, n_resamples=cfg.n_boot, seed=cfg.seed)
    if not roc_codes:
        return entry, None, per_record
    # The figure keeps the labels that every source scored, so each panel compares all sources.
    roc_scores = {f"{src} · {'model' if key == MODEL else 'random'}": s[:, [codes.index(c) for c in roc_codes]]
                  for (src, key), (codes, s) in per_record.scores.items()}  # fmt: skip
    y_roc = y[:, [data.label_codes.index(c) for c in roc_codes]]
    if len(roc_codes) < len(data.label_codes):
        entry["roc_labels"] = roc_codes
    return entry, (y_roc, roc_scores, roc_codes), per_record


def _version() -> str:
    return str(__version__)

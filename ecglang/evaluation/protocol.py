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
import json
import logging
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ecglang.errors import ConfigError, EcgLangError, PromptError
from ecglang.evaluation.datasets import (
    PARTS,
    LabelSetData,
    load_label_set,
    load_labels_csv,
    parse_data_roots,
)
from ecglang.evaluation.metrics import EvalResult, evaluate_scores
from ecglang.scores.classifier import LabelSpec, ZeroShotClassifier
from ecglang.scores.prompts import load_external_prompts

if TYPE_CHECKING:
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.encoders.processing import EcgProcessor

__all__ = [
    "RANDOM_BASELINE",
    "EmbeddingStore",
    "EvaluateConfig",
    "EvaluationRun",
    "PromptSource",
    "RecordFailure",
    "random_encoder_baseline",
    "run_evaluation",
]

log = logging.getLogger(__name__)

MODEL = "model"
RANDOM = "random"
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


# ---------------------------------------------------------------------------------------------------------
# encoding


@dataclass
class RecordFailure:
    """A record that could not be read or processed, and the label sets it was part of."""

    record: str
    stage: str  # "read" or "process"
    error: str
    label_sets: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "stage": self.stage, "error": self.error, "label_sets": list(self.label_sets)}


class EmbeddingStore:
    """Encodes records with several models in one pass and remembers the results.

    Each record is read and processed once per processor (preprocessing contract); the batch tensors go
    through every model under `torch.inference_mode`. Only embeddings are kept (`[n, D]` per model), so
    memory grows with the number of records, not with signal length; signals live one batch at a time.
    """

    def __init__(self, models: Mapping[str, EcgLangModel], batch_size: int = 64, progress: bool = True) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.models = dict(models)
        self.batch_size = int(batch_size)
        self.progress = progress
        self._rows: dict[tuple[str, str], int] = {}
        self._embeds: dict[str, list[np.ndarray]] = {k: [] for k in self.models}
        self._features: dict[str, list[np.ndarray]] = {k: [] for k in self.models}
        self._n = 0
        self.failures: dict[tuple[str, str], RecordFailure] = {}
        self._stacked: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def encode(
        self,
        paths: Sequence[str],
        record_ids: Sequence[str],
        processor: EcgProcessor,
        label_set: str = "",
    ) -> np.ndarray:
        """Row of each record in the store (`-1` for a failed record); encodes the ones not seen yet."""
        from ecglang.record.io import load_ecg

        pkey = json.dumps(processor.to_dict(), sort_keys=True)
        todo = [(p, r) for p, r in dict(zip(paths, record_ids, strict=True)).items() if (pkey, p) not in self._rows]
        todo = [(p, r) for p, r in todo if (pkey, p) not in self.failures]
        bar = tqdm(total=len(todo), desc=f"encoding ECGs{f' ({label_set})' if label_set else ''}", unit="rec",
                   disable=not self.progress or not todo)  # fmt: skip
        batch, batch_paths = [], []
        for i, (path, rid) in enumerate(todo):
            try:
                batch.append(load_ecg(path, record_id=rid))
                batch_paths.append(path)
            except (EcgLangError, OSError, ValueError) as exc:  # a corrupt file must not stop the evaluation
                self.failures[(pkey, path)] = RecordFailure(path, "read", _message(exc))
            if len(batch) >= self.batch_size or (i == len(todo) - 1 and batch):
                self._encode_batch(batch, batch_paths, processor, pkey)
                batch, batch_paths = [], []
            bar.update(1)
        bar.close()
        self._stacked.clear()
        rows = np.array([self._rows.get((pkey, p), -1) for p in paths], dtype=np.int64)
        for p in paths:
            if (pkey, p) in self.failures and label_set and label_set not in self.failures[(pkey, p)].label_sets:
                self.failures[(pkey, p)].label_sets.append(label_set)
        return rows

    def _encode_batch(self, ecgs: list, paths: list[str], processor: EcgProcessor, pkey: str) -> None:
        batch = processor(ecgs, errors="collect")
        for f in batch.failures:
            self.failures[(pkey, paths[f.index])] = RecordFailure(paths[f.index], "process", _message(f.error))
        if not batch.indices:
            return
        with torch.inference_mode():
            for key, model in self.models.items():
                out = model.encode_ecg(**batch)
                emb = torch.nn.functional.normalize(out.rhythm_embeds.float(), dim=-1)
                self._embeds[key].append(emb.cpu().numpy())
                self._features[key].append(out.rhythm_features.float().cpu().numpy())
        for idx in batch.indices:
            self._rows[(pkey, paths[idx])] = self._n
            self._n += 1

    def _arrays(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        if key not in self._stacked:
            emb = np.concatenate(self._embeds[key]) if self._embeds[key] else np.zeros((0, 0), np.float32)
            feat = np.concatenate(self._features[key]) if self._features[key] else np.zeros((0, 0), np.float32)
            self._embeds[key], self._features[key] = [emb], [feat]
            self._stacked[key] = (emb, feat)
        return self._stacked[key]

    def embeddings(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Unit rhythm embeddings `[len(rows), D]` of model `key`."""
        return self._arrays(key)[0][rows]

    def features(self, key: str, rows: np.ndarray) -> np.ndarray:
        """Pooled ECG-tower features before projection `[len(rows), d]` (for linear probes)."""
        return self._arrays(key)[1][rows]

    def failure_list(self) -> list[RecordFailure]:
        return sorted(self.failures.values(), key=lambda f: f.record)


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, EcgLangError) else f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------------------------------
# configuration and results


@dataclass
class EvaluateConfig:
    """Everything `run_evaluation` needs (the `ecglang evaluate` flags)."""

    model: str | Path
    label_sets: list[str] = field(default_factory=list)
    data_roots: list[str] = field(default_factory=list)
    split_root: str | Path | None = None
    part: str = "test"
    folds: list[int] | None = None  # PTB-XL strat_folds to keep (e.g. the pairs held out from pretraining)
    sources: list[str] = field(default_factory=lambda: ["names", "prompts", "knowledge"])
    labels_csv: str | Path | None = None
    records: str | Path | None = None
    id_column: str | None = None
    prompt_set: str | None = None
    preprocess: str = "default"
    n_boot: int = 1000
    seed: int = 0
    random_seed: int | None = None
    limit: int | None = None
    batch_size: int = 64
    knowledge: str = "default"
    k: int = 3
    knowledge_weight: float = 0.5
    device: str | None = None
    probe: bool = False
    probe_train: str = "train"
    probe_test: str = "val"
    probe_train_folds: list[int] | None = None
    probe_test_folds: list[int] | None = None
    probe_fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    probe_epochs: int = 300
    probe_limit: int | None = None
    retrieval: bool = False
    retrieval_folds: list[int] = field(default_factory=lambda: [10])
    retrieval_limit: int | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise `ConfigError` for inconsistent settings, before anything is loaded."""
        if not self.label_sets and self.labels_csv is None:
            raise ConfigError("nothing to evaluate: give --label-sets and/or --labels-csv FILE --records DIR")
        if (self.labels_csv is None) != (self.records is None):
            raise ConfigError("--labels-csv and --records go together")
        if self.label_sets and self.split_root is None:
            raise ConfigError("--label-sets needs --split-root (the MERL data_split folder)")
        if self.part not in PARTS:
            raise ConfigError(f"--part must be one of {list(PARTS)}, got {self.part!r}")
        if self.preprocess not in ("default", "merl_compat"):
            raise ConfigError(f"--preprocess must be 'default' or 'merl_compat', got {self.preprocess!r}")
        wants_knowledge = any(str(s).strip().lower() == "knowledge" for s in self.sources)
        if wants_knowledge and str(self.knowledge).lower() in ("off", "none", "false"):
            raise ConfigError(
                "the 'knowledge' source needs a knowledge base: drop it from --sources or set --knowledge"
            )
        if self.n_boot < 0:
            raise ConfigError(f"--n-boot must be >= 0, got {self.n_boot}")
        if self.probe:
            for name in ("probe_train", "probe_test"):
                if getattr(self, name) not in PARTS:
                    raise ConfigError(f"--{name.replace('_', '-')} must be one of {list(PARTS)}")
            if not self.probe_fractions or any(not 0 < f <= 1 for f in self.probe_fractions):
                raise ConfigError(f"--probe-fractions must lie in (0, 1], got {self.probe_fractions}")


@dataclass
class EvaluationRun:
    """What `run_evaluation` produced: the JSON-able result tree, the inputs of the figures, failures."""

    tree: dict[str, Any]
    failures: list[RecordFailure]
    missing: dict[str, list]  # label set → MissingRecord list
    roc: dict[str, tuple[np.ndarray, dict[str, np.ndarray], list[str]]]  # label set → (y, scores, codes)
    probe_curves: dict[str, dict[str, dict[float, EvalResult]]]

    @property
    def evaluated_any(self) -> bool:
        return any(ls.get("sources") for ls in self.tree["label_sets"].values())


# ---------------------------------------------------------------------------------------------------------
# the runner


def _processor_for(model: EcgLangModel, preprocess: str, dataset: str) -> EcgProcessor:
    """The model's processor, or its MERL-compatible variant (same beat settings) for `dataset`."""
    from ecglang.encoders.processing import EcgProcessor
    from ecglang.signal.preprocess import PreprocessConfig

    if model.config.processor is not None:
        base = model.get_processor()
    else:
        base = EcgProcessor(return_signal=not model.config.is_beat_model)
    if preprocess == "default":
        return base
    return EcgProcessor(
        preprocess=PreprocessConfig.merl_compat(dataset), beats=base.beat_config, return_signal=base.return_signal
    )


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
        from ecglang.encoders.modeling import load_model

        model = load_model(cfg.model, cfg.device)
    random_seed = cfg.seed if cfg.random_seed is None else cfg.random_seed
    baseline = random_encoder_baseline(model, seed=random_seed)
    models = {MODEL: model, RANDOM: baseline}
    want_knowledge = any(s.kind == "knowledge" for s in sources)
    clf = ZeroShotClassifier(model, knowledge=cfg.knowledge if want_knowledge else None, k=cfg.k,
                             knowledge_weight=cfg.knowledge_weight, batch_size=cfg.batch_size)  # fmt: skip
    clf_random = ZeroShotClassifier(baseline, knowledge=None, knowledge_weight=cfg.knowledge_weight)
    store = EmbeddingStore(models, batch_size=cfg.batch_size, progress=cfg.progress)

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
            "preprocess": cfg.preprocess,
            "sources": [s.key for s in sources],
            "score": "cosine(rhythm embedding, label embedding)",
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
    for data in tqdm(sets, desc="label sets", unit="set", disable=not cfg.progress or len(sets) < 2):
        processor = _processor_for(model, cfg.preprocess, data.dataset)
        entry, roc_inputs = _evaluate_set(data, sources, store, processor, clf, clf_random, cfg)
        tree["label_sets"][data.name] = entry
        if roc_inputs is not None:
            roc[data.name] = roc_inputs
        if cfg.probe:
            from ecglang.evaluation.probe_run import run_probe_for_set

            probe_entry, curves = run_probe_for_set(data, cfg, store, processor)
            entry["probe"] = probe_entry
            if curves:
                probe_curves[data.name] = curves
    if cfg.retrieval:
        from ecglang.evaluation.retrieval import run_retrieval

        tree["retrieval"] = run_retrieval(cfg, store, {MODEL: clf, RANDOM: clf_random}, model)
    failures = store.failure_list()
    tree["failures"] = [f.to_dict() for f in failures]
    tree["n_failures"] = len(failures)
    missing = {d.name: d.missing for d in sets}
    return EvaluationRun(tree, failures, missing, roc, probe_curves)


def _evaluate_set(
    data: LabelSetData,
    sources: list[PromptSource],
    store: EmbeddingStore,
    processor: EcgProcessor,
    clf: ZeroShotClassifier,
    clf_random: ZeroShotClassifier,
    cfg: EvaluateConfig,
) -> tuple[dict[str, Any], tuple | None]:
    entry: dict[str, Any] = {
        "dataset": data.dataset,
        "task": data.task,
        "part": data.part,
        "files": list(data.sources),
        "labels": {c: data.names[c] for c in data.label_codes},
        "preprocess": processor.to_dict()["preprocess"],
        "notes": dict(data.notes),
    }
    rows = store.encode(data.paths, data.record_ids, processor, label_set=data.name)
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
        log.warning("%s: %s", data.name, entry["status"])
        return entry, None
    y = data.labels[ok].astype(bool)
    emb = {key: store.embeddings(key, rows[ok]) for key in (MODEL, RANDOM)}
    scores_for_roc: dict[str, tuple[list[str], np.ndarray]] = {}
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
            scores_for_roc[f"{src.key} · {'model' if key == MODEL else 'random'}"] = (codes, scores)
        out.update(info)
        out["labels_scored"] = codes
        out["prompts"] = {c: [str(p) for p in s.prompts] for c, s in specs.items()}
        if any(s.knowledge_prompts for s in specs.values()):
            out["knowledge_prompts"] = {c: [str(p) for p in s.knowledge_prompts] for c, s in specs.items()}
            out["snippets"] = {c: [h["id"] for h in s.snippets] for c, s in specs.items()}
        entry["sources"][src.key] = out
        roc_codes = [c for c in roc_codes if c in codes]
    if not roc_codes:
        return entry, None
    # The figure keeps the labels that every source scored, so each panel compares all sources.
    roc_scores = {name: s[:, [codes.index(c) for c in roc_codes]] for name, (codes, s) in scores_for_roc.items()}
    y_roc = y[:, [data.label_codes.index(c) for c in roc_codes]]
    if len(roc_codes) < len(data.label_codes):
        entry["roc_labels"] = roc_codes
    return entry, (y_roc, roc_scores, roc_codes)


def _version() -> str:
    from ecglang import __version__

    return str(__version__)


# ---------------------------------------------------------------------------------------------------------
# outputs


def _cells(run: EvaluationRun, which: str) -> dict[str, dict[str, EvalResult]]:
    out: dict[str, dict[str, EvalResult]] = {}
    for name, entry in run.tree["label_sets"].items():
        out[name] = {src: res[which] for src, res in entry.get("sources", {}).items() if which in res}
    return out


def results_markdown(run: EvaluationRun) -> str:
    """`results.md`: macro AUROC / max-F1 tables (rows = label sets, columns = sources × {model, random}),
    record counts, prompt-source notes, linear probe and retrieval tables."""
    from ecglang.evaluation.writers import markdown_table

    tree = run.tree
    proto = tree["protocol"]
    lines = [
        "# ecglang zero-shot evaluation",
        "",
        f"- model: `{tree['model']['source']}` ({tree['model']['ecg_tower'].get('type')} ECG tower); "
        f"random baseline: same architecture, seed {tree['random_baseline']['random_seed']} "
        "(ECG tower and projection heads random, text tower shared)",
        f"- split part: `{proto['part']}`; preprocessing: `{proto['preprocess']}`; score: {proto['score']}",
        f"- {proto['ci']}, {proto['n_boot']} resamples, seed {proto['seed']}"
        + (f"; at most {proto['limit']} records per label set (seeded sample)" if proto["limit"] else ""),
        "",
    ]
    model_cells, random_cells = _cells(run, MODEL), _cells(run, RANDOM)
    if any(model_cells.values()):
        for metric in ("macro_auroc", "macro_max_f1"):
            lines += [markdown_table(model_cells, random_cells, metric=metric, baseline_label="random"), ""]
    else:
        lines += ["No label set had records to evaluate.", ""]
    lines += [
        "## Records",
        "",
        "| label set | part | rows in labels file | found on disk | missing | left out by limit | failed | evaluated |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, entry in tree["label_sets"].items():
        r = entry["records"]
        lines.append(
            f"| {name} | {entry['part']} | {r['rows']} | {r['found']} | {r['missing']} | {r['left_out_by_limit']} "
            f"| {r['failed']} | {r['evaluated']} |"
        )
    notes = []
    for name, entry in tree["label_sets"].items():
        if entry.get("status"):
            notes.append(f"- {name}: {entry['status']}")
        for src, res in entry.get("sources", {}).items():
            if res.get("labels_missing"):
                notes.append(
                    f"- {name} · {src}: no text for {len(res['labels_missing'])} label(s), skipped for this "
                    f"source (its macro figures average over the others): {', '.join(res['labels_missing'])}"
                )
            if res.get("suspect"):
                notes.append(f"- {name} · {src}: entries flagged as suspect: "
                             + "; ".join(f"{c} ({why})" for c, why in res["suspect"].items()))  # fmt: skip
            if res.get("note") or res.get("status"):
                notes.append(f"- {name} · {src}: {res.get('status') or res.get('note')}")
        if entry.get("roc_labels"):
            notes.append(
                f"- {name}: the ROC figure shows the labels every source scored: {', '.join(entry['roc_labels'])}"
            )
    if notes:
        lines += ["", "## Notes", "", *notes]
    probe_model = {n: e["probe"]["model"] for n, e in tree["label_sets"].items() if e.get("probe", {}).get("model")}
    if probe_model:
        probe_random = {n: tree["label_sets"][n]["probe"]["random"] for n in probe_model}
        lines += ["", "## Linear probe", ""]
        lines += [_probe_line(n, tree["label_sets"][n]["probe"]) for n in probe_model]
        lines += ["", markdown_table(probe_model, probe_random, baseline_label="random", row_header="label set")]
    skipped_probe = [f"- {n}: {e['probe']['status']}" for n, e in tree["label_sets"].items()
                     if e.get("probe", {}).get("status")]  # fmt: skip
    if skipped_probe:
        lines += ["", "Linear probe not run:", *skipped_probe]
    ret = tree.get("retrieval")
    if ret:
        lines += ["", "## Retrieval", ""]
        if ret.get("status"):
            lines.append(ret["status"])
        else:
            lines.append(
                f"{ret['pairs']} held-out PTB-XL ECG–report pairs (folds {ret['folds']}; "
                f"{ret['dropped_duplicate_reports']} pairs whose report repeats an earlier one dropped, "
                f"{ret['dropped_empty_reports']} without report); chance recall@1 = {ret['chance_recall@1']:.3f}."
            )
            lines += [
                "",
                "| direction | encoder | recall@1 | recall@5 | recall@10 | median rank |",
                "|---|---|---:|---:|---:|---:|",
            ]
            for direction in ("ecg_to_report", "report_to_ecg"):
                for key in (MODEL, RANDOM):
                    m = ret[key][direction]
                    lines.append(f"| {direction.replace('_', ' ')} | {key} | {m['recall@1']:.3f} | {m['recall@5']:.3f} "
                                 f"| {m['recall@10']:.3f} | {m['median_rank']:g} |")  # fmt: skip
    lines += ["", "## Failures", ""]
    if run.failures:
        lines.append(f"{len(run.failures)} record(s) could not be read or processed and were left out (failures.csv):")
        lines += [f"- `{f.record}` [{f.stage}]: {f.error}" for f in run.failures[:20]]
        if len(run.failures) > 20:
            lines.append(f"- ... and {len(run.failures) - 20} more")
    else:
        lines.append("None: every record found on disk was read and processed.")
    return "\n".join(lines) + "\n"


def _probe_line(name: str, p: Mapping[str, Any]) -> str:
    def part(side: Mapping[str, Any]) -> str:
        folds = f", folds {side['folds']}" if side["folds"] else ""
        return f"`{side['part']}` ({side['records']} records{folds})"

    sizes = ", ".join(f"{f} = {r.meta.get('n_train')}" for f, r in p["model"].items())
    return (
        f"- {name}: train {part(p['train'])}, test {part(p['test'])}; training records per fraction: {sizes}; "
        f"features: {p['features']}"
    )


def write_outputs(run: EvaluationRun, out_dir: str | Path) -> dict[str, Path]:
    """Write `results.json`, `results.md`, `roc_<label set>.png`, `probe_<label set>.png`,
    `failures.csv` and `missing.csv` into `out_dir`; returns `{name: path}`."""
    import csv

    from ecglang.evaluation.writers import plot_probe_curve, plot_roc_curves, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, (y, scores, codes) in run.roc.items():
        path = plot_roc_curves(y, scores, codes, out / f"roc_{_safe(name)}.png", title=f"{name}: zero-shot ROC")
        run.tree["label_sets"][name]["roc_png"] = path.name
        written[f"roc_{name}"] = path
    for name, curves in run.probe_curves.items():
        path = plot_probe_curve(curves, out / f"probe_{_safe(name)}.png", title=f"{name}: linear probe")
        run.tree["label_sets"][name]["probe"]["png"] = path.name
        written[f"probe_{name}"] = path
    failures_csv = out / "failures.csv"
    with failures_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["record", "stage", "error", "label_sets"])
        writer.writerows((f.record, f.stage, f.error, ";".join(f.label_sets)) for f in run.failures)
    written["failures"] = failures_csv
    missing_csv = out / "missing.csv"
    with missing_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["label_set", "record_id", "path", "reason"])
        for name, items in run.missing.items():
            writer.writerows((name, m.record_id, m.path, m.reason) for m in items)
    written["missing"] = missing_csv
    run.tree["outputs"] = {k: p.name for k, p in written.items()} | {"results_md": "results.md"}
    written["results_json"] = write_json(run.tree, out / "results.json")
    md = out / "results.md"
    md.write_text(results_markdown(run), encoding="utf-8")
    written["results_md"] = md
    return written


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)

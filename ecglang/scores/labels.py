"""Labels as embeddings: label specs (prompts + retrieved knowledge), the prompt cache, label matrices.

Each prompt is embedded with the model's text tower; a label's embedding is the re-normalised mean of its
prompt embeddings. With knowledge retrieval, the label's own prompts are its clinical name (from its prompt
set) and its prompts, and the top-k snippets for the label (queried with the label name plus its prompts;
`k` = `DEFAULT_KNOWLEDGE_K`, 1, by default) are turned into extra prompts ("<snippet title>: <criterion>", one
per criterion sentence, at most 3·k); the label embedding is then
`normalise((1 − w) · mean(own prompts) + w · mean(knowledge prompts))` with `w = knowledge_weight` (default
`DEFAULT_KNOWLEDGE_WEIGHT`, 0.75): knowledge adds prompts beside the label's own words and never
replaces them, and many snippets cannot drown them. This composition (k and w) was chosen without downstream labels
(`ecglang.evaluation.composition`: report-derived labels of the pretraining folds). On request
(`drop_ambiguous_prompts`), prompts that the text tower places nearer another label's name than their own are
left out first. The ids of the snippets behind every label are kept.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch
from tqdm.auto import tqdm

from ecglang.encoders.layers import eval_mode, masked_mean, weights_version
from ecglang.encoders.modeling import EcgLangModel
from ecglang.errors import ConfigError, PromptError
from ecglang.knowledge.index import Hit, KnowledgeIndex
from ecglang.knowledge.retrieval import compose_prompts, retrieve_for_labels
from ecglang.scores.prompts import LabelsArg, PromptSet, PromptSource, load_prompt_set, normalize_text, resolve_prompts

# The label-free composition check's choice (ecglang.evaluation.composition): of the compositions that keep the
# label's own words, the top snippet (k = 1) at ¾ knowledge gave the highest macro AUROC on report-derived labels,
# on the bundled model and cross-fitted alike (README, "Results"): a label's further snippets are mostly its
# differential diagnosis and causes, which pull its embedding towards other conditions.
DEFAULT_KNOWLEDGE_WEIGHT = 0.75
PROGRESS_MIN_TEXTS = 2048  # prompts to embed before a progress bar is worth showing (~10 s on a CPU)
DEFAULT_KNOWLEDGE_K = 1

# What zero-shot takes as `knowledge`: an index, "default"/"on"/True, "off"/"none"/False/None, an index folder written
# by `ecglang knowledge build`, or a knowledge-base folder or .jsonl file (indexed on first use).
KnowledgeArg: TypeAlias = KnowledgeIndex | str | os.PathLike | bool | None

# Prompt embeddings are cached per model (weakly, so a dropped model frees its cache), for the weights the model
# holds now (`weights_version`: an optimizer step or `load_state_dict` starts a new cache). Keys are
# ("text", prompt) for the text head and ("sentence", prompt) for the sentence head.
PROMPT_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple, dict[tuple, np.ndarray]]] = weakref.WeakKeyDictionary()


def prompt_cache(model: EcgLangModel) -> dict[tuple, np.ndarray]:
    """The prompt embeddings cached for `model`'s current weights (emptied when they have changed)."""
    version = weights_version(model)
    cached = PROMPT_CACHE.get(model)
    if cached is None or cached[0] != version:
        cached = PROMPT_CACHE[model] = (version, {})
    return cached[1]


def clear_prompt_cache(model: EcgLangModel | None = None) -> None:
    """Forget the cached prompt embeddings of `model` (all models: None). Needed only after writing weights
    through `tensor.data`, which the cache cannot see; other weight changes are noticed."""
    if model is None:
        PROMPT_CACHE.clear()
    else:
        PROMPT_CACHE.pop(model, None)


@dataclass
class LabelSpec:
    """What a label is scored with: its prompts, the knowledge prompts and snippet ids behind them."""

    label: str
    name: str
    prompts: list[str]
    knowledge_prompts: list[str] = field(default_factory=list)
    snippets: list[dict[str, Any]] = field(default_factory=list)  # id, title, source, score
    dropped: list[str] = field(default_factory=list)  # prompts left out as ambiguous (`drop_ambiguous_prompts`)


def resolve_knowledge(knowledge: KnowledgeArg) -> KnowledgeIndex | None:
    """Turn the `knowledge` argument into a `KnowledgeIndex` (or None for no retrieval)."""
    # "none" as well as "off": a string spelling of None looked for a folder named "none"
    if knowledge is None or knowledge is False or (isinstance(knowledge, str) and knowledge.lower() in ("off", "none")):
        return None
    from ecglang.knowledge.index import KnowledgeBase, KnowledgeIndex  # here: FAISS loads only when asked for

    if isinstance(knowledge, KnowledgeIndex):
        return knowledge
    if knowledge is not True and not isinstance(knowledge, (str, os.PathLike)):  # a number was an untyped TypeError
        raise ConfigError(
            f"knowledge must be a KnowledgeIndex, a folder or file path, 'default'/True or 'off'/None/False; got "
            f"{type(knowledge).__name__} {knowledge!r:.40}"
        )
    if knowledge is True or (isinstance(knowledge, str) and knowledge.lower() in ("default", "on")):
        return KnowledgeIndex.default(show_progress=False)
    path = Path(knowledge)
    # a saved index (an old one with index.faiss too: `load` then says to rebuild it), not a folder of JSONL files
    saved = any((path / f).exists() for f in ("vectors.npy", "index.faiss"))
    if path.is_dir() and (path / "meta.json").exists() and saved:
        return KnowledgeIndex.load(path)
    return KnowledgeIndex.default(kb=KnowledgeBase.load(path), show_progress=False)


def label_specs(
    model: EcgLangModel,
    labels: LabelsArg | None,
    prompts: PromptSource | None,
    index: KnowledgeIndex | None,
    k: int,
    drop_ambiguous: bool = False,
) -> dict[str, LabelSpec]:
    """Resolve the user's labels/prompts (and retrieve `k` snippets per label from `index`) into specs; with
    `drop_ambiguous`, prompts nearer another label's name than their own are left out (`drop_ambiguous_prompts`).
    Labels given as a set are a `PromptError`: a set has no order (it changes with the process's hash seed), and
    the label order is the column order of the scores."""
    for given in (labels, prompts):
        if isinstance(given, (set, frozenset)):
            raise PromptError(
                None, f"labels given as a {type(given).__name__} have no order: pass a list: the label order sets the "
                f"column order (e.g. sorted(labels)); got {sorted(map(str, given))!r:.80}",
            )  # fmt: skip
    specs = _resolve_specs(model, labels, prompts, index, k)
    if drop_ambiguous:  # a prompt set's labels are told apart from the whole set, whichever of them are asked for
        drop_ambiguous_prompts(model, specs, rivals=list(label_names(labels, prompts).values()))
    return specs


def reference_text(spec: LabelSpec) -> str:
    """The words a label is told apart by: its name, unless the name is only a key of a `prompts={key: [...]}`
    dict (no prompt set names it and it is none of its prompts), then its first prompt."""
    named = spec.name != spec.label or any(normalize_text(p) == normalize_text(spec.name) for p in spec.prompts)
    return spec.name if named or not spec.prompts else spec.prompts[0]


def drop_ambiguous_prompts(model: EcgLangModel, specs: Mapping[str, LabelSpec], rivals: Sequence[str] = ()) -> None:
    """Leave out every prompt (own or knowledge) that the model's text tower places nearer another label's name
    (of the scored labels, and the `rivals`: the rest of their prompt set) than its own label's name, in place;
    the name itself always stays. (A label's "name" here is `reference_text`.)

    Why: a small text encoder reads words, not meaning. "sinus rhythm with heart rate below 60", a prompt for
    sinus bradycardia, sits nearer "sinus rhythm" than "sinus bradycardia", so it pulls the label towards its
    sibling. The check reads text embeddings only (no ECG, no label). On the report-derived labels of held-out
    pretraining pairs it raised macro AUROC, most for rhythm labels; but a group label described by its members
    (PTB-XL's CD: "bundle branch block", "AV block") loses them, which cost PTB-XL super and sub end to end, so
    it is off by default (README, "Results"). A free-text label alone has nothing to be told apart from. A
    knowledge snippet whose criteria are all left out is no longer listed behind the label."""
    own = [reference_text(spec) for spec in specs.values()]
    names = list(dict.fromkeys([*own, *rivals]))
    if len(names) < 2:
        return
    texts = list(dict.fromkeys(t for spec in specs.values() for t in (*spec.prompts, *spec.knowledge_prompts)))
    name_emb = embed_texts(model, names)
    at = {name: i for i, name in enumerate(names)}
    own_emb = name_emb[[at[o] for o in own]]  # each label's reference is one of `names`
    text_emb = embed_texts(model, texts)
    nearest = np.empty(len(texts), np.float32)  # each prompt's highest cosine with any label's name
    for start in range(0, len(texts), 4096):  # [chunk, labels] at a time: memory stays O(chunk × labels)
        nearest[start : start + 4096] = (text_emb[start : start + 4096] @ name_emb.T).max(axis=1)
    row = {t: i for i, t in enumerate(texts)}
    for spec, reference, own_name in zip(specs.values(), own, own_emb, strict=True):
        name = normalize_text(reference)

        def fits(text: str, own_name: np.ndarray = own_name, name: str = name) -> bool:
            i = row[text]
            return normalize_text(text) == name or float(text_emb[i] @ own_name) >= nearest[i] - 1e-6

        kept = [t for t in spec.prompts if fits(t)]
        know = [t for t in spec.knowledge_prompts if fits(t)]
        spec.dropped = [t for t in (*spec.prompts, *spec.knowledge_prompts) if t not in kept and t not in know]
        spec.prompts = kept or [reference]
        if len(know) < len(spec.knowledge_prompts):
            used = {getattr(t, "snippet_id", None) for t in know}
            spec.snippets = [s for s in spec.snippets if s["id"] in used]
        spec.knowledge_prompts = know


def _resolve_specs(
    model: EcgLangModel, labels: LabelsArg | None, prompts: PromptSource | None, index: KnowledgeIndex | None, k: int
) -> dict[str, LabelSpec]:
    if index is None:
        names = label_names(labels, prompts)
        table = resolve_prompts(labels=labels, prompts=prompts)
        return {lab: LabelSpec(lab, names.get(lab, lab), list(ps)) for lab, ps in table.items()}
    queries = knowledge_queries(labels, prompts)
    specs = {lab: LabelSpec(lab, q.name, list(q.prompts)) for lab, q in queries.items()}
    tokenizer = model.get_tokenizer()
    max_len = int(model.config.text_tower.get("max_length", 128))
    todo = list(specs.values())
    found = retrieve_knowledge(index, list(queries.values()), k)
    for spec, hits in zip(todo, found, strict=True):
        spec.knowledge_prompts = list(
            compose_prompts(spec.name, hits, max_prompts=3 * k, max_tokens=max_len, tokenizer=tokenizer)
        )
        spec.snippets = [
            {"id": h.snippet.id, "title": h.snippet.title, "source": h.snippet.source, "score": h.score} for h in hits
        ]
    return specs


@dataclass(frozen=True)
class KnowledgeQuery:
    """What knowledge is retrieved with for one label: its name, its own prompts (the name first), and for a
    prompt-set label its code `(namespace, code)` and the `members` it stands for when it is a group."""

    name: str
    prompts: tuple[str, ...]
    code: tuple[str, str] | None = None
    members: tuple[str, ...] = ()


def knowledge_queries(labels: LabelsArg | None, prompts: PromptSource | None) -> dict[str, KnowledgeQuery]:
    """Label → `KnowledgeQuery`, as zero-shot retrieves for it (and `ecglang knowledge search --prompt-set`)."""
    source = _prompt_set(labels, prompts)  # read once: names and group members both come from it
    table = resolve_prompts(labels=labels, prompts=prompts)
    namespace = code_namespace(labels, prompts)
    out = {}
    for lab, own in table.items():
        lp = source.labels.get(lab) if source is not None else None
        name, members = (lp.name, lp.codes) if lp is not None else (None, ())
        code = (namespace, lab) if namespace else None
        out[lab] = KnowledgeQuery(name or lab, tuple(with_name(list(own), name)), code, members)
    return out


def retrieve_knowledge(index: KnowledgeIndex, queries: Sequence[KnowledgeQuery], k: int) -> list[list[Hit]]:
    """One batched retrieval for all `queries`; a prompt-set code selects the snippets written for that label."""
    return retrieve_for_labels(index, [q.name for q in queries], [list(q.prompts) for q in queries], k=k,
                               codes=[q.code for q in queries], members=[q.members for q in queries])  # fmt: skip


def with_name(prompts: Sequence[str], name: str | None) -> list[str]:
    """The label's own prompts with its clinical name first (when a prompt set names it and no prompt is it).

    With knowledge on, the name is one more own prompt, as in CLIP-style prompt ensembling: knowledge adds
    prompts beside the label's own words (its name and its prompts) and never takes the name's place.
    """
    if not name or any(normalize_text(p) == normalize_text(name) for p in prompts):
        return list(prompts)
    return [name, *prompts]


def embed_texts(model: EcgLangModel, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """Unit embeddings `[n, D]` of prompts, cached per model: each distinct prompt is embedded once (in eval
    mode, whatever mode the model is in; its mode is given back). `progress`: a bar when there are thousands to
    embed (False: never)."""
    cache = prompt_cache(model)
    missing = by_token_count(model, list(dict.fromkeys(t for t in texts if ("text", t) not in cache)))
    for start in tqdm(
        range(0, len(missing), batch_size),
        desc="embedding prompts",
        unit="batch",
        disable=not progress or len(missing) < PROGRESS_MIN_TEXTS,
    ):
        chunk = missing[start : start + batch_size]
        with eval_mode(model), torch.inference_mode():
            out = model.encode_text(chunk)
        emb = out.text_embeds.float().cpu().numpy()
        sent = sentence_vectors(out)
        for i, text in enumerate(chunk):
            cache[("text", text)] = emb[i]
            if sent is not None:
                cache[("sentence", text)] = sent[i]
    return np.stack([cache[("text", t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)


def by_token_count(model: EcgLangModel, texts: list[str], chunk: int = 4096) -> list[str]:
    """`texts` shortest first by their token count under the model's own tokenizer.

    A batch then holds texts of one length, so padding, and the work spent on it, stays small: 10,000 labels
    with knowledge (10,564 distinct prompts) are 114k tokens, which padded to 178k in batches sorted by
    character count (a word is 1 to 4 pieces) and to 124k sorted by token count. Embedding them on 2 cores,
    side by side: 28-30 s sorted by characters, 20-21 s sorted by tokens (counting them included)."""
    if len(texts) < 2:
        return texts
    counts = np.concatenate([
        model.tokenize(texts[i : i + chunk])["attention_mask"].sum(1).numpy() for i in range(0, len(texts), chunk)
    ])  # fmt: skip
    return [texts[i] for i in np.argsort(counts, kind="stable")]


def label_matrix(
    model: EcgLangModel,
    specs: Mapping[str, LabelSpec],
    knowledge_weight: float,
    head: str = "text",
    progress: bool = True,
) -> np.ndarray:
    """`[n_labels, D]` label embeddings (see the module docstring for the aggregation)."""
    every = [t for s in specs.values() for t in (*s.prompts, *s.knowledge_prompts)]
    embed_texts(model, every, progress=progress)
    cache = prompt_cache(model)
    rows = []
    for spec in specs.values():
        own = mean_unit([cache[(head, t)] for t in spec.prompts])
        if spec.knowledge_prompts:
            know = mean_unit([cache[(head, t)] for t in spec.knowledge_prompts])
            own = unit((1 - knowledge_weight) * own + knowledge_weight * know)
        rows.append(own)
    return np.stack(rows).astype(np.float32)


def _prompt_set(labels: LabelsArg | None, prompts: PromptSource | None) -> PromptSet | None:
    """The prompt set the labels come from (named by string, alone or with a list of its codes), if any."""
    source = labels if labels is not None and prompts is None else prompts
    if isinstance(source, str):
        try:
            return load_prompt_set(source)
        except PromptError:
            return None
    return source if isinstance(source, PromptSet) else None


def label_names(labels: LabelsArg | None, prompts: PromptSource | None) -> dict[str, str]:
    """Readable names for prompt-set codes (e.g. CLBBB → complete left bundle branch block)."""
    ps = _prompt_set(labels, prompts)
    return {} if ps is None else {code: lp.name for code, lp in ps.labels.items()}


def code_namespace(labels: LabelsArg | None, prompts: PromptSource | None) -> str | None:
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


def unit(v: np.ndarray) -> np.ndarray:
    """`v / ‖v‖` (a zero vector stays zero)."""
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def mean_unit(vectors: list[np.ndarray]) -> np.ndarray:
    """The re-normalised mean of unit vectors."""
    return unit(np.mean(np.stack(vectors), axis=0))


def sentence_vectors(out: Any) -> np.ndarray | None:
    """One sentence-head vector per prompt: the masked mean of its sentence embeddings."""
    if getattr(out, "sentence_embeds", None) is None:
        return None
    mean = masked_mean(out.sentence_embeds.float(), out.sentence_mask, dim=1)
    return torch.nn.functional.normalize(mean, dim=-1).cpu().numpy()

"""Retrieval of knowledge for a label, and the knowledge prompts composed from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ecglang.errors import ConfigError, PromptError
from ecglang.knowledge.index import Hit, KnowledgeIndex


def retrieve_for_label(
    index: KnowledgeIndex,
    label_name: str,
    prompts: Sequence[str] = (),
    k: int = 3,
    code: tuple[str, str] | None = None,
) -> list[Hit]:
    """The `k` snippets nearest to a label, best first.

    The query embedding is the mean of the unit embeddings of the label name and each of its prompts,
    re-normalised: every text votes equally, and a long prompt list cannot push the label name out of
    the query the way concatenation past the encoder's 256-token limit would.

    With `code=(namespace, code)` (for example `("ptbxl", "CLBBB")`) the snippets tagged with that code
    come first, ranked by the same similarity, and nearest neighbours fill the remaining places. Use it
    when the label's code is known: small sentence encoders barely separate "left" from "right".
    """
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    texts = list(dict.fromkeys(t.strip() for t in [label_name, *prompts] if isinstance(t, str) and t.strip()))
    query = index.embed(texts).mean(axis=0)
    query /= np.linalg.norm(query) or 1.0
    nearest = index.search_embeddings(query[None, :], k)[0]
    if code is None:
        return nearest
    tagged = index.kb.snippets_for_code(*code)
    if not tagged:
        return nearest
    # Tagged snippets are few: score them exactly instead of hoping they are among the nearest k.
    scores = index.vectors([s.id for s in tagged]) @ query
    first = [Hit(s, float(v)) for v, s in sorted(zip(scores, tagged, strict=True), key=lambda p: -p[0])][:k]
    chosen = {h.snippet.id for h in first}
    return first + [h for h in nearest if h.snippet.id not in chosen][: k - len(first)]


class ComposedPrompt(str):
    """A knowledge-enriched prompt: a plain `str` that also carries the id of the snippet it came from,
    the label it was composed for and the retrieval score, so zero-shot scores can be explained."""

    snippet_id: str
    label: str
    score: float

    def __new__(cls, text: str, snippet_id: str, label: str, score: float = float("nan")) -> ComposedPrompt:
        obj = super().__new__(cls, text)
        obj.snippet_id = snippet_id
        obj.label = label
        obj.score = float(score)
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # pickling (multiprocessing data loaders) keeps the metadata
        return (ComposedPrompt, (str(self), self.snippet_id, self.label, self.score))

    def __repr__(self) -> str:
        return f"ComposedPrompt({str(self)!r}, snippet_id={self.snippet_id!r})"


def compose_prompts(
    label_name: str,
    hits: Sequence[Hit],
    max_prompts: int | None = None,
    max_tokens: int = 128,
    tokenizer: Any = None,
    max_words: int = 40,
) -> list[ComposedPrompt]:
    """Turn retrieved snippets into prompts `"<label name>: <criterion>"`, one per criterion sentence.

    Each prompt is cut to fit a text encoder: to `max_tokens` tokens (special tokens included) when a
    Hugging Face `tokenizer` is given, otherwise to `max_words` words (about 100 word pieces for this
    text). Duplicates are dropped; order follows the hits, then the sentences.
    """
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    label = label_name.strip()
    out: list[ComposedPrompt] = []
    seen: set[str] = set()
    for hit in hits:
        for sentence in hit.snippet.sentences():
            text = _fit(f"{label}: {sentence}", max_tokens, tokenizer, max_words)
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            out.append(ComposedPrompt(text, hit.snippet.id, label, hit.score))
            if max_prompts is not None and len(out) >= max_prompts:
                return out
    return out


def _fit(text: str, max_tokens: int, tokenizer: Any, max_words: int) -> str:
    words = text.split()
    if tokenizer is None:
        return " ".join(words[:max_words])

    def n_tokens(candidate: str) -> int:
        return len(tokenizer(candidate, add_special_tokens=True, truncation=False)["input_ids"])

    if n_tokens(text) <= max_tokens:
        return text
    lo, hi = 1, len(words)  # binary search for the longest word prefix that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if n_tokens(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])

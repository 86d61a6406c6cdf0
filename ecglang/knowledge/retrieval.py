"""Knowledge for a label: hybrid retrieval with a contradiction guard, and the prompts composed from it.

One retrieval serves zero-shot (`ecglang.scores.classifier`) and `ecglang knowledge search`. For each label,
in order:

1. **Exact.** A known code (`code=(namespace, code)`, as prompt sets give) selects the snippets tagged with
   it, those most about the label first: the ones the label's name also names, then those whose codes best
   match the label's (Jaccard overlap with the code and, for a group label, the `members` it covers: a
   single condition prefers snippets written for fewer codes, a group its overview-like snippets over one
   narrow member); otherwise the normalised label is looked up in the alias index
   (`ecglang.knowledge.aliases`): a snippet code ("CLBBB", "164909002"), a whole title or alias ("LBBB",
   "1st degree AV block", "A-fib", "PVCs", misspellings corrected), else the longest aliases contained in
   the label.
2. **Hybrid.** Only when nothing matched exactly: lexical BM25 (`bm25s`) over the snippets' titles, aliases
   and text is fused with the FAISS dense similarity by reciprocal-rank fusion (RRF). A **floor** keeps a
   candidate only when it is close in meaning (cosine ≥ `DENSE_STRONG`), or fairly close (≥ `DENSE_MIN`)
   and sharing at least `MIN_COVERAGE` of the label's words: fewer snippets, or none, rather than
   off-label ones.
3. **Guard.** Every candidate, from any stage, is dropped when its title names the opposite condition
   (`ecglang.knowledge.guard`: left/right, first/second/third degree, complete/incomplete, tachy/brady,
   elevation/depression, hyper/hypo, ...).

A label that matches nothing gets no snippets: it is scored on its own words ("no knowledge found").
Alias matches come in the order the snippets were named (title; then an alias that opens the snippet's
title, one its title mentions, any other alias; then the SNOMED CT name table; then file order) and score
`EXACT_SCORE` (1.0) without running the encoder; hybrid hits score the cosine similarity between the label's
query embedding and the snippet document.
"""

from __future__ import annotations

import itertools
import logging
import re
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ecglang.errors import ConfigError, PromptError
from ecglang.knowledge.aliases import AliasIndex, AliasMatch, normalize_tokens
from ecglang.knowledge.base import Snippet, normalize_code
from ecglang.knowledge.guard import (
    combines,
    conflicts,
    criterion_conflicts,
    features,
    named,
    named_values,
    negates,
    open_groups,
    polarity,
    title_features,
)
from ecglang.knowledge.index import Hit, KnowledgeIndex

if TYPE_CHECKING:
    import bm25s

__all__ = [
    "NO_KNOWLEDGE",
    "ComposedPrompt",
    "Retriever",
    "compose_prompts",
    "label_criteria",
    "retrieve_for_label",
    "retrieve_for_labels",
    "retriever_for",
]

#: What the CLI prints for a label that no snippet matches (it is scored on its own words).
NO_KNOWLEDGE = "no knowledge found"
#: Floor of the hybrid stage (cosine similarity of all-MiniLM-L6-v2 query and snippet document; word
#: coverage: the share of the label's words found in the snippet's title, aliases or text).
DENSE_STRONG = 0.62
DENSE_MIN = 0.40
MIN_COVERAGE = 0.6
#: ... or every one of at least two words, at a lower similarity.
DENSE_WORDS = 0.30
#: ... and none far below the best candidate of the same label.
RELATIVE_FLOOR = 0.25
#: The score of an exact code or alias match (hybrid hits score their cosine similarity, below 1).
EXACT_SCORE = 1.0
#: Reciprocal-rank fusion constant (Cormack et al., 2009) and the depth of each ranking fused.
RRF_K = 60
FUSION_DEPTH = 50
#: Query-text embeddings remembered per retriever (one label name is ~1.5 kB).
TEXT_CACHE_SIZE = 100_000
# Words that say how, not what: they do not count towards word coverage.
_FILLER = frozenset({"with", "and", "or", "in", "on", "at", "to", "for", "by", "from", "type", "pattern", "sign",
                     "finding", "change", "abnormality", "abnormal", "wave", "rhythm", "lead"})  # fmt: skip

# Guard groups that name the condition itself (which chamber fibrillates, which side is blocked), as opposed to
# those that describe findings (an interval, its duration, ST direction): a hybrid hit must name the former.
_CONDITION_GROUPS = frozenset({"chamber", "fibrillation", "side", "wall", "degree"})

# Every value of a choice, to tell an overview (naming none or all) from a title naming some of them
_ALL_VALUES = {"degree": frozenset({"first", "second", "third"}), "side": frozenset({"left", "right"})}

_RETRIEVERS: weakref.WeakKeyDictionary[KnowledgeIndex, Retriever] = weakref.WeakKeyDictionary()


class Retriever:
    """The hybrid retrieval of one `KnowledgeIndex` (see the module docstring). Build once, query often:
    `retriever_for(index)` keeps one per index."""

    def __init__(self, index: KnowledgeIndex, name_table: bool = True) -> None:
        self.index = index
        self.kb = index.kb
        self.aliases = AliasIndex(self.kb, name_table=name_table)
        snippets = self.kb.snippets
        self._row = {s.id: i for i, s in enumerate(snippets)}
        self._titles = [title_features(normalize_tokens(s.title), normalize_tokens(s.title.split(":")[0]))
                        for s in snippets]  # fmt: skip
        heads = [normalize_tokens(" ".join((s.title, *s.aliases))) for s in snippets]
        self._head_sets = [frozenset(h) for h in heads]
        self._combined = [combines(normalize_tokens(s.title)) for s in snippets]
        bodies = [normalize_tokens(s.text) for s in snippets]
        # Title and aliases name the condition: counted twice, so they outweigh a passing mention in text.
        self._doc_tokens = [list(h) * 2 + list(b) for h, b in zip(heads, bodies, strict=True)]
        self._doc_sets = [frozenset(d) for d in self._doc_tokens]
        # word stems, for a label's last word: "hypertrophic" (a corrected "hypertrophie") is about hypertrophy
        self._doc_stems = [frozenset(t[:7] for t in d) for d in self._doc_sets]
        self._vectors = index.vectors([s.id for s in snippets])
        self._bm25: bm25s.BM25 | None = None
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()

    # -- embeddings --------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False) -> np.ndarray:
        """Unit embeddings of `texts`; each distinct text is embedded once (batched) and remembered."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._texts))
        if missing:
            vectors = self.index.embed(missing, batch_size=batch_size, show_progress=show_progress)
            for text, vector in zip(missing, vectors, strict=True):
                self._texts[text] = vector
            while len(self._texts) > TEXT_CACHE_SIZE:
                self._texts.popitem(last=False)
        if not texts:
            return np.zeros((0, self.index.dim), dtype=np.float32)
        return np.stack([self._texts[t] for t in texts])

    def queries(self, names: Sequence[str], prompts: Sequence[Sequence[str]], **kwargs: Any) -> np.ndarray:
        """One unit query vector per label: the re-normalised mean of its name's and prompts' embeddings.

        Every text votes equally, and a long prompt list cannot push the label name out of the query the
        way concatenation past the encoder's 256-token limit would."""
        groups = [list(dict.fromkeys(t.strip() for t in [n, *p, self._expanded(n)] if isinstance(t, str) and t.strip()))
                  for n, p in zip(names, prompts, strict=True)]  # fmt: skip
        flat = self.embed([t for g in groups for t in g], **kwargs)
        out = np.empty((len(groups), self.index.dim), dtype=np.float32)
        start = 0
        for i, g in enumerate(groups):
            q = flat[start : start + len(g)].mean(axis=0)
            out[i] = q / (np.linalg.norm(q) or 1.0)
            start += len(g)
        return out

    def _expanded(self, name: str) -> str | None:
        """The label with abbreviations expanded and misspellings corrected, when that changes its words
        ("LBBB" -> "left bundle branch block", "164909002" -> its SNOMED CT name): the encoder reads it better."""
        if name.strip() in self.aliases.code_names:
            return self.aliases.code_names[name.strip()]
        expanded = " ".join(self.aliases.tokens(name))
        return expanded if expanded != " ".join(re.sub(r"[^a-z0-9+]+", " ", name.lower()).split()) else None

    # -- retrieval ---------------------------------------------------------------------------------
    def retrieve(
        self,
        names: Sequence[str],
        prompts: Sequence[Sequence[str]] | None = None,
        k: int = 3,
        codes: Sequence[tuple[str, str] | None] | None = None,
        show_progress: bool = False,
        members: Sequence[Sequence[str]] | None = None,
    ) -> list[list[Hit]]:
        """At most `k` snippets per label, best first (see the module docstring); [] where none fits.
        `members[i]`: the codes (of `codes[i]`'s namespace) that a group label `codes[i]` stands for."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise PromptError(None, "label name is empty")
        prompts = prompts if prompts is not None else [()] * len(names)
        codes = codes if codes is not None else [None] * len(names)
        members = members if members is not None else [()] * len(names)
        if not len(names) == len(prompts) == len(codes) == len(members):
            raise ConfigError("names, prompts, codes and members must have the same length")
        out: list[list[Hit]] = []
        pending: list[int] = []
        for i, (name, code, group) in enumerate(zip(names, codes, members, strict=True)):
            # a SNOMED CT code typed bare is read by its name: "713426002" names an incomplete block, and the guard
            # read its digits as an unmarked (so complete) one, which no incomplete-block snippet may join
            tokens = self.aliases.tokens(self.aliases.code_names.get(name.strip(), name))
            if negates(tokens):  # "no atrial fibrillation": the criteria of what is absent would pull towards it
                out.append([])
                continue
            label = features(tokens)
            hits = [Hit(s, EXACT_SCORE, via) for s, via in self._exact(name, code, group)
                    if not self._title_conflicts(label, tokens, s, via) and label_criteria(label, s)]  # fmt: skip
            hits = self._both_sides(tokens, hits, k)
            out.append(hits)
            if not hits:
                pending.append(i)
        if pending:  # only labels that nothing names exactly are embedded: the encoder is the cost of retrieval
            query = self.queries(
                [names[i] for i in pending], [prompts[i] for i in pending], show_progress=show_progress
            )
            for i, hits in zip(pending, self._hybrid([names[i] for i in pending], query, k), strict=True):
                out[i] = hits
        return out

    def _title_conflicts(self, label: dict, tokens: Sequence[str], snippet: Snippet, via: str) -> list[str]:
        """The guard's conflicts between a label and the title of a snippet it names exactly. A label that is
        one of the snippet's own aliases and names no block is no unmarked, so complete, block: "crochetage"
        and "rSr' pattern" name the incomplete-RBBB snippet, "loss of septal Q waves" the incomplete-LBBB one."""
        found = conflicts(label, self._titles[self._row[snippet.id]])
        if via == "alias" and "block" not in tokens:
            return [g for g in found if g != "completeness"]
        return found

    def _exact(self, name: str, code: tuple[str, str] | None, group: Sequence[str] = ()) -> list[tuple[Snippet, str]]:
        match = self.aliases.match(name)
        if code is not None:
            tagged = self.kb.snippets_for_code(*code)
            if not tagged and group:  # a class of equivalent codes ("733534002|164909002"): its members' snippets
                found = {s.id: s for c in group for s in self.kb.snippets_for_code(code[0], c)}
                tagged = [s for s in self.kb if s.id in found]
            if tagged:
                return [(s, "code") for s in self._most_specific(tagged, code, group, match)]
        return [(s, match.via) for s in match.snippets] if match else []

    def _most_specific(
        self, tagged: list[Snippet], code: tuple[str, str], group: Sequence[str], match: AliasMatch | None
    ) -> list[Snippet]:
        """Snippets tagged with a code, those most about the label first: the ones the label's name also
        names, then by the Jaccard overlap of a snippet's codes with the label's (its code and the `group`
        members it stands for; the sort is stable: then file order). For one condition that is "fewer codes
        first": a group snippet tagged with six codes ("Other ST-T statements") or a red-flag list carries
        the code too and, in file order, took a place from the snippet that defines the condition. For a
        group label (PTB-XL's STTC superclass) fewer codes meant its narrowest members first ("ST tilt up",
        "aVR ST elevation") ahead of the snippets that describe the group."""
        named = {s.id: i for i, s in enumerate(match.snippets)} if match else {}
        ns = code[0].strip().lower()  # snippet namespaces are lower-case identifiers (`Snippet.from_dict`)
        scope = {normalize_code(c) for c in (code[1], *group)}

        def overlap(s: Snippet) -> float:
            own = {normalize_code(c) for c in s.codes.get(ns, ())}
            return len(own & scope) / len(own | scope)

        return sorted(tagged, key=lambda s: (named.get(s.id, len(named)), -overlap(s)))

    def _hybrid(self, names: Sequence[str], query: np.ndarray, k: int) -> list[list[Hit]]:
        """BM25 + dense by reciprocal-rank fusion, floor and guard, for labels no alias matched."""
        depth = min(FUSION_DEPTH, len(self.kb))
        dense = self.index.search_embeddings(query, depth)
        bm25 = self._lexical()
        snippets = self.kb.snippets
        out: list[list[Hit]] = []
        for name, q, nearest in zip(names, query, dense, strict=True):
            tokens = self.aliases.tokens(name)
            label = features(tokens)
            # one-letter words ("s" of "S-A block", "q") are in half the texts ("S wave in I and V6"): not label
            # words; nor do the generic words left beside them ("s block" is not "block")
            words = {t for t in tokens if t not in _FILLER and len(t) > 1}
            core = words - self.aliases.qualifiers
            if len(core) == 1 and not core - self.aliases.generic and len(min(core)) > 2:
                # a generic word beside qualifiers only reads as that word alone: "block present" got complete LBBB
                # criteria, "block" none ("PR", "QT" name intervals or CinC's classes: left as they were)
                words = core
            if len(words) < len({t for t in tokens if t not in _FILLER} - self.aliases.qualifiers) and not (
                words - self.aliases.generic
            ):
                words = set()
            # the last word names what the label is ("heart rate variability" is a variability): one the base
            # knows must be in the snippet, or a word of its stem (an unknown one may be misspelt: "av blok")
            head = next((t for t in reversed(tokens) if t in words), None)
            known_head = head in self.aliases.vocabulary
            # a short label names a condition ("QRS prolongation"), a long one describes findings ("progressive PR
            # prolongation before a dropped QRS"): the interval a short one names is part of its condition
            required = _CONDITION_GROUPS | ({"interval"} if len(words) <= 3 else set())
            names = {g for g, _ in named_values(label) if g in required or g.startswith("hyper/hypo")}
            fused: dict[int, float] = {}
            for rank, hit in enumerate(nearest):
                row = self._row[hit.snippet.id]
                fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank + 1)
            lexical = bm25.get_scores(list(tokens)) if tokens else np.zeros(len(snippets))
            for rank, row in enumerate(np.argsort(-lexical, kind="stable")[:depth]):
                if lexical[row] <= 0:
                    break
                fused[int(row)] = fused.get(int(row), 0.0) + 1.0 / (RRF_K + rank + 1)
            hits: list[tuple[float, Hit]] = []
            spare: list[tuple[float, Hit]] = []  # below the floor, but naming every word of the label
            for row, rrf in fused.items():
                cosine = float(self._vectors[row] @ q)
                coverage = len(words & self._doc_sets[row]) / len(words) if words else 0.0
                above = _above_floor(cosine, coverage, len(words), not known_head or head[:7] in self._doc_stems[row])
                if not above and not (cosine >= DENSE_WORDS and words and words <= self._head_sets[row]):
                    continue
                if conflicts(label, self._titles[row]) or not label_criteria(label, snippets[row]):
                    continue
                title = {g for g, _ in named_values(self._titles[row])}
                if names - title:
                    # a label naming a chamber, side, wall, degree ... takes only a snippet whose title names a
                    # value of each of those groups (the guard has checked they agree): a passing mention in the
                    # text ("ventricular" and "fibrillation" in a third-degree AV block differential), or a title
                    # that names the chamber but not the fibrillation ("ventricular pre-excitation" for
                    # "ventricular fibrillation"), is not the condition
                    continue
                if len(words) <= 3 and "fibrillation" in title - set(label):
                    continue  # fibrillation or flutter is a condition of its own: "atrial abnormality" is neither
                (hits if above else spare).append((rrf, Hit(snippets[row], cosine, "hybrid")))
            hits.sort(key=lambda p: -p[0])
            best = max((h.score for _, h in hits), default=0.0)
            kept = [h for _, h in hits if h.score >= best - RELATIVE_FLOOR]
            spare += [(rrf, h) for rrf, h in hits if h.score < best - RELATIVE_FLOOR]
            out.append(self._both_sides(tokens, kept, k, [h for _, h in sorted(spare, key=lambda p: -p[0])]))
        return out

    def _both_sides(self, tokens: Sequence[str], hits: list[Hit], k: int, spare: Sequence[Hit] = ()) -> list[Hit]:
        """The first `k` of `hits`, never one side only of a choice the label leaves open.

        Where the label names no value of a group (`guard.CHOICES`), or names several with different words
        ("bundle branch block", PTB-XL's "LAFB/LPFB"), and the candidates name different values (left / right,
        anterior / posterior), the snippets naming none or several of those values go first (overviews) when the
        label names none, or lead already; otherwise the best snippet of each value is taken in turns, one per
        value even past `k`: "bundle branch block" gets left and right criteria alike, where it got only right
        bundle branch block's, which come first in the file. When `hits` name one side only, the best of `spare`
        (candidates below the floors that passed the guard) for each other side joins: "hemiblock" names the
        posterior fascicle's alias as much as the anterior's. A title for both sides at once ("Bifascicular
        block") is a condition of its own, never the overview."""
        if not hits:
            return []
        unnamed, several = open_groups(tokens)
        for group in sorted(unnamed | several):
            # the label's words, less those naming this group's values: what every side of it must name too
            words = {t for t in tokens if t not in _FILLER and not any(g == group for g, _ in polarity(t))}
            hits = self._other_sides(group, hits, spare, words)
            if group in unnamed and group in _ALL_VALUES:
                # a title naming some values but not all (high-grade AV block: second and third degree) is no
                # overview of a label naming none ("AV block"), and taken alone it is one side of the choice
                partial = [h for h in hits if 1 < len(side := self._side(h, group)) and not _ALL_VALUES[group] <= side]
                hits = [h for h in hits if h not in partial] or hits
            on_label = [self._on_label(h, words) for h in hits]
            sides = [self._side(h, group) if on else frozenset() for h, on in zip(hits, on_label, strict=True)]
            values = sorted({v for side in sides if len(side) == 1 for v in side})
            if len(values) < 2:
                continue
            # an overview names the label's condition in its title or aliases, and not both sides at once
            specific = (words - self.aliases.generic) or words
            neutral = [h for h, side in zip(hits, sides, strict=True)
                       if len(side) != 1 and not self._combined[self._row[h.snippet.id]]
                       and (h.via != "hybrid" or specific & self._head_sets[self._row[h.snippet.id]])]  # fmt: skip
            if neutral and group in unnamed:
                return neutral[:k]
            if len(sides[0]) != 1:  # a label naming several values, led by a snippet about all of them
                return hits[:k]
            turns = [[h for h, side in zip(hits, sides, strict=True) if side == {value}] for value in values]
            taken = list(dict.fromkeys(h.snippet.id for row in itertools.zip_longest(*turns) for h in row if h))
            by_id = {h.snippet.id: h for h in hits}
            return [by_id[i] for i in taken[: max(k, len(values))]]
        return hits[:k]

    def _side(self, hit: Hit, group: str) -> frozenset[str]:
        return named(self._titles[self._row[hit.snippet.id]].get(group, frozenset()))

    def _names_all(self, hit: Hit, words: set[str]) -> bool:
        """Whether the snippet's title or aliases hold every word of the label: a side of the label's condition
        ("fascicular block": the anterior and the posterior fascicle), not another condition that passed the
        floors (right bundle branch block)."""
        return words <= self._head_sets[self._row[hit.snippet.id]]

    def _on_label(self, hit: Hit, words: set[str]) -> bool:
        """A code or alias match is named by the label; a hybrid hit must name all its `words` (`_names_all`)."""
        return hit.via != "hybrid" or self._names_all(hit, words)

    def _other_sides(self, group: str, hits: list[Hit], spare: Sequence[Hit], words: set[str]) -> list[Hit]:
        """`hits`, plus the best of `spare` for each value of `group` that they miss when they name one only."""
        sides = [self._side(h, group) for h in hits if self._on_label(h, words)]
        values = {v for side in sides if len(side) == 1 for v in side}
        if len(values) != 1:
            return hits
        extra: dict[str, Hit] = {}
        for h in spare:
            side = self._side(h, group)
            if len(side) == 1 and not side & values and self._names_all(h, words):
                extra.setdefault(next(iter(side)), h)
        return [*hits, *extra.values()]

    def _lexical(self) -> bm25s.BM25:
        if self._bm25 is None:
            import bm25s  # here, not at the top: it costs 0.3 s of import that `ecglang --help` must not pay

            logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
            self._bm25 = bm25s.BM25()
            self._bm25.index(self._doc_tokens, show_progress=False)
        return self._bm25


def _above_floor(cosine: float, coverage: float, n_words: int, head: bool = True) -> bool:
    """Whether a hybrid candidate is close enough to attach: near in meaning, or fairly near and sharing
    most of the label's words (all of them, for a criteria query such as "broad notched R in V6"). Most
    words are not enough without the last one (`head`), which names what the label is: "heart rate
    variability" is a variability, and a heart-rate snippet is not about it."""
    if cosine >= DENSE_STRONG:
        return True
    if cosine >= DENSE_MIN and coverage >= MIN_COVERAGE and head:
        return True
    return cosine >= DENSE_WORDS and coverage >= 1.0 and n_words >= 2


def retriever_for(index: KnowledgeIndex) -> Retriever:
    """The `Retriever` of `index`, built on first use and kept while the index lives."""
    retriever = _RETRIEVERS.get(index)
    if retriever is None:
        retriever = _RETRIEVERS[index] = Retriever(index)
    return retriever


def retrieve_for_labels(
    index: KnowledgeIndex,
    names: Sequence[str],
    prompts: Sequence[Sequence[str]] | None = None,
    k: int = 3,
    codes: Sequence[tuple[str, str] | None] | None = None,
    show_progress: bool = False,
    members: Sequence[Sequence[str]] | None = None,
) -> list[list[Hit]]:
    """`retrieve_for_label` for many labels at once: one batched embedding of the distinct texts, one FAISS
    search. `prompts[i]`, `codes[i]` and `members[i]` belong to `names[i]` (None: no prompts, no codes)."""
    return retriever_for(index).retrieve(names, prompts, k=k, codes=codes, show_progress=show_progress, members=members)


def retrieve_for_label(
    index: KnowledgeIndex,
    label_name: str,
    prompts: Sequence[str] = (),
    k: int = 3,
    code: tuple[str, str] | None = None,
    members: Sequence[str] = (),
) -> list[Hit]:
    """At most `k` snippets for a label, best first; [] when no snippet fits ("no knowledge found").

    `prompts`: the label's own prompts (they join the name in the dense query). With `code=(namespace,
    code)` (for example `("ptbxl", "CLBBB")`) the snippets tagged with that code are the candidates; `members`:
    the codes a group label stands for (PTB-XL's STTC: NDT, NST_, DIG, ...), which order them. See the module
    docstring for the stages, the floor and the contradiction guard."""
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    return retrieve_for_labels(index, [label_name], [list(prompts)], k=k, codes=[code], members=[members])[0]


def label_criteria(label: dict[str, frozenset[str]], snippet: Snippet) -> list[str]:
    """The criteria of `snippet` that may be put to a label with guard `features` `label`: those naming the
    opposite side, degree, direction or hyper/hypo condition (`guard.criterion_conflicts`) are left out, so the
    AV-block overview gives a first-degree label its first-degree criterion only. [] drops the snippet."""
    return [c for c in snippet.sentences() if not criterion_conflicts(label, normalize_tokens(c))]


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
    """Turn retrieved snippets into prompts `"<snippet title>: <criterion>"`, one per criterion sentence.

    The prompt names the condition the criterion was written for (not the user's label, which its own
    prompts carry), so that it is never put in the mouth of another label, and so that labels sharing a
    snippet share its prompts: 10,000 labels embed a few hundred distinct knowledge prompts, not 90,000.
    Each prompt is cut to fit a text encoder: to `max_tokens` tokens (special tokens included) when a
    Hugging Face `tokenizer` is given, otherwise to `max_words` words (about 100 word pieces for this
    text). Duplicates are dropped; criteria are taken in turns across the hits (the first criterion of each,
    then the second, ...), so every hit contributes within `max_prompts`. A criterion stating the opposite of
    the label (`label_criteria`) is never a prompt.
    """
    if not isinstance(label_name, str) or not label_name.strip():
        raise PromptError(None, "label name is empty")
    label = label_name.strip()
    out: list[ComposedPrompt] = []
    seen: set[str] = set()
    # Criteria are taken in turns (first criterion of every hit, then the second, ...): under `max_prompts`
    # a snippet with nine criteria must not crowd out the others, which are shown as the score's evidence.
    # the guard over each criterion: none states the opposite of the label (see `label_criteria`)
    wanted = features(normalize_tokens(label))
    per_hit = [[(hit, sentence) for sentence in label_criteria(wanted, hit.snippet)] for hit in hits]
    for hit, sentence in (p for turn in itertools.zip_longest(*per_hit) for p in turn if p is not None):
        title = hit.snippet.title.rstrip(".")
        text = _fit(f"{title}: {sentence}", max_tokens, tokenizer, max_words)
        key = text.lower()
        if key in seen:
            continue
        seen.add(key)
        out.append(ComposedPrompt(text, hit.snippet.id, label, hit.score))
        if max_prompts is not None and len(out) >= max_prompts:
            break
    return out


# Cut prompts per tokenizer: the same snippet criteria are fitted for every label that retrieves them.
_FITTED: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], str]] = weakref.WeakKeyDictionary()


def _fit(text: str, max_tokens: int, tokenizer: Any, max_words: int) -> str:
    words = text.split()
    if tokenizer is None:
        return " ".join(words[:max_words])
    try:
        cache = _FITTED.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        cache = {}
    key = (text, max_tokens)
    if key not in cache:
        cache[key] = _fit_tokens(text, words, max_tokens, tokenizer)
    return cache[key]


def _fit_tokens(text: str, words: list[str], max_tokens: int, tokenizer: Any) -> str:
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

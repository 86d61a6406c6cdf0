"""Audit 21 (independent evaluation of knowledge retrieval): degrees typed as roman numerals or digits, "SA"
inside longer labels, mixed snippets whose criteria state the opposite condition, off-label hybrid hits and
shorthands with no knowledge. Real MiniLM + FAISS + BM25, like `test_retrieval_quality.py`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecglang.knowledge.aliases import normalize_tokens
from ecglang.knowledge.base import Snippet
from ecglang.knowledge.guard import criterion_conflicts, features
from ecglang.knowledge.index import Hit, KnowledgeIndex
from ecglang.knowledge.quality import RetrievalCase, load_cases, prompt_conflicts
from ecglang.knowledge.retrieval import compose_prompts, retrieve_for_label, retrieve_for_labels
from ecglang.scores.labels import knowledge_queries, retrieve_knowledge

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parents[1] / "prompts"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


def _ids(hits: list[Hit]) -> list[str]:
    return [h.snippet.id for h in hits]


# F1: CPSC 2018's own class name "I-AVB", and a degree as a roman numeral or digit beside "AVB" / "AV block"
@pytest.mark.parametrize(
    ("label", "snippet", "other_degrees"),
    [
        ("I-AVB", "first-degree-av-block", r"second|third|high-grade|advanced"),
        ("AV block 1", "first-degree-av-block", r"second|third|high-grade|advanced"),
        ("1 AVB", "first-degree-av-block", r"second|third|high-grade|advanced"),
        ("AVB I", "first-degree-av-block", r"second|third|high-grade|advanced"),
        ("heart block 1", "first-degree-av-block", r"second|third|high-grade|advanced"),
        ("II-AVB", "second-degree-av-block-overview", r"first|third|complete"),
        ("AV block II", "second-degree-av-block-overview", r"first|third|complete"),
        ("III AVB", "third-degree-av-block", r"first|second|mobitz"),
        ("atrioventricular block 3", "third-degree-av-block", r"first|second|mobitz"),
        ("2nd degree heart block type 1", "mobitz-i-wenckebach", r"first|third|type ii"),
    ],
)
def test_a_degree_beside_av_block_is_read_as_the_degree(
    index: KnowledgeIndex, label: str, snippet: str, other_degrees: str
) -> None:
    for k in (1, 3):
        hits = retrieve_for_label(index, label, k=k)
        assert _ids(hits)[:1] == [snippet], (label, k, _ids(hits))
        bad = [h.snippet.title for h in hits if re.search(other_degrees, h.snippet.title.lower())]
        assert bad == [], (label, k, bad)


def test_av_block_two_to_one_is_not_a_degree(index: KnowledgeIndex) -> None:
    assert normalize_tokens("AV block 2:1")[-3:] == ("2", "to", "1")
    assert "first" not in normalize_tokens("AV block 1:1")
    assert normalize_tokens("2:1 AV block")[:3] == ("2", "to", "1") and "first" not in normalize_tokens("3:1 AVB")


def test_a_label_naming_no_degree_gets_no_snippet_for_some_degrees_only(index: KnowledgeIndex) -> None:
    """High-grade AV block names the second and third degree: not an overview of "AV block"."""
    for label in ("AV block", "atrioventricular block (degree not specified)", "heart block"):
        ids = _ids(retrieve_for_label(index, label, k=3))
        assert ids and "high-grade-av-block" not in ids, (label, ids)


# F2: "SA" (sinus arrhythmia) matched inside longer labels; a one-letter word let RBBB criteria through
@pytest.mark.parametrize(
    ("label", "snippet"),
    [
        ("SA block", "sinus-pause-sa-block"),
        ("S-A block", "sinus-pause-sa-block"),
        ("SA exit block", "sinus-pause-sa-block"),
        ("SA nodal block", "sinus-pause-sa-block"),
        ("sinoatrial block", "sinus-pause-sa-block"),
        ("SA node dysfunction", "sinus-node-dysfunction"),
    ],
)
def test_sa_block_gets_sinoatrial_not_sinus_arrhythmia(index: KnowledgeIndex, label: str, snippet: str) -> None:
    for k in (1, 3):
        ids = _ids(retrieve_for_label(index, label, k=k))
        assert ids[:1] == [snippet], (label, k, ids)
        assert not [i for i in ids if re.match(r"sinus-arrhythmia|crbbb|av-block-level", i)], (label, k, ids)


def test_short_aliases_match_whole_labels_only(index: KnowledgeIndex) -> None:
    """The alias "SA" is sinus arrhythmia only as the whole label; "SA" in a longer label is not sinus arrhythmia."""
    assert _ids(retrieve_for_label(index, "SA", k=1)) == ["sinus-arrhythmia-definition"]
    for label in ("SA conduction delay", "SA node block", "AT block"):
        ids = _ids(retrieve_for_label(index, label, k=3))
        assert not [i for i in ids if i.startswith("sinus-arrhythmia")], (label, ids)


def test_one_letter_words_do_not_count_as_label_words(index: KnowledgeIndex) -> None:
    """Words "s" and "block" both occur in the RBBB text ("S wave ... in I and V6"): no match for a label."""
    for label in ("s block", "q x block"):
        ids = _ids(retrieve_for_label(index, label, k=3))
        assert not [i for i in ids if "bbb" in i], (label, ids)


# F3: the guard applies to every criterion turned into a prompt
@pytest.mark.parametrize(
    ("label", "k", "forbidden"),
    [
        ("hypocalcemia", 1, r"hypercalc"),
        ("hypercalcaemia", 1, r"hypocalc"),
        ("hypocalcemia", 3, r"hypercalc"),
        ("1st deg AVB", 3, r"second degree|third degree"),
        ("first-degree atrioventricular block", 3, r"second degree|third degree"),
        ("complete heart block", 3, r"first degree|second degree"),
        ("LAD", 3, r"right axis deviation|extreme axis"),
        ("left axis deviation", 3, r"right axis deviation"),
        ("RAD", 3, r"left axis deviation"),
    ],
)
def test_no_prompt_states_the_opposite_condition(index: KnowledgeIndex, label: str, k: int, forbidden: str) -> None:
    hits = retrieve_for_label(index, label, k=k)
    prompts = compose_prompts(label, hits, max_prompts=3 * k)
    assert hits and prompts, label
    bad = [p for p in prompts if re.search(forbidden, p.split(":", 1)[1].lower())]
    assert bad == [], (label, bad)


def test_a_snippet_left_with_no_criterion_is_dropped() -> None:
    snippet = Snippet("both", "Two sides", "Left axis deviation beyond minus 30 degrees.", "test")
    hit = Hit(snippet, 1.0, "alias")
    assert compose_prompts("right axis deviation", [hit]) == []
    assert compose_prompts("left axis deviation", [hit]) != []


def test_criterion_guard_reads_degrees_sides_and_directions_not_leads() -> None:
    def clash(label: str, criterion: str) -> list[str]:
        return criterion_conflicts(features(normalize_tokens(label)), normalize_tokens(criterion))

    assert clash("first degree AV block", "second degree = intermittent non-conducted P waves")
    assert clash("hypocalcemia", "Hypercalcemia shortens the QT interval")
    assert clash("LAD", "negative in I and positive in aVF = right axis deviation")
    assert clash("sinus bradycardia", "Sinus tachycardia: rate above 100 bpm")
    assert not clash("right axis deviation", "Left–right arm electrode reversal mimics it")
    assert not clash("Mobitz II", "risk of sudden progression to complete heart block")
    # ordinals that are no degree, and a criterion naming both values, are no conflict
    assert not clash("third degree AV block", "the first P wave after the pause conducts")
    assert not clash("first degree AV block", "first degree = PR > 200 ms with 1:1 conduction")
    assert not clash("sinus bradycardia", "Tachycardia > 100 bpm, bradycardia < 60 bpm")


def _all_labels() -> list[str]:
    cases = [c.label for c in load_cases(HERE / "retrieval_eval.jsonl") if c.codes]
    bundled = [q.name for path in sorted(PROMPTS.glob("*.json")) for q in knowledge_queries(None, str(path)).values()]
    return list(dict.fromkeys([*cases, *bundled]))


def test_no_composed_prompt_conflicts_with_its_label(index: KnowledgeIndex) -> None:
    """The guard over prompts, for every label of the evaluation set and of the bundled prompt sets (free text,
    and the bundled labels by code, as zero-shot retrieves them), at the default k and at k = 3."""
    labels = _all_labels()
    queries = [q for path in sorted(PROMPTS.glob("*.json")) for q in knowledge_queries(None, str(path)).values()]
    bad = []
    for k in (1, 3):
        for label, hits in zip(labels, retrieve_for_labels(index, labels, k=k), strict=True):
            bad += [(k, label, p) for p in prompt_conflicts(label, compose_prompts(label, hits, max_prompts=3 * k))]
        for q, hits in zip(queries, retrieve_knowledge(index, queries, k), strict=True):
            bad += [(k, q.name, p) for p in prompt_conflicts(q.name, compose_prompts(q.name, hits, max_prompts=3 * k))]
    assert bad == []


def test_quality_does_not_count_a_mixed_snippet_as_on_label() -> None:
    """A snippet tagged with the label's code whose prompts state the opposite condition is off-label."""
    mixed = Snippet(
        "calcium", "Calcium disorders", "Hypercalcemia shortens the QT interval. Hypocalcemia prolongs the QTc.", "t",
        codes={"snomed": ("1",)},
    )  # fmt: skip
    case = RetrievalCase("hypocalcemia", (("snomed", "1"),))
    assert prompt_conflicts("hypocalcemia", ["Calcium disorders: Hypercalcemia shortens the QT interval"])
    assert not prompt_conflicts("hypocalcemia", ["Calcium disorders: Hypocalcemia prolongs the QTc"])
    assert case.on_label(Hit(mixed, 1.0, "alias"))  # the guard drops the hypercalcemia criterion
    opposite = Snippet("hyper", "Calcium disorders", "Hypercalcemia shortens the QT interval.", "t",
                       codes={"snomed": ("1",)})  # fmt: skip
    assert not case.on_label(Hit(opposite, 1.0, "alias"))


# F4: off-label hybrid hits and a negative that retrieved something
def test_off_label_hits_of_ordinary_labels(index: KnowledgeIndex) -> None:
    ids = _ids(retrieve_for_label(index, "atrial ectopics", k=1))
    assert ids and ids[0] in ("pac-definition", "supraventricular-premature-beats"), ids
    ids = _ids(retrieve_for_label(index, "nonspecific ST-T changes", k=1))
    assert ids == ["nonspecific-st-changes"], ids
    ids = _ids(retrieve_for_label(index, "left bundle brunch block", k=3))
    assert ids[:1] == ["clbbb-criteria"] and not [i for i in ids if "lafb" in i], ids
    assert retrieve_for_label(index, "heart rate variability", k=3) == []


# F5: common shorthands
@pytest.mark.parametrize(
    ("label", "snippet"),
    [
        ("early repol", "early-repolarization"),
        ("BER", "early-repolarization"),
        ("ER pattern", "early-repolarization"),
        ("benign early repolarisation", "early-repolarization"),
        ("dig effect", "digitalis-effect"),
        ("dig toxicity", "digitalis-toxicity"),
    ],
)
def test_shorthands_get_their_snippet(index: KnowledgeIndex, label: str, snippet: str) -> None:
    assert _ids(retrieve_for_label(index, label, k=1)) == [snippet]

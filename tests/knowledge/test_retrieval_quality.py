"""Hybrid knowledge retrieval picks the right condition (issue 14): evaluation set with thresholds, the
contradiction guard on the bundled prompt sets, abbreviations and misspellings. Real MiniLM + FAISS + BM25."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecglang.knowledge.aliases import normalize_tokens
from ecglang.knowledge.guard import conflicts, features
from ecglang.knowledge.index import KnowledgeIndex
from ecglang.knowledge.quality import load_cases, score_retrieval, snomed_name_cases
from ecglang.knowledge.retrieval import retrieve_for_label, retrieve_for_labels
from ecglang.scores.labels import knowledge_queries, retrieve_knowledge

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parents[1] / "prompts"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


def test_evaluation_set_precision_and_off_label(index: KnowledgeIndex) -> None:
    cases = load_cases(HERE / "retrieval_eval.jsonl")
    assert sum(bool(c.codes) for c in cases) >= 80 and sum(not c.codes for c in cases) >= 20
    score = score_retrieval(index, cases, k=3)
    print(f"\nevaluation set: {score.summary()}; misses: {score.misses}")
    assert score.precision >= 0.95, score.misses
    assert score.off_label_rate <= 0.01, score.misses
    assert score.coverage >= 0.95, score.misses  # the floor must not buy precision by retrieving nothing
    assert score.negatives_with_hits == 0, score.misses


def test_snomed_names_top3_carry_their_code(index: KnowledgeIndex) -> None:
    """Issue 14's measurement (46 % on main): top-3 snippets for the SNOMED CT names carry the code. 92 names in
    the issue; 94 since the clinical review tagged the atrial-bigeminy (251173003) and Mobitz II (426183003)
    codes on the snippets that describe them."""
    cases = snomed_name_cases(index.kb)
    assert len(cases) == 94
    score = score_retrieval(index, cases, k=3)
    print(f"\nSNOMED CT names: {score.summary()}")
    assert score.precision >= 0.95 and score.coverage == 1.0, score.misses


@pytest.mark.parametrize(
    ("label", "forbidden"),
    [
        ("left bundle branch block", r"right bundle|rbbb"),
        ("sinus tachycardia", r"bradycardia"),
        ("right ventricular hypertrophy", r"^lvh|left ventricular"),
        ("1st degree AV block", r"second|third|mobitz"),
        ("hyperkalemia", r"hypertrophy|hypokal"),
        ("ST depression", r"elevation"),
        ("incomplete right bundle branch block", r"^crbbb|^clbbb|left"),
        ("left anterior fascicular block", r"posterior"),
    ],
)
def test_issue_examples_never_get_the_opposite_condition(index: KnowledgeIndex, label: str, forbidden: str) -> None:
    for k in (3, 10):
        hits = retrieve_for_label(index, label, [label], k=k)
        assert hits, label
        bad = [h.snippet.id for h in hits if re.search(forbidden, f"{h.snippet.id} {h.snippet.title}".lower())]
        assert bad == [], (label, bad)


@pytest.mark.parametrize(
    ("typed", "snippet"),
    [
        ("LBBB", "clbbb-criteria"),
        ("AFib", "atrial-fibrillation-definition"),
        ("A-fib", "atrial-fibrillation-definition"),
        ("1AVB", "first-degree-av-block"),
        ("1st degree AVB", "first-degree-av-block"),
        ("WPW", "wpw-pattern"),
        ("PVCs", "pvc-definition"),
        ("atrial fibrilation", "atrial-fibrillation-definition"),
        ("sinus brachycardia", "sinus-bradycardia-definition"),
        ("left bundel branch block", "clbbb-criteria"),
        ("inferior ischaemia", "ischemia-inferior-leads"),
        ("Mobitz 2", "mobitz-ii"),
        ("164909002", "clbbb-criteria"),
        # a second review's misses: eponyms alone, dotted and lettered abbreviations, another word order
        ("Wellens", "wellens-pattern"),
        ("Sgarbossa", "lbbb-sgarbossa"),
        ("NSVT", "pvc-complexity-burden"),
        ("L.B.B.B.", "clbbb-criteria"),
        ("l-bbb", "clbbb-criteria"),
        ("lef bundle branch block", "clbbb-criteria"),
        ("1st degree heart block", "first-degree-av-block"),
        ("AV block first degree", "first-degree-av-block"),
    ],
)
def test_abbreviations_misspellings_and_codes_match_exactly(index: KnowledgeIndex, typed: str, snippet: str) -> None:
    hits = retrieve_for_label(index, typed, k=3)
    assert snippet in [h.snippet.id for h in hits], (typed, [h.snippet.id for h in hits])
    assert all(h.via in ("code", "alias", "contained") for h in hits)


def test_nonsense_gets_no_knowledge(index: KnowledgeIndex) -> None:
    labels = ["banana", "purple monkey dishwasher", "football match", "asdfgh", "pneumonia"]
    assert retrieve_for_labels(index, labels, k=3) == [[] for _ in labels]


def test_normalisation_and_guard_units() -> None:
    assert normalize_tokens("LBBB") == normalize_tokens("left bundle-branch block")
    assert normalize_tokens("1st degree AV block") == normalize_tokens("first-degree atrioventricular block")
    assert normalize_tokens("PVCs") == normalize_tokens("premature ventricular contraction")
    assert normalize_tokens("ischaemia") == ("ischemia",)
    assert normalize_tokens("Mobitz type II") == normalize_tokens("mobitz 2")
    left, right = features(normalize_tokens("LBBB")), features(normalize_tokens("Complete right bundle branch block"))
    assert conflicts(left, right) == ["side"]
    assert conflicts(features(("sinus", "tachycardia")), features(("sinus", "bradycardia"))) == ["rate"]
    assert conflicts(features(("hyperkalemia",)), features(("biventricular", "hypertrophy"))) == []
    assert conflicts(features(("hyperkalemia",)), features(("hypokalemia",))) == ["hyper/hypo kale"]
    assert conflicts(features(normalize_tokens("NSTEMI")), features(normalize_tokens("ST depression"))) == []
    assert conflicts(features(normalize_tokens("complete heart block")), features(normalize_tokens("2nd degree AVB")))
    assert conflicts(features(normalize_tokens("bundle branch block")), right) == []


# Opposite words, read from raw text (independently of the guard's normalisation): a label naming one side
# and not the other must never get a snippet whose title names only the other side.
OPPOSITES = [(r"\bleft\b", r"\bright\b"), (r"tachy", r"brady"), (r"elevation", r"depression"),
             (r"\b(first|1st)\b", r"\b(second|2nd|third|3rd)\b"), (r"\b(second|2nd)\b", r"\b(first|1st|third|3rd)\b"),
             (r"\b(third|3rd)\b", r"\b(first|1st|second|2nd)\b"), (r"hyperkal", r"hypokal"), (r"hypokal", r"hyperkal"),
             (r"\bincomplete\b", r"(?<!in)complete\b"),
             (r"\banterior\b.*fascic", r"\bposterior\b.*fascic")]  # fmt: skip


def _contradictions(label: str, title: str) -> list[tuple[str, str]]:
    label, title = label.lower(), title.lower()
    found = []
    for a, b in OPPOSITES:
        for x, y in ((a, b), (b, a)):
            if re.search(x, label) and not re.search(y, label) and re.search(y, title) and not re.search(x, title):
                found.append((x, y))
    return found


def test_prompt_set_labels_have_no_contradictions(index: KnowledgeIndex) -> None:
    # As zero-shot retrieves for each label (name, prompts, code, group members), and by the name alone.
    queries = [q for path in sorted(PROMPTS.glob("*.json")) for q in knowledge_queries(None, str(path)).values()]
    assert len(queries) == 132 and all(q.code for q in queries)
    names = [q.name for q in queries]
    bad = []
    for found in (retrieve_knowledge(index, queries, k=5), retrieve_for_labels(index, names, k=5)):
        bad += [(q.name, h.snippet.id) for q, hits in zip(queries, found, strict=True) for h in hits
                if _contradictions(q.name, h.snippet.title)]  # fmt: skip
    assert bad == []
    assert all(retrieve_knowledge(index, queries, k=3))  # every prompt-set label still gets knowledge


# A second review's contradictions: every one got past the guard before (the ids in the comments).
@pytest.mark.parametrize(
    ("label", "forbidden"),
    [
        ("ventricular fibrillation", r"atrial|third-degree"),  # the AF f-wave snippet: its title names "ventricular"
        ("VF", r"atrial|wpw"),
        ("NSTEMI", r"^stemi"),  # "non ST elevation" named nothing, so STEMI criteria passed
        ("non-ST elevation myocardial infarction", r"^stemi"),
        ("partial left bundle branch block", r"^clbbb|strict|sgarbossa"),  # complete-block criteria
        ("incomplete left bundle branch block", r"^clbbb|strict"),
        ("normal axis", r"right-axis|left-axis"),
        ("prolonged QRS", r"long-qt"),
        ("QRS prolongation", r"long-qt|hyperkalemia"),
        ("short QRS", r"short-pr|preexcited"),
        ("ventricular flutter", r"sinus"),
        ("AV block first degree", r"high-grade|second|third"),
        ("lef bundle branch block", r"crbbb|right"),  # "lef" is left, not an unsided block
        # a third review: an escape beat got atrial fibrillation's differential and premature-beat criteria; the
        # unsided axis deviation only the extreme (northwest) axis, which is neither left nor right
        ("atrial escape beat", r"fibrillation|premature|pac-"),
        ("axis deviation", r"extreme"),
        ("fascicular block", r"bifascicular|rbbb"),
    ],
)
def test_second_review_labels_never_get_another_condition(index: KnowledgeIndex, label: str, forbidden: str) -> None:
    for k in (1, 3):
        hits = retrieve_for_label(index, label, [label], k=k)
        bad = [h.snippet.id for h in hits if re.search(forbidden, h.snippet.id)]
        assert bad == [], (label, k, bad)


@pytest.mark.parametrize("label", ["no atrial fibrillation", "not left bundle branch block", "no LBBB",
                                   "without ST elevation", "absent P waves"])  # fmt: skip
def test_a_label_that_says_a_condition_is_absent_gets_no_knowledge(index: KnowledgeIndex, label: str) -> None:
    """The criteria of the excluded condition pulled the label onto it: "no atrial fibrillation" scored 0.064
    beside "atrial fibrillation" 0.073 with knowledge, -0.033 and 0.006 without."""
    assert retrieve_for_label(index, label, [label], k=3) == []
    assert retrieve_for_label(index, "irregularly irregular rhythm without P waves", k=1)  # a negation that describes


@pytest.mark.parametrize(
    ("label", "code", "sides"),
    [
        ("bundle branch block", None, {"clbbb-criteria", "crbbb-criteria"}),
        ("bundle branch block", ("snomed", "6374002"), {"clbbb-criteria", "crbbb-criteria"}),  # a CinC 2021 class
        ("left anterior/left posterior fascicular block", ("ptbxl", "LAFB/LPFB"), {"lafb-criteria", "lpfb-criteria"}),
        ("incomplete bundle branch block", None, {"ilbbb-criteria", "irbbb-criteria"}),
        # a third review: the bifascicular block passed as the overview of "fascicular block"; "hemiblock" got the
        # anterior fascicle only (the posterior one, named by its alias, fell below the floors); "atrial
        # abnormality" got atrial fibrillation's differential (it is left or right atrial abnormality)
        ("fascicular block", None, {"lafb-criteria", "lpfb-criteria"}),
        ("hemiblock", None, {"lafb-criteria", "lpfb-criteria"}),
        ("atrial abnormality", None, {"left-atrial-enlargement", "right-atrial-enlargement"}),
        ("atrial enlargement", None, {"left-atrial-enlargement", "right-atrial-enlargement"}),
    ],
)
def test_a_label_open_between_sides_gets_both(index: KnowledgeIndex, label: str, code, sides: set[str]) -> None:
    """An unsided label got one side only: "bundle branch block" (CinC 2021's 6374002) only right bundle branch
    block criteria (first in the file), PTB-XL's LAFB/LPFB only the rare posterior block (21 of its 23 sample
    records are anterior, whose axis criterion is the opposite). With k = 1 both sides come, one each."""
    hits = retrieve_for_labels(index, [label], k=1, codes=[code])[0]
    assert {h.snippet.id for h in hits} == sides


def test_the_guard_reads_negated_compounds_and_unmarked_complete_blocks() -> None:
    """With a user's base (a STEMI snippet, an LBBB snippet), NSTEMI got the STEMI criteria and "incomplete left
    bundle branch block" the complete block's: "non ST elevation" named nothing, and only an unmarked label
    against an incomplete-block snippet was read as a conflict, not the reverse."""
    stemi = features(normalize_tokens("ST elevation myocardial infarction"))
    assert conflicts(features(normalize_tokens("NSTEMI")), stemi) == ["st"]
    assert conflicts(features(normalize_tokens("non-ST elevation myocardial infarction")), stemi) == ["st"]
    assert conflicts(features(normalize_tokens("STEMI")), features(normalize_tokens("NSTEMI"))) == ["st"]
    lbbb = features(normalize_tokens("Left bundle branch block"))
    assert conflicts(features(normalize_tokens("incomplete left bundle branch block")), lbbb) == ["completeness"]
    assert conflicts(features(normalize_tokens("non-sustained ventricular tachycardia")),
                     features(normalize_tokens("Ventricular tachycardia"))) == []  # fmt: skip  # "non" reaches one word

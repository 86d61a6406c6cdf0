"""A short form (one abbreviation-style word: "AVNRT", "TdP", "SAB") names the whole label when the label's
other words only qualify it ("possible", "(confirmed)", "in lead II"), and nothing when they name something
else ("SA block" is a sinoatrial block, not sinus arrhythmia). Real MiniLM + FAISS + BM25."""

from __future__ import annotations

import pytest

from ecglang.knowledge.index import KnowledgeIndex
from ecglang.knowledge.retrieval import retrieve_for_labels


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


QUALIFIED = {
    "AVNRT (confirmed)": "svt-avnrt",
    "possible TdP": "polymorphic-vt-torsades",
    "borderline TdP seen": "polymorphic-vt-torsades",
    "old SAB in lead II": "sinus-pause-sa-block",
    "intermittent MoII": "mobitz-ii",
    "new MoI noted": "mobitz-i-wenckebach",
    "acute AVRT in lead II": "svt-avrt",
    "SA in lead III": "sinus-arrhythmia-definition",
    "JTach present": "junctional-rhythms",
}


def test_short_form_with_qualifiers_names_the_label(index: KnowledgeIndex) -> None:
    hits = retrieve_for_labels(index, list(QUALIFIED), k=1)
    got = {label: [h.snippet.id for h in h_] for label, h_ in zip(QUALIFIED, hits, strict=True)}
    assert got == {label: [snippet] for label, snippet in QUALIFIED.items()}


@pytest.mark.parametrize(
    ("label", "snippet"),
    [("SA block", "sinus-pause-sa-block"), ("S-A block", "sinus-pause-sa-block"),
     ("new SA block seen", "sinus-pause-sa-block"), ("AT flutter", None),
     ("AVB II", "second-degree-av-block-overview")],
)  # fmt: skip
def test_short_form_beside_another_finding_is_not_the_label(index: KnowledgeIndex, label: str, snippet: str | None):
    """ "block" and "flutter" name findings of their own: the short form is no longer the whole label."""
    hits = retrieve_for_labels(index, [label], k=3)[0]
    ids = [h.snippet.id for h in hits]
    assert "sinus-arrhythmia-definition" not in ids and "atrial-tachycardia-focal" not in ids
    assert (ids[:1] or [None]) == [snippet]


GENERIC_QUALIFIED = {
    "acute bradycardia": "bradycardia-definition",
    "suspected bradycardia seen": "bradycardia-definition",  # was the U-wave snippet
    "new infarction noted": "mi-overview",  # was RBBB in acute MI
    "borderline hypertrophy seen": "hypertrophy-overview",
    "normal ECG present": "normal-ecg-definition",  # was abnormal Q waves
    "acute normal electrocardiogram in lead II": "normal-ecg-definition",  # was acute pericarditis
}


def test_one_generic_word_with_qualifiers_names_the_label(index: KnowledgeIndex) -> None:
    """A word that is an alias but common to many ("bradycardia", "infarction", "normal") names the label beside
    qualifiers only, as it does alone."""
    hits = retrieve_for_labels(index, list(GENERIC_QUALIFIED), k=1)
    got = {label: [h.snippet.id for h in h_] for label, h_ in zip(GENERIC_QUALIFIED, hits, strict=True)}
    assert got == {label: [snippet] for label, snippet in GENERIC_QUALIFIED.items()}


@pytest.mark.parametrize("label", ["block present", "new block seen", "block (confirmed)"])
def test_vague_label_with_qualifiers_gets_what_it_gets_alone(index: KnowledgeIndex, label: str) -> None:
    """ "block present" got complete LBBB criteria, "block" nothing."""
    assert retrieve_for_labels(index, ["block"], k=3)[0] == []
    assert retrieve_for_labels(index, [label], k=3)[0] == []


@pytest.mark.parametrize(
    ("label", "snippet"),
    [("PAF", "atrial-fibrillation-definition"), ("paroxysmal atrial fibrillation", "atrial-fibrillation-definition"),
     ("CAF", "atrial-fibrillation-definition"), ("PVT", "ventricular-tachycardia-definition")],
)  # fmt: skip
def test_snomed_abbreviations_reach_their_snippet(index: KnowledgeIndex, label: str, snippet: str) -> None:
    """SNOMED CT's paroxysmal/chronic AF and paroxysmal VT (CinC classes) carry the criteria of AF and VT."""
    assert [h.snippet.id for h in retrieve_for_labels(index, [label], k=1)[0]] == [snippet]

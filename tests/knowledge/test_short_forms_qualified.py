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

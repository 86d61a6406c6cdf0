"""Findings a snippet names that retrieval missed or mistook (session 22, read from the 10,000-label benchmark's
labels with no knowledge). Real MiniLM + FAISS + BM25."""

from __future__ import annotations

import pytest

from ecglang.knowledge.aliases import normalize_tokens
from ecglang.knowledge.guard import features, polarity
from ecglang.knowledge.index import KnowledgeIndex
from ecglang.knowledge.retrieval import retrieve_for_labels


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex.default(show_progress=False)


@pytest.mark.parametrize(
    ("label", "snippet"),
    [
        # its own alias; the title's "(STEMI equivalent)" read as ST elevation against the label's depression
        ("upsloping ST depression with tall T waves", "de-winter-pattern"),
        ("STEMI equivalent", "de-winter-pattern"),
        # its own alias; the guard read "inferobasal" as the inferior wall (it is the posterior wall's new name)
        ("inferobasal infarction", "posterior-mi"),
        ("prolonged P wave", "left-atrial-interatrial-block"),  # was the prolonged PR interval (hybrid)
        ("tall P wave", "right-atrial-enlargement"),
        ("fQRS wave", "fragmented-qrs"),
    ],
)
def test_named_finding_gets_its_snippet(index: KnowledgeIndex, label: str, snippet: str) -> None:
    assert [h.snippet.id for h in retrieve_for_labels(index, [label], k=1)[0]] == [snippet]


def test_inferobasal_is_the_posterior_wall() -> None:
    assert polarity("inferobasal") == {("wall", "posterior")}
    assert features(normalize_tokens("inferior infarction")) == {"wall": frozenset({"inferior"})}

"""The knowledge guard (`knowledge.guard.conflicts`) on label/snippet-title pairs whose clinical answer is known:
an unmarked bundle branch block is the complete block (so an incomplete-block snippet is not its evidence), an
incomplete-block label is not the complete block's, complete heart block is third degree, high-grade AV block
is second or third degree, and "rightward"/"leftward" name the side they say."""

from __future__ import annotations

import pytest

from ecglang.knowledge.aliases import normalize_tokens
from ecglang.knowledge.guard import conflicts, features, title_features


def _conflicts(label: str, title: str) -> list[str]:
    head = title.split(":")[0]  # a snippet title's head is the part before its colon
    return conflicts(features(normalize_tokens(label)), title_features(normalize_tokens(title), normalize_tokens(head)))


@pytest.mark.parametrize(
    ("label", "title", "expected"),
    [
        # a label that does not say "incomplete" means the complete block
        ("left bundle branch block", "Incomplete left bundle branch block", ["completeness"]),
        ("right bundle branch block", "Incomplete right bundle branch block: rSR' in V1", ["completeness"]),
        ("complete left bundle branch block", "Incomplete left bundle branch block", ["completeness"]),
        ("incomplete right bundle branch block", "Incomplete right bundle branch block", []),
        ("left bundle branch block", "Left bundle branch block", []),
        # ... and an incomplete-block label is not an unmarked (complete) block's
        ("incomplete left bundle branch block", "Left bundle branch block", ["completeness"]),
        ("incomplete right bundle branch block", "Right bundle branch block: rsR' in V1", ["completeness"]),
        # complete heart block = third-degree AV block
        ("complete heart block", "Third degree AV block", []),
        ("complete heart block", "Second degree AV block", ["degree"]),
        ("complete heart block", "First degree AV block", ["degree"]),
        # high-grade AV block = second or third degree, never first
        ("high grade AV block", "First degree AV block", ["degree"]),
        ("high-grade atrioventricular block", "First-degree atrioventricular block", ["degree"]),
        ("high grade AV block", "Second degree AV block", []),
        ("high grade AV block", "Third degree AV block", []),
        # rightward / leftward name their own side
        ("rightward axis", "Right axis deviation", []),
        ("rightward axis", "Left axis deviation", ["side"]),
        ("leftward axis", "Left axis deviation", []),
        ("leftward axis", "Right axis deviation", ["side"]),
    ],
)
def test_guard_reads_completeness_degree_and_side(label: str, title: str, expected: list[str]) -> None:
    assert _conflicts(label, title) == expected

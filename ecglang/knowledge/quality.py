"""How well retrieval picks the right condition: precision@k, off-label rate and coverage on labeled cases.

A case is a label as a user types it and the codes (`(namespace, code)`, any of them) that a snippet must
carry to be on-label; a case with no codes is a negative that must retrieve nothing. A snippet carrying the code
is still off-label when a prompt composed from it for the label states the opposite condition, or when none is
left: the AV-block overview is tagged with every degree's code, and only the guard over each criterion keeps its
second- and third-degree criteria from a first-degree label. Used by the test with
thresholds (`tests/knowledge/test_retrieval_quality.py`) and the benchmark row (`benchmarks/bench_knowledge.py`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ecglang.knowledge.aliases import normalize_tokens, snomed_name_table
from ecglang.knowledge.base import KnowledgeBase
from ecglang.knowledge.guard import criterion_conflicts, features
from ecglang.knowledge.index import Hit, KnowledgeIndex
from ecglang.knowledge.retrieval import compose_prompts, retrieve_for_labels

__all__ = [
    "RetrievalCase",
    "RetrievalScore",
    "load_cases",
    "prompt_conflicts",
    "qualified_snomed_cases",
    "score_retrieval",
    "snomed_name_cases",
]

# How users wrap a finding's name in a label: hedges, age, places, confirmations (with the name or its
# abbreviation in the braces). A qualifier never changes which condition is meant.
QUALIFIED_FRAMES = ("possible {}", "{} (confirmed)", "old {} noted", "{} in lead II", "intermittent {} present",
                    "borderline {} pattern", "new {} seen", "marked {}")  # fmt: skip


@dataclass(frozen=True)
class RetrievalCase:
    """A label and the codes that make a retrieved snippet on-label (none: a negative)."""

    label: str
    codes: tuple[tuple[str, str], ...]

    def on_label(self, hit: Hit) -> bool:
        """The snippet carries one of the codes and gives the label prompts, none of them for the opposite."""
        if not any(hit.snippet.has_code(ns, code) for ns, code in self.codes):
            return False
        prompts = compose_prompts(self.label, [hit])
        return bool(prompts) and not prompt_conflicts(self.label, prompts)


def prompt_conflicts(label: str, prompts: Sequence[str]) -> list[str]:
    """The `prompts` ("<title>: <criterion>") whose criterion names the opposite side, degree, direction or
    hyper/hypo condition of `label` (`guard.criterion_conflicts`)."""
    wanted = features(normalize_tokens(label))
    return [p for p in prompts if criterion_conflicts(wanted, normalize_tokens(p.split(": ", 1)[-1]))]


@dataclass
class RetrievalScore:
    """Totals over a case set (micro-averaged over the retrieved snippets)."""

    k: int
    positives: int
    negatives: int
    retrieved: int  # snippets retrieved for positive labels
    on_label: int
    off_label: int  # snippets for positives without any of the label's codes, plus any snippet for a negative
    covered: int  # positive labels with at least one snippet
    negatives_with_hits: int
    seconds: float
    misses: list[tuple[str, list[str]]]  # (label, off-label snippet ids) for inspection

    @property
    def precision(self) -> float:
        """Share of the snippets retrieved for positive labels that carry one of the label's codes."""
        return self.on_label / self.retrieved if self.retrieved else 1.0

    @property
    def off_label_rate(self) -> float:
        """Share of all retrieved snippets (positives and negatives) that are off-label."""
        total = self.on_label + self.off_label  # every retrieved snippet is one or the other
        return self.off_label / total if total else 0.0

    @property
    def coverage(self) -> float:
        return self.covered / self.positives if self.positives else 1.0

    def summary(self) -> str:
        return (
            f"precision@{self.k} {self.precision:.3f}, off-label {self.off_label_rate:.2%}, coverage "
            f"{self.coverage:.1%} of {self.positives} labels, {self.negatives_with_hits}/{self.negatives} "
            f"negatives with snippets, {1e3 * self.seconds / max(1, self.positives + self.negatives):.2f} ms/label"
        )


def load_cases(path: str | os.PathLike) -> list[RetrievalCase]:
    """Cases from a JSONL file of `{"label": ..., "codes": [[namespace, code], ...]}`."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            out.append(RetrievalCase(obj["label"], tuple((ns, code) for ns, code in obj["codes"])))
    return out


def snomed_name_cases(kb: KnowledgeBase) -> list[RetrievalCase]:
    """Issue 14's measurement: the SNOMED CT names of `snomed_ct_ecg.csv` whose code some snippet carries."""
    return [RetrievalCase(name, (("snomed", code),)) for name, _, code in snomed_name_table()
            if kb.snippets_for_code("snomed", code)]  # fmt: skip


def qualified_snomed_cases(kb: KnowledgeBase, frames: Sequence[str] = QUALIFIED_FRAMES) -> list[RetrievalCase]:
    """The SNOMED CT names and abbreviations whose code some snippet carries, each in every frame of `frames`
    ("possible AVNRT", "old SAB noted"): labels as users type them, not as the table spells them."""
    cases: dict[str, RetrievalCase] = {}
    for name, abbreviation, code in snomed_name_table():
        if kb.snippets_for_code("snomed", code):
            for text in (name, abbreviation):
                for frame in frames:
                    label = frame.format(text)
                    codes = cases[label].codes if label in cases else ()
                    cases[label] = RetrievalCase(label, (*codes, ("snomed", code)))  # an abbreviation of two names
    return list(cases.values())


def score_retrieval(index: KnowledgeIndex, cases: Sequence[RetrievalCase], k: int = 3) -> RetrievalScore:
    """Retrieve for every case's label (free text: no code, no prompts) and count on/off-label snippets."""
    t0 = time.perf_counter()
    results = retrieve_for_labels(index, [c.label for c in cases], k=k)
    seconds = time.perf_counter() - t0
    score = RetrievalScore(k, 0, 0, 0, 0, 0, 0, 0, seconds, [])
    for case, hits in zip(cases, results, strict=True):
        if not case.codes:
            score.negatives += 1
            score.negatives_with_hits += bool(hits)
            score.off_label += len(hits)
            if hits:
                score.misses.append((case.label, [h.snippet.id for h in hits]))
            continue
        score.positives += 1
        score.covered += bool(hits)
        score.retrieved += len(hits)
        good = [h for h in hits if case.on_label(h)]
        score.on_label += len(good)
        score.off_label += len(hits) - len(good)
        if len(good) < len(hits) or not hits:
            score.misses.append((case.label, [h.snippet.id for h in hits if not case.on_label(h)]))
    return score

"""Labels read off a report's own text, for validation during pretraining.

Checkpoint selection must not look at any downstream label set (PTB-XL SCP codes, superclasses, CinC
Dx codes, ...): those are what the model is later evaluated on. During pretraining the held-out
ECG–report pairs carry one source of truth, their reports. This module turns a normalised English
report (`ecglang.text.reports.normalize_report`, `clean_mimic_report`) into a multi-hot vector over a small,
fixed table of findings; `ecglang.training.trainer` scores held-out ECGs against the text embeddings of the label
names (zero-shot) and reports the macro AUROC over the labels that have positives and negatives.

The table is deliberately crude (a regular expression per finding over the lower-case report). A label is
positive when its pattern matches and the report states it: a finding that is negated or hedged is not
positive. A negation or hedge counts when it stands before the finding in the same clause (after the last
`,`/`;`/"but" of its sentence: "no st elevation, t wave inversion" states the inversion) — negations `no`,
`not`, `without`, ...; low-confidence hedges `possible`, `suspected`, `consider`, `cannot rule out`,
"most commonly due to" (a general statement, not a finding) — or after it in the same sentence ("cannot be
(entirely) excluded", "should be considered", a sentence-final "possible" as German device text places it).
Possible findings are thus negatives, as "cannot be excluded" always was; probable ones (`probable`,
`probably`, `likely`, `may be due to`, `suggesting`, `consistent with`) stay positives. The labels are
noisy, and they are only used to compare checkpoints of one run with each other.

| label | matches (regex over the normalised report) |
|---|---|
| normal ecg | "normal ecg" not preceded by "otherwise"/"borderline"/"abnormal" |
| sinus rhythm | "sinus rhythm" |
| sinus arrhythmia | "sinus arrhythmia" |
| sinus bradycardia | "sinus bradycardia" |
| sinus tachycardia | "sinus tachycardia" |
| atrial fibrillation | "atrial fibrillation", "afib" |
| atrial flutter | "atrial flutter" |
| first degree av block | "first/1st degree av block" |
| left bundle branch block | complete "left bundle branch block", "lbbb" |
| right bundle branch block | complete "right bundle branch block", "rbbb" |
| incomplete right bundle branch block | "incomplete right bundle branch block", "incomplete rbbb" |
| left anterior fascicular block | "left anterior fascicular/hemi block", "lafb" |
| left axis deviation | "left axis deviation" (not "leftward axis": a normal axis position) |
| right axis deviation | "right axis deviation" (not "rightward axis") |
| left ventricular hypertrophy | "left ventricular hypertrophy", "lvh" |
| myocardial infarction | "infarct", "infarction", "myocardial infarction", "mi", "stemi", "nstemi" |
| ischaemia | "ischaemia", "ischemia", "ischaemic", "ischemic" |
| st-t changes | "st-t", "st depression/elevation", "st segment(s)", "abnormal/inverted/flat t wave(s)", "t wave(s) |
| | ... abnormal/changes/inverted/inversion/flat" |
| low voltage | "low (qrs / limb lead / precordial) voltage(s)" |
| premature ventricular complex | "premature ventricular", "ventricular premature/extrasystole/ectopic", "pvc(s)" |
| premature atrial complex | "premature atrial/supraventricular", "atrial/supraventricular premature/extrasystole", |
| | "pac(s)" |
| prolonged qt | "prolonged qt", "qt prolongation", "long qt", "qtc 480 ms - prolonged" |
| pacemaker | "paced", "pacemaker", "pacing" |
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from ecglang.errors import ConfigError
from ecglang.text.sentences import split_sentences

# Label name → pattern. The label name doubles as the zero-shot prompt, so it is written as a clinician
# would write the finding.
REPORT_LABELS: dict[str, str] = {
    "normal ecg": r"(?<!otherwise )(?<!borderline )(?<!abnormal )\bnormal ecg\b",
    "sinus rhythm": r"\bsinus rhythm\b",
    "sinus arrhythmia": r"\bsinus arrhythmia\b",
    "sinus bradycardia": r"\bsinus bradycardia\b",
    "sinus tachycardia": r"\bsinus tachycardia\b",
    "atrial fibrillation": r"\batrial fibrillation\b|\bafib\b",
    "atrial flutter": r"\batrial flutter\b",
    "first degree av block": r"\b(?:first|1st)[- ]degree a-?v block\b",
    "left bundle branch block": r"(?<!incomplete )\bleft bundle branch block\b|\blbbb\b",
    "right bundle branch block": r"(?<!incomplete )\bright bundle branch block\b|(?<!incomplete )\brbbb\b",
    "incomplete right bundle branch block": r"\bincomplete (?:right bundle branch block|rbbb)\b",
    "left anterior fascicular block": r"\bleft anterior (?:fascicular|hemi) ?block\b|\blafb\b",
    # "leftward/rightward axis" (PTB-XL Linkstyp/Rechtstyp, Swedish "vänster/höger el-axel", GE "leftward axis")
    # is an axis within normal limits, not a deviation.
    "left axis deviation": r"\bleft axis deviation\b",
    "right axis deviation": r"\bright axis deviation\b",
    "left ventricular hypertrophy": r"\bleft ventricular hypertrophy\b|\blvh\b",
    # MIMIC machine statements also write "acute mi", "*** acute mi / stemi ***".
    "myocardial infarction": r"\binfarct(?:ion)?s?\b|\bmi\b|\b(?:n?stemi)\b",
    "ischaemia": r"\bisch(?:a)?emi(?:a|c)\b",
    "st-t changes": (
        r"\bst-t\b|\bst[- ]segments?\b|\bst (?:depression|elevation)\b"
        r"|\b(?:abnormal|inverted|negative|flat(?:tened)?)\b[^.;]{0,30}\bt waves?\b"
        r"|\bt waves?\b[^.;]{0,30}\b(?:abnormal(?:ity|ities)?|changes?|inver(?:ted|sions?)|flat(?:tening)?)\b"
    ),
    "low voltage": r"\blow (?:qrs |limb lead |precordial )?voltages?\b",  # Swedish device: "low qrs voltages"
    "premature ventricular complex": (
        r"\bpremature ventricular\b|\bventricular (?:premature|extrasystoles?|ectopics?)\b|\bpvcs?\b"
    ),
    "premature atrial complex": (
        r"\bpremature (?:atrial|supraventricular)\b|\b(?:atrial|supraventricular) (?:premature|extrasystoles?)\b"
        r"|\bpacs?\b"
    ),
    "prolonged qt": r"\bprolonged qtc?\b|\bqtc? prolongation\b|\blong qtc?\b|\bqtc?\b[\s\d:=ms-]{0,15}\bprolonged\b",
    "pacemaker": r"\bpaced\b|\bpacemaker\b|\bpacing\b",
}

# A finding negated or hedged ("no evidence of infarction", "possible infarction", "infarction cannot be
# excluded") is not a positive. Words before the finding count only within its clause.
_CLAUSE_START = re.compile(r"(?:[,;]|\bbut\b|\bhowever\b)(?!.*(?:[,;]|\bbut\b|\bhowever\b))", re.DOTALL)
_UNSTATED_BEFORE = re.compile(
    r"\b(?:no|not|without|absence of|negative for|rule out|no evidence of"
    r"|possible|possibly|suspected|suspect|suspicion of|consider|considered|questionable|commonly)\b"
)
_UNSTATED_AFTER = re.compile(
    r"\b(?:can ?not be (?:entirely |completely )?(?:excluded|ruled out)|not (?:be )?excluded|ruled out|absent"
    r"|no longer|should be considered|is (?:a )?possible\b)"
    # German device text puts the hedge last ("infarkt posterior chronisch möglich" → "..., possible."): it
    # hedges only the finding of its own clause, not "abnormal st segments, ... infarction, possible".
    r"|\A[^,;]*,?\s*possible\W*\Z"
)

_COMPILED: dict[str, re.Pattern[str]] = {name: re.compile(p) for name, p in REPORT_LABELS.items()}


def report_label_names() -> list[str]:
    """The label names, in table order (they are also the zero-shot prompts)."""
    return list(REPORT_LABELS)


def _positive(pattern: re.Pattern[str], sentence: str) -> bool:
    for m in pattern.finditer(sentence):
        before, after = sentence[: m.start()], sentence[m.end() :]
        clause = _CLAUSE_START.search(before)
        if clause is not None:
            before = before[clause.end() :]
        if not _UNSTATED_BEFORE.search(before) and not _UNSTATED_AFTER.search(after):
            return True
    return False


def report_labels(report: str) -> list[str]:
    """The table's labels that `report` (normalised English, lower case) states, in table order."""
    sentences = split_sentences(report.lower()) if report else []
    return [name for name, pattern in _COMPILED.items() if any(_positive(pattern, s) for s in sentences)]


def report_label_matrix(reports: Iterable[str], names: Sequence[str] | None = None) -> np.ndarray:
    """Multi-hot `int8 [N, L]` of the labels `names` (default: all) read from each report."""
    names = report_label_names() if names is None else list(names)
    unknown = [n for n in names if n not in REPORT_LABELS]
    if unknown:
        raise ConfigError(f"unknown report label(s) {unknown}; known: {report_label_names()}")
    rows = [set(report_labels(r)) for r in reports]
    return np.array([[n in row for n in names] for row in rows], dtype=np.int8).reshape(len(rows), len(names))


__all__ = ["REPORT_LABELS", "report_label_matrix", "report_label_names", "report_labels"]

"""The contradiction guard: a snippet written for the opposite condition is never attached to a label.

Small sentence encoders barely tell left from right or tachy from brady, and BM25 counts "bundle branch
block" the same in LBBB and RBBB. The guard reads the opposite pairs that decide a condition from the
normalised label (`ecglang.knowledge.aliases.normalize_tokens`) and from the snippet's title:

- laterality: left / right;
- degree: first / second / third (Mobitz and Wenckebach are second, complete heart block third, a partial or
  incomplete AV block first or second); completeness: complete / incomplete;
- direction: tachy / brady (also rapid / slow), ST elevation / depression, hyper / hypo of the same stem
  (hyperkalemia / hypokalemia), long / short intervals, high / low voltage;
- the chamber (sinus, atrial, junctional, ventricular), the wall (anterior, inferior, lateral, posterior,
  septal) and fibrillation / flutter;
- the interval a label is about (PR, QRS, QT) and the axis (normal / deviation; the extreme, northwest axis is
  a side of its own, neither left nor right);
- timing: premature (early) / escape beats.

A snippet conflicts with a label when, for some group, both name a value and they share none, or when one
negates what the other names: words after a negation are negated values ("no atrial fibrillation", "without ST
elevation", "non-ST elevation infarction"), so a negated label never takes the condition it excludes. "non"
reaches one word ("non-sustained", "non-conducted"), or "ST" and the word after it; "no", "not", "without" and
"absent" reach three. A label that names neither side (e.g. "bundle branch block") conflicts with nothing here;
`ecglang.knowledge.retrieval` then keeps it from taking one side only.

A snippet's condition is its title's head, the part before a colon ("Atrial fibrillation: fibrillatory waves
and ventricular response" is about atrial fibrillation, not a ventricular condition), or the whole title when
the head names none of these values ("Minnesota Code 4: ST-J depression").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "CHOICES", "CRITERION_GROUPS", "combines", "conflicts", "criterion_conflicts", "features", "named", "named_values",
    "negates", "open_groups", "polarity", "title_features",
]  # fmt: skip

_WORD_VALUES: dict[str, tuple[tuple[str, str], ...]] = {
    "left": (("side", "left"),),
    "leftward": (("side", "left"),),
    "right": (("side", "right"),),
    "rightward": (("side", "right"),),
    "extreme": (("side", "extreme"),),  # the extreme (northwest) axis: neither left nor right axis deviation
    "northwest": (("side", "extreme"),),
    "first": (("degree", "first"),),
    "second": (("degree", "second"),),
    "third": (("degree", "third"),),
    "mobitz": (("degree", "second"),),
    "wenckebach": (("degree", "second"),),
    "complete": (("completeness", "complete"),),
    "incomplete": (("completeness", "incomplete"),),
    "partial": (("completeness", "incomplete"),),
    "rapid": (("rate", "tachy"),),
    "fast": (("rate", "tachy"),),
    "slow": (("rate", "brady"),),
    "elevation": (("st", "elevation"),),
    "elevated": (("st", "elevation"),),
    "raised": (("st", "elevation"),),
    "depression": (("st", "depression"),),
    "depressed": (("st", "depression"),),
    "drop": (("st", "depression"),),
    "long": (("duration", "long"),),
    "prolonged": (("duration", "long"),),
    "prolongation": (("duration", "long"),),
    "lengthened": (("duration", "long"),),
    "wide": (("duration", "long"),),  # a wide or broad QRS is a prolonged one, a narrow QRS a short one
    "broad": (("duration", "long"),),
    "narrow": (("duration", "short"),),
    "short": (("duration", "short"),),
    "shortened": (("duration", "short"),),
    "decreased": (("duration", "short"),),
    "high": (("voltage", "high"),),
    "tall": (("voltage", "high"),),
    "low": (("voltage", "low"),),
    "atrial": (("chamber", "atrial"),),
    "atrium": (("chamber", "atrial"),),
    "atria": (("chamber", "atrial"),),
    "biatrial": (("chamber", "atrial"),),
    "interatrial": (("chamber", "atrial"),),
    "ventricular": (("chamber", "ventricular"),),
    "ventricle": (("chamber", "ventricular"),),
    "biventricular": (("chamber", "ventricular"),),
    "intraventricular": (("chamber", "ventricular"),),
    "idioventricular": (("chamber", "ventricular"),),
    "junctional": (("chamber", "junctional"),),
    "sinus": (("chamber", "sinus"),),
    "advanced": (("degree", "second"), ("degree", "third")),  # advanced (high-grade) AV block: 2:1 or worse
    "pr": (("interval", "pr"),),
    "qrs": (("interval", "qrs"),),
    "qt": (("interval", "qt"),),
    "deviation": (("axis", "deviation"),),
    "nodal": (("chamber", "junctional"),),
    "supraventricular": (("chamber", "atrial"), ("chamber", "junctional")),
    "premature": (("timing", "premature"),),  # a premature beat comes early, an escape beat late
    "early": (("timing", "premature"),),
    "escape": (("timing", "escape"),),
    "fibrillation": (("fibrillation", "fibrillation"),),
    "fibrillatory": (("fibrillation", "fibrillation"),),
    "flutter": (("fibrillation", "flutter"),),
}
_PREFIX_VALUES = (("tachy", ("rate", "tachy")), ("brady", ("rate", "brady")))
_WALLS = (("anter", "anterior"), ("infer", "inferior"), ("later", "lateral"), ("poster", "posterior"),
          ("sept", "septal"))  # fmt: skip
# The 2006 consensus name of the wall that ECG criteria call posterior ("inferobasal infarction"), not the inferior
# wall its prefix names
_RENAMED_WALLS = {"inferobasal": "posterior"}
_HYPER_HYPO = re.compile(r"^(hyper|hypo)([a-z]{3,})$")
_NEGATIONS = frozenset({"non", "no", "without", "absent", "not"})
# Groups whose values are sibling conditions of one name (left / right bundle branch block, first / second /
# third degree AV block, anterior / posterior fascicular block, ST elevation / depression, tachy / brady): a label
# that leaves one open must not take one sibling only (`open_groups`).
CHOICES = ("side", "degree", "wall", "completeness", "st", "rate")
_NEGATION_REACH = 3
# Words for both sides at once: biatrial enlargement, bifascicular block are conditions of their own, not an
# overview of "atrial enlargement" or "fascicular block" (`combines`).
_COMBINED = frozenset({"biatrial", "biventricular", "bifascicular", "trifascicular"})


def polarity(token: str) -> frozenset[tuple[str, str]]:
    """The (group, value) pairs one normalised word names, e.g. "left" -> {("side", "left")}."""
    out: set[tuple[str, str]] = set(_WORD_VALUES.get(token, ()))
    for prefix, value in _PREFIX_VALUES:
        if token.startswith(prefix):
            out.add(value)
    hh = _HYPER_HYPO.match(token)
    if hh:  # keyed by the stem's first letters: hyperkalemia, hyperkalemic and hyperkalaemia are one condition
        out.add((f"hyper/hypo {hh.group(2)[:4]}", hh.group(1)))
    if token in _RENAMED_WALLS:
        out.add(("wall", _RENAMED_WALLS[token]))
    elif token not in ("bilateral",) and not token.startswith(("atrio", "interventricular")):
        for root, wall in _WALLS:
            if root in token and token not in ("lateralization", "laterality", "interpretation"):
                out.add(("wall", wall))
    return frozenset(out)


def features(tokens: Sequence[str]) -> dict[str, frozenset[str]]:
    """Group -> the values a normalised token sequence names; a negated value is written "!value"."""
    out: dict[str, set[str]] = {}
    negated_until = -1
    previous = ""
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in _NEGATIONS:
            # "non" makes a compound with one word (non-sustained), or with "ST" and the word after it
            reach = (2 if nxt == "st" else 1) if tok == "non" else _NEGATION_REACH
            negated_until = i + reach
            previous = tok
            continue
        pairs = set(polarity(tok))
        if tok == "extension" and previous == "st":  # Chapman-Shaoxing's "ST extension" is ST elevation
            pairs.add(("st", "elevation"))
        elif tok == "extension":  # "PR/QT interval extension": prolonged
            pairs.add(("duration", "long"))
        if previous == "mobitz" and tok in ("1", "2"):  # Mobitz type I (Wenckebach) versus type II
            pairs.add(("mobitz", tok))
        elif tok == "wenckebach":
            pairs.add(("mobitz", "1"))
        if tok == "nodal" and previous in ("sa", "sinoatrial", "sinus"):  # the sinus node, not the AV junction
            pairs = {("chamber", "sinus")}
        if tok == "high" and nxt == "grade":  # high-grade AV block: a degree, not a voltage
            pairs = {("degree", "second"), ("degree", "third")}
        if tok == "normal" and nxt == "axis":
            pairs.add(("axis", "normal"))
        for group, value in pairs:
            out.setdefault(group, set()).add(f"!{value}" if i <= negated_until else value)
        previous = tok
    text = " ".join(tokens)
    if re.search(r"(^| )complete (heart|atrioventricular) block", text):  # = third degree
        out.setdefault("degree", set()).add("third")
        out.pop("completeness", None)
    elif re.search(r"(^| )(incomplete|partial) (heart|atrioventricular) block", text):  # = first or second degree
        # not the incomplete form of a snippet's block (CinC's "partial atrioventricular block 2:1" against "2:1 AV
        # block" read as an incomplete label against an unmarked, so complete, block): any degree but the third
        out.setdefault("degree", set()).update(("first", "second"))
        out.pop("completeness", None)
    return {group: frozenset(values) for group, values in out.items()}


#: The groups in which a criterion may state the opposite of its label (with the hyper/hypo pairs): side, degree
#: and tachy/brady. Not chamber or wall (an AF criterion names the ventricular response, a STEMI criterion the
#: reciprocal wall), nor ST direction: elevation comes with reciprocal depression on one ECG, and "PR depression"
#: of pericarditis is no ST depression.
CRITERION_GROUPS = frozenset({"side", "degree", "rate"})
# Ordinals are a degree only beside "degree" ("second degree = ..."): "the first P wave", "a second R wave" are not
_ORDINAL_WORDS = frozenset({"first", "second", "third"})
# Side words that name leads or limbs, not the condition: "right precordial leads", "left arm"
_SIDE_PLACES = frozenset({"precordial", "chest", "sided", "lead", "arm", "leg", "hand", "shoulder", "sternal"})


def criterion_conflicts(label: dict[str, frozenset[str]], criterion: Sequence[str]) -> list[str]:
    """The groups (`CRITERION_GROUPS`, hyper/hypo) in which one criterion of a snippet (normalised tokens) names
    only values the label does not: "second degree = intermittent non-conducted P waves" of the AV-block overview
    for a first-degree label, "Hypercalcemia shortens the QT" for hypocalcemia, "... = right axis deviation" for
    left axis deviation. A criterion naming the label's value too ("Tachycardia > 100 bpm, bradycardia < 60 bpm")
    and a negated value conflict with nothing: criteria compare conditions, they do not define them."""
    mine = _criterion_features(tuple(criterion))
    out = []
    for group in sorted(set(label) & set(mine)):
        if group not in CRITERION_GROUPS and not group.startswith("hyper/hypo"):
            continue
        named_l, named_c = named(label[group]), named(mine[group])
        if named_l and named_c and not named_l & named_c:
            out.append(group)
    return out


@lru_cache(maxsize=65_536)  # a snippet's criteria are checked for every label it is a candidate of (10,000 labels)
def _criterion_features(criterion: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """The guard `features` of one criterion, less the words that name no condition there (see below)."""
    tokens = list(criterion)
    # a criterion naming its degree ("second degree = ... Mobitz II, 2:1, high-grade") lists kinds of that degree
    explicit = any(t in _ORDINAL_WORDS and n == "degree" for t, n in itertools.pairwise(tokens))
    for i, tok in enumerate(tokens):
        nxt, after = [*tokens[i + 1 : i + 3], "", ""][:2]
        place = nxt in _SIDE_PLACES or (nxt in ("left", "right") and after in _SIDE_PLACES)  # "left–right arm"
        if (tok in _ORDINAL_WORDS and nxt != "degree") or (tok in ("left", "right") and place):
            tokens[i] = "_"
        elif explicit and (tok == "advanced" or (tok == "high" and nxt == "grade")):
            tokens[i] = "_"
        elif tok == "complete" and i and tokens[i - 1] == "to":  # "progression to complete heart block": a risk
            tokens[i] = "_"
    return features(tokens)


def title_features(title_tokens: Sequence[str], head_tokens: Sequence[str]) -> dict[str, frozenset[str]]:
    """The values a snippet's title names: its head's (the part before a colon), or the whole title's when the
    head names none (see the module docstring)."""
    head = features(head_tokens)
    return head if head else features(title_tokens)


def named(values: frozenset[str]) -> frozenset[str]:
    """The values of one group that are named, not negated."""
    return frozenset(v for v in values if not v.startswith("!"))


def _negated(values: frozenset[str]) -> frozenset[str]:
    return frozenset(v[1:] for v in values if v.startswith("!"))


def open_groups(tokens: Sequence[str]) -> tuple[set[str], set[str]]:
    """(groups a label names no value of, groups in which different words of it name different values).

    "bundle branch block" leaves the side open; "left anterior / left posterior fascicular block" names two
    walls with two words. One word naming two values ("supraventricular": atrial or junctional) is one
    condition, not a choice."""
    words: dict[str, set[str]] = {}
    for tok in tokens:
        for group, _ in polarity(tok):
            words.setdefault(group, set()).add(tok)
    return set(CHOICES) - set(words), {group for group, toks in words.items() if len(toks) > 1 and group in CHOICES}


def combines(tokens: Sequence[str]) -> bool:
    """Whether a title names a combination of sides ("Bifascicular block", "Biatrial enlargement")."""
    return any(t in _COMBINED for t in tokens)


def negates(tokens: Sequence[str]) -> bool:
    """Whether a label says a condition is absent ("no atrial fibrillation", "without ST elevation"): it opens
    with a negation, and names no condition to retrieve criteria for. A negation later on describes ("rhythm
    without P waves", "degree not specified"), and "non" makes compound names (non-sustained, NSTEMI)."""
    return bool(tokens) and tokens[0] in _NEGATIONS and tokens[0] != "non"


def named_values(values: dict[str, frozenset[str]]) -> set[tuple[str, str]]:
    """The (group, value) pairs a feature dict names, negated values left out."""
    return {(group, v) for group, vs in values.items() for v in named(vs)}


def conflicts(label: dict[str, frozenset[str]], snippet: dict[str, frozenset[str]]) -> list[str]:
    """The groups in which the label and the snippet name opposite values, or one negates what the other names
    (empty: compatible).

    "Incomplete" is the marked form: a label that does not say it ("left bundle branch block") means the
    complete block, so an incomplete-block snippet conflicts with it, and an incomplete or partial block label
    conflicts with a snippet that does not say "incomplete"."""
    label_completeness = named(label.get("completeness", frozenset()))
    snippet_completeness = named(snippet.get("completeness", frozenset()))
    if not label_completeness and snippet_completeness == frozenset({"incomplete"}):
        label = {**label, "completeness": frozenset({"complete"})}
    elif label_completeness == frozenset({"incomplete"}) and not snippet_completeness:
        snippet = {**snippet, "completeness": frozenset({"complete"})}
    out = []
    for group in sorted(set(label) & set(snippet)):
        mine, theirs = label[group], snippet[group]
        named_l, named_s = named(mine), named(theirs)
        if (named_l and named_s and not named_l & named_s) or _negated(mine) & named_s or _negated(theirs) & named_l:
            out.append(group)
    return out

"""The contradiction guard: a snippet written for the opposite condition is never attached to a label.

Small sentence encoders barely tell left from right or tachy from brady, and BM25 counts "bundle branch
block" the same in LBBB and RBBB. The guard reads the opposite pairs that decide a condition from the
normalised label (`ecglang.knowledge.aliases.normalize_tokens`) and from the snippet's title:

- laterality: left / right;
- degree: first / second / third (Mobitz and Wenckebach are second, complete heart block third);
  completeness: complete / incomplete;
- direction: tachy / brady (also rapid / slow), ST elevation / depression, hyper / hypo of the same stem
  (hyperkalemia / hypokalemia), long / short intervals, high / low voltage;
- the chamber (atrial, junctional, ventricular), the wall (anterior, inferior, lateral, posterior, septal)
  and fibrillation / flutter.

A snippet conflicts with a label when, for some group, both name a value and they share none. Words after
a negation ("non ST elevation") name nothing. A label that names neither side (e.g. "bundle branch block")
conflicts with nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["conflicts", "features", "polarity"]

_WORD_VALUES: dict[str, tuple[tuple[str, str], ...]] = {
    "left": (("side", "left"),),
    "leftward": (("side", "left"),),
    "right": (("side", "right"),),
    "rightward": (("side", "right"),),
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
    "nodal": (("chamber", "junctional"),),
    "supraventricular": (("chamber", "atrial"), ("chamber", "junctional")),
    "fibrillation": (("fibrillation", "fibrillation"),),
    "fibrillatory": (("fibrillation", "fibrillation"),),
    "flutter": (("fibrillation", "flutter"),),
}
_PREFIX_VALUES = (("tachy", ("rate", "tachy")), ("brady", ("rate", "brady")))
_WALLS = (("anter", "anterior"), ("infer", "inferior"), ("later", "lateral"), ("poster", "posterior"),
          ("sept", "septal"))  # fmt: skip
_HYPER_HYPO = re.compile(r"^(hyper|hypo)([a-z]{3,})$")
_NEGATIONS = frozenset({"non", "no", "without", "absent", "not"})
_NEGATION_REACH = 3


def polarity(token: str) -> frozenset[tuple[str, str]]:
    """The (group, value) pairs one normalised word names, e.g. "left" -> {("side", "left")}."""
    out: set[tuple[str, str]] = set(_WORD_VALUES.get(token, ()))
    for prefix, value in _PREFIX_VALUES:
        if token.startswith(prefix):
            out.add(value)
    hh = _HYPER_HYPO.match(token)
    if hh:
        out.add((f"hyper/hypo {hh.group(2)}", hh.group(1)))
    if token not in ("bilateral",) and not token.startswith(("atrio", "interventricular")):
        for root, wall in _WALLS:
            if root in token and token not in ("lateralization", "laterality", "interpretation"):
                out.add(("wall", wall))
    return frozenset(out)


def features(tokens: Sequence[str]) -> dict[str, frozenset[str]]:
    """Group -> the values a normalised token sequence names (negated words skipped)."""
    out: dict[str, set[str]] = {}
    skip_until = -1
    previous = ""
    for i, tok in enumerate(tokens):
        if tok in _NEGATIONS:
            skip_until = i + _NEGATION_REACH
        elif i > skip_until:
            pairs = set(polarity(tok))
            if tok == "extension" and previous == "st":  # Chapman-Shaoxing's "ST extension" is ST elevation
                pairs.add(("st", "elevation"))
            elif tok == "extension":  # "PR/QT interval extension": prolonged
                pairs.add(("duration", "long"))
            if previous == "mobitz" and tok in ("1", "2"):  # Mobitz type I (Wenckebach) versus type II
                pairs.add(("mobitz", tok))
            elif tok == "wenckebach":
                pairs.add(("mobitz", "1"))
            for group, value in pairs:
                out.setdefault(group, set()).add(value)
        previous = tok
    text = " ".join(tokens)
    if re.search(r"(^| )complete (heart|atrioventricular) block", text):  # = third degree
        out.setdefault("degree", set()).add("third")
        out.pop("completeness", None)
    return {group: frozenset(values) for group, values in out.items()}


def conflicts(label: dict[str, frozenset[str]], snippet: dict[str, frozenset[str]]) -> list[str]:
    """The groups in which the label and the snippet name opposite values (empty: compatible).

    "Incomplete" is the marked form: a label that does not say it ("left bundle branch block") means the
    complete block, so an incomplete-block snippet conflicts with it."""
    if "completeness" not in label and snippet.get("completeness") == frozenset({"incomplete"}):
        label = {**label, "completeness": frozenset({"complete"})}
    return sorted(g for g, values in label.items() if g in snippet and not values & snippet[g])

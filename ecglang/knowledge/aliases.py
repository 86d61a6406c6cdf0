"""Label text as users type it, normalised; and the exact alias/code index of a knowledge base.

Users write "LBBB", "1st degree AV block", "A-fib", "PVCs", "ischaemia" or "atrial fibrilation". `normalize_tokens`
turns all of these into one canonical token sequence: lower case, British spellings and plurals folded,
ordinals spelled out, clinical abbreviations expanded (`ABBREVIATIONS`), and misspellings corrected to the
closest word of the knowledge base's vocabulary (never across an opposite pair such as hyper/hypo, never to an
abbreviation such as CinC's "MATach").
`AliasIndex` maps the normalised titles and aliases of the snippets, the snippet codes, and the package's
SNOMED CT name table (`ecglang/resources/snomed_ct_ecg.csv`: name and abbreviation -> code) to snippets.
No torch here.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ecglang.knowledge.base import KnowledgeBase, Snippet, normalize_code
from ecglang.knowledge.guard import polarity

__all__ = ["ABBREVIATIONS", "MISSPELLINGS", "AliasIndex", "AliasMatch", "normalize_tokens", "snomed_name_table"]

#: Abbreviations and short forms -> their words. Applied to label and alias text alike, so "LBBB", "lbbb" and
#: "left bundle branch block" normalise to the same tokens. Ambiguous two-letter forms ("SR", "AT", "SA")
#: are left to the aliases, which match whole labels only.
ABBREVIATIONS: dict[str, str] = {
    "lbbb": "left bundle branch block",
    "rbbb": "right bundle branch block",
    "clbbb": "complete left bundle branch block",
    "crbbb": "complete right bundle branch block",
    "ilbbb": "incomplete left bundle branch block",
    "irbbb": "incomplete right bundle branch block",
    "bbb": "bundle branch block",
    "lafb": "left anterior fascicular block",
    "lanfb": "left anterior fascicular block",
    "lahb": "left anterior hemiblock",
    "lpfb": "left posterior fascicular block",
    "lphb": "left posterior hemiblock",
    "ivcd": "intraventricular conduction delay",
    "lvh": "left ventricular hypertrophy",
    "rvh": "right ventricular hypertrophy",
    "lae": "left atrial enlargement",
    "rae": "right atrial enlargement",
    "lv": "left ventricular",
    "rv": "right ventricular",
    "av": "atrioventricular",
    "avb": "atrioventricular block",
    "1avb": "first degree atrioventricular block",
    "iavb": "first degree atrioventricular block",
    "2avb": "second degree atrioventricular block",
    "iiavb": "second degree atrioventricular block",
    "3avb": "third degree atrioventricular block",
    "iiiavb": "third degree atrioventricular block",
    "chb": "complete heart block",
    "afib": "atrial fibrillation",
    "af": "atrial fibrillation",
    "fib": "fibrillation",
    "afl": "atrial flutter",
    "aflutter": "atrial flutter",
    "vfib": "ventricular fibrillation",
    "vf": "ventricular fibrillation",
    "vt": "ventricular tachycardia",
    "vtach": "ventricular tachycardia",
    "tach": "tachycardia",
    "brady": "bradycardia",
    "tachy": "tachycardia",
    "stach": "sinus tachycardia",
    "sbrad": "sinus bradycardia",
    "nsr": "normal sinus rhythm",
    "svt": "supraventricular tachycardia",
    "psvt": "paroxysmal supraventricular tachycardia",
    "pvc": "premature ventricular contraction",
    "vpc": "premature ventricular contraction",
    "vpb": "ventricular premature beat",
    "veb": "ventricular ectopic beat",
    "pac": "premature atrial contraction",
    "apc": "premature atrial contraction",
    "apb": "atrial premature beat",
    "svpb": "supraventricular premature beat",
    "wpw": "wolff parkinson white",
    "wolf": "wolff",
    "mi": "myocardial infarction",
    "stemi": "st elevation myocardial infarction",
    "nstemi": "non st elevation myocardial infarction",
    "nsvt": "non sustained ventricular tachycardia",
    "ste": "st elevation",
    "std": "st depression",
    "twi": "t wave inversion",
    "lqt": "long qt",
    "lqts": "long qt syndrome",
    "qtc": "qt",
    "lad": "left axis deviation",
    "rad": "right axis deviation",
    "prwp": "poor r wave progression",
    "lqrsv": "low qrs voltage",
    "repol": "repolarization",  # "early repol"
    "dig": "digitalis",  # "dig effect", "dig toxicity"
    "ecg": "",
    "ekg": "",
    "electrocardiogram": "",
    "electrocardiographic": "",
}

#: Misspellings that fuzzy matching cannot settle (equally close to both words of an opposite pair).
MISSPELLINGS: dict[str, str] = {
    "brachycardia": "bradycardia",
    "bradicardia": "bradycardia",
    "bradychardia": "bradycardia",
    "tachicardia": "tachycardia",
    "tachychardia": "tachycardia",
    "tachacardia": "tachycardia",
    "brunch": "branch",  # "left bundle brunch block" is 0.83 from "branch" (below the fuzzy cut-off)
    "hyperkalmia": "hyperkalemia",
    "hypokalmia": "hypokalemia",
}

#: Multi-word forms folded before tokenising (after lower-casing and punctuation removal).
_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\ba fib\b", "atrial fibrillation"),
    (r"\ba flutter\b", "atrial flutter"),
    (r"\bv fib\b", "ventricular fibrillation"),
    (r"\bv tach\b", "ventricular tachycardia"),
    (r"\bs t\b", "st"),
    (r"\ba v\b", "av"),
    (r"\bs a\b", "sa"),  # "S-A block" is "SA block"
    (r"\bq wave\b", "q wave"),
    (r"\bqwave\b", "q wave"),
    (r"\bheart block\b", "atrioventricular block"),  # "1st degree heart block" is first-degree AV block
    (r"\b(\d) to (\d)\b", r"\1 to \2"),
    (r"\btwo to one\b", "2 to 1"),  # "two to one AV block" is 2:1 AV block
    (r"\b(\d):(\d)\b", r"\1 to \2"),
)
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "1": "first", "2": "second", "3": "third",
             "i": "first", "ii": "second", "iii": "third", "one": "first", "two": "second",
             "three": "third"}  # fmt: skip
# Words dropped from every text: articles and hedges do not change which condition a label names.
_DROP = frozenset({"a", "an", "the", "of", "type", "possible", "probable", "suspected", "likely", "consider", ""})
_KEEP_S = ("ss", "us", "is", "ys", "as")
# Words that qualify a finding without naming another: beside them a short form still names the whole label
# ("possible AVNRT", "TdP (confirmed)", "old SAB in lead II"), while "SA block" names a block, not "SA".
_QUALIFIERS = ("acute", "new", "old", "recent", "prior", "previous", "borderline", "marked", "mild", "moderate",
               "severe", "minor", "intermittent", "transient", "frequent", "occasional", "isolated", "recurrent",
               "pattern", "present", "noted", "seen", "confirmed", "on", "ecg", "ekg", "in", "lead", "leads",
               "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")  # fmt: skip
_LIMB_LEADS = frozenset({"i", "ii", "iii"})  # a lead after "lead" ("in lead II"), a degree elsewhere ("AVB II")


def _singular(token: str) -> str:
    if len(token) <= 3 or not token.endswith("s") or token.endswith(_KEEP_S):
        return token
    if token.endswith("xes"):
        return token[:-2]
    return token[:-1]


def _spelling(token: str) -> str:
    # British -> American: ischaemia, hyperkalaemia, repolarisation, oedema.
    token = token.replace("aemi", "emi").replace("isation", "ization").replace("oedem", "edem")
    return _singular(token)


@lru_cache(maxsize=200_000)
def _base_tokens(text: str) -> tuple[str, ...]:
    """Lower case, punctuation to spaces, phrase folds, ordinals, spelling, abbreviations (no vocabulary)."""
    s = text.lower().replace("°", " degree ").replace("’", "").replace("'", "").replace("′", "")
    s = re.sub(r"(\d):(\d)", r"\1 to \2", s)
    s = re.sub(r"[^a-z0-9+]+", " ", s)
    for pattern, repl in _PHRASES:
        s = re.sub(pattern, repl, s)
    raw = _av_block_degrees(_join_letters(s.split()))
    out: list[str] = []
    for i, tok in enumerate(raw):
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        prev = raw[i - 1] if i else ""
        if tok in _ORDINALS and (nxt in ("degree", "deg") or prev in ("type", "mobitz")):
            tok = _ORDINALS[tok] if nxt in ("degree", "deg") else {"first": "1", "second": "2"}.get(_ORDINALS[tok], tok)
        elif tok in ("1st", "2nd", "3rd"):
            tok = _ORDINALS[tok]
        elif tok == "deg":
            tok = "degree"
        tok = _spelling(tok)
        expansion = ABBREVIATIONS.get(tok)
        if expansion is not None:
            out.extend(expansion.split())
        elif tok not in _DROP:
            out.append(tok)
    for i in range(len(out) - 1):  # "l-bbb", "r bbb": the side as a letter
        if out[i] in ("l", "r") and out[i + 1] == "bundle":
            out[i] = "left" if out[i] == "l" else "right"
    return tuple(t for t in out if t not in _DROP)


_DEGREE_NUMERALS = {"i": "first", "ii": "second", "iii": "third", "1": "first", "2": "second", "3": "third"}


def _av_block_degrees(raw: list[str]) -> list[str]:
    """A roman numeral or digit beside "AVB" / "AV block" / "atrioventricular block" is its degree: CPSC 2018's
    "I-AVB", "AVB I", "AV block 1", "1 AVB", "III AVB" (not the "2 to 1" of a conduction ratio)."""
    out = list(raw)
    for i, tok in enumerate(raw):
        if tok not in _DEGREE_NUMERALS:
            continue
        before = raw[max(0, i - 2) : i]
        after = raw[i + 1 : i + 3]
        block_before = before[-1:] == ["avb"] or (
            before[-1:] == ["block"] and before[:1] in (["av"], ["atrioventricular"])
        )
        block_after = after[:1] == ["avb"] or after in (["av", "block"], ["atrioventricular", "block"])
        if (block_after and before[-1:] not in (["type"], ["mobitz"], ["to"])) or (
            block_before and after[:1] != ["to"]
        ):
            out[i] = f"{_DEGREE_NUMERALS[tok]}_degree"
    if not any(t.endswith("_degree") for t in out):
        return out
    # the degree goes before the block's words, as in "first degree atrioventricular block"
    degrees = [t.split("_")[0] for t in out if t.endswith("_degree")]
    rest = [t for t in out if not t.endswith("_degree")]
    start = next((j for j, t in enumerate(rest) if t in ("avb", "av", "atrioventricular")), 0)
    return [*rest[:start], *(w for d in degrees for w in (d, "degree")), *rest[start:]]


def _join_letters(raw: list[str]) -> list[str]:
    """Runs of three or more single letters are one word: "L.B.B.B." is "lbbb" ("a fib" and "s t" are folded
    before this, and two letters such as "a v" are left alone)."""
    out: list[str] = []
    run: list[str] = []
    for tok in [*raw, ""]:
        if len(tok) == 1 and tok.isalpha():
            run.append(tok)
            continue
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if tok:
            out.append(tok)
    return out


def normalize_tokens(
    text: str, vocabulary: frozenset[str] | None = None, targets: frozenset[str] | None = None
) -> tuple[str, ...]:
    """The canonical token sequence of `text`. With a `vocabulary`, an unknown word of 5+ letters is replaced
    by its closest word of `targets` (default: the vocabulary; `difflib` ratio ≥ 0.85, or ≥ 0.8 for swapped
    letters) unless that flips an opposite pair (see `guard`)."""
    tokens = _base_tokens(text)
    if not vocabulary:
        return tokens
    return tuple(_correct(t, vocabulary, vocabulary if targets is None else targets) for t in tokens)


def _correct(token: str, vocabulary: frozenset[str], targets: frozenset[str]) -> str:
    if token in vocabulary or len(token) < 3 or not token.isalpha():
        return token
    if len(token) >= 5:
        return _closest(token, targets)
    # Words of 3-4 letters are corrected only to a word the guard reads ("lef" -> "left", "rigt" -> "right"):
    # short words are too often abbreviations to guess at, but a lost side flips the condition. Only those
    # words are compared (a few dozen, not the whole vocabulary: 10,000 labels stay fast).
    best = _closest(token, _guard_words(targets))
    return best if best != token and polarity(best) else token


def _abbreviation(text: str) -> bool:
    """Whether an alias is written as an abbreviation: one word with two capitals or a digit ("MAT", "ATach",
    "PAVB21", "MoI"), not a word ("Wenckebach", "bigeminy")."""
    word = text.strip()
    return " " not in word and (sum(c.isupper() for c in word) >= 2 or any(c.isdigit() for c in word))


@lru_cache(maxsize=8)
def _guard_words(vocabulary: frozenset[str]) -> frozenset[str]:
    """The words of `vocabulary` that the contradiction guard reads (left, right, first, brady, ...)."""
    return frozenset(w for w in vocabulary if polarity(w))


@lru_cache(maxsize=50_000)
def _closest(token: str, vocabulary: frozenset[str]) -> str:
    if token in MISSPELLINGS:
        return MISSPELLINGS[token]
    close = difflib.get_close_matches(token, vocabulary, n=5, cutoff=0.8)
    scored = sorted(((difflib.SequenceMatcher(None, token, c).ratio(), c) for c in close), reverse=True)
    # Ratio ≥ 0.85, or two swapped letters ("atrail", "bundel"), which score lower on short words.
    scored = [(r, c) for r, c in scored if r >= 0.85 or sorted(c) == sorted(token)]
    if not scored:
        return token
    best_ratio, best = scored[0]
    # "brachycardia" is as close to "tachycardia" as to "bradycardia": never guess across an opposite pair, nor
    # when the other side is one letter further ("hypekalemia": hyperkalemia 0.957, hypokalemia 0.909)
    if any(polarity(c) != polarity(best) for r, c in scored[1:] if r >= best_ratio - 0.05):
        return token
    if polarity(token) and _direction(token) != _direction(best):
        return token
    return best


def _direction(token: str) -> frozenset[tuple[str, str]]:
    """`polarity` with hyper/hypo read as a direction alone: a misspelt stem ("hypertrohy") keys another
    condition than the word it is corrected to, while "hyper" stays "hyper"."""
    return frozenset(("hyper/hypo", v) if g.startswith("hyper/hypo") else (g, v) for g, v in polarity(token))


def snomed_name_table() -> list[tuple[str, str, str]]:
    """(name, abbreviation, SNOMED CT code) rows of `ecglang/resources/snomed_ct_ecg.csv`."""
    path = Path(__file__).resolve().parents[1] / "resources" / "snomed_ct_ecg.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["Dx"].strip(), r["Abbreviation"].strip(), r["SNOMEDCTCode"].strip()) for r in csv.DictReader(fh)]


def _place_in(alias: tuple[str, ...], title: tuple[str, ...]) -> int:
    """0 when `alias` opens `title`, 1 when it is a run of words later in it, 2 when the title lacks it."""
    n = len(alias)
    if not n or title[:n] == alias:
        return 0
    return 1 if any(title[i : i + n] == alias for i in range(1, len(title) - n + 1)) else 2


def _share_of_codes(snippet: Snippet, code: str) -> float:
    """How much of `snippet` is about the normalised `code`: over its namespaces, the mean share of that
    namespace's codes that `code` is (1 for a snippet tagged with it alone, 0 where it lacks it)."""
    shares = [(code in own) / len(own) for own in ({normalize_code(c) for c in cs} for cs in snippet.codes.values())
              if own]  # fmt: skip
    return sum(shares) / len(shares) if shares else 0.0


@dataclass(frozen=True)
class AliasMatch:
    """Snippets that a label names exactly: by code, by a whole alias, or by aliases contained in the label."""

    snippets: tuple[Snippet, ...]
    via: str  # "code", "alias" or "contained"


class AliasIndex:
    """Exact lookups of normalised label text: snippet titles and aliases, snippet codes, and (optionally)
    the SNOMED CT name table, whose names and abbreviations reach the snippets carrying their code."""

    def __init__(self, kb: KnowledgeBase, name_table: bool = True) -> None:
        self.kb = kb
        # key -> snippet id -> (priority, snippet): a title match ranks before an alias, an alias before a
        # snippet reached through the SNOMED CT name table, so the best-named snippets come first. Among
        # aliases, one that opens the snippet's title ("Sinus pause, sinus arrest …") ranks before one the title
        # mentions later, and both before one it does not mention ("Sinus bradycardia: mimics …" lists sinus
        # pause as a mimic): shared aliases used to tie and fall to file order.
        raw: dict[tuple[str, ...], dict[str, tuple[int, Snippet]]] = {}
        # Keys that only short or abbreviation-style texts spell ("SA", "AT", "MATach"): whole labels only
        written: dict[tuple[str, ...], bool] = {}

        def add(text: str, snippets: Iterable[Snippet], priority: int) -> None:
            key = normalize_tokens(text)
            if key:
                short = len(text.strip()) <= 2 or _abbreviation(text)
                written[key] = written.get(key, True) and short
                entry = raw.setdefault(key, {})
                for s in snippets:
                    if s.id not in entry or entry[s.id][0] > priority:
                        entry[s.id] = (priority, s)

        for s in kb:
            add(s.title, [s], 0)
            title = normalize_tokens(s.title)
            for alias in s.aliases:
                add(alias, [s], 1 + _place_in(normalize_tokens(alias), title))
        # Words of names (titles, aliases, text) and coined abbreviations ("MATach", "ATach"): a misspelt word is
        # corrected to a word only ("match" read as CinC's "MATach" gave "football match" MAT criteria)
        words: set[str] = {t for s in kb for text in (s.title, s.text) for t in _base_tokens(text)}
        coined: set[str] = set()
        for s in kb:
            for alias in s.aliases:
                (coined if _abbreviation(alias) else words).update(_base_tokens(alias))
        self.code_names: dict[str, str] = {}  # SNOMED CT code -> name, to read a label typed as a code
        if name_table:
            for name, abbreviation, code in snomed_name_table():
                self.code_names.setdefault(code, name)
                tagged = kb.snippets_for_code("snomed", code)
                if tagged:
                    add(name, tagged, 4)
                    add(abbreviation, tagged, 4)
                    words.update(_base_tokens(name))
                    coined.update(_base_tokens(abbreviation))
        order = {s.id: i for i, s in enumerate(kb)}
        self._aliases = {key: tuple(s for _, s in sorted(v.values(), key=lambda p: (p[0], order[p[1].id])))
                         for key, v in raw.items()}  # fmt: skip
        self._codes: dict[str, dict[str, Snippet]] = {}
        for s in kb:
            for codes in s.codes.values():
                for code in codes:
                    self._codes.setdefault(normalize_code(code), {})[s.id] = s
        self.vocabulary = frozenset(t for key in self._aliases for t in key) | frozenset(
            t for s in kb for t in _base_tokens(s.text)
        )
        # what a misspelling is corrected to: the vocabulary less the tokens that only abbreviations spell
        self.spelling = self.vocabulary - (frozenset(coined) - frozenset(words))
        # Words in many aliases ("block", "wave", "normal") name no condition on their own.
        df: dict[str, int] = {}
        for key in self._aliases:
            for t in set(key):
                df[t] = df.get(t, 0) + 1
        self.generic = frozenset(t for t, n in df.items() if n >= 8) | {"normal", "abnormal", "abnormality"}
        self._short = frozenset(key for key, short in written.items() if short and len(key) == 1)
        self.qualifiers = frozenset(t for w in _QUALIFIERS for t in (*_base_tokens(w), *self.tokens(w)))
        self._max_len = max(len(k) for k in self._aliases)
        # The same words in another order ("AV block first degree", as SNOMED CT and CinC list them): one key per
        # bag of words, kept only where a single alias has it.
        bags: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for key in self._aliases:
            bags.setdefault(tuple(sorted(key)), []).append(key)
        self._bags = {bag: keys[0] for bag, keys in bags.items() if len(keys) == 1}

    def tokens(self, text: str) -> tuple[str, ...]:
        """`normalize_tokens` with this base's vocabulary (misspellings corrected to its words, never to an
        abbreviation)."""
        return normalize_tokens(text, self.vocabulary, self.spelling)

    def match(self, label: str) -> AliasMatch | None:
        """The snippets `label` names: a whole code, a whole alias, else the longest aliases inside it."""
        code = normalize_code(label)
        if code and " " not in code and code in self._codes and normalize_tokens(label) not in self._aliases:
            # The snippets that the code's own words name first ("RAO/RAE": right atrial enlargement, whose
            # abbreviation it holds, before biatrial enlargement, which carries fewer codes), then those most about
            # the code (stable: then file order). In file order "SR" reached a list of normal variants (first-degree
            # AV block, incomplete RBBB, ...) tagged with Chapman's SR before the definition of sinus rhythm, and
            # "UW" hypokalemia before U waves. The words are read without spelling correction: a code is no word.
            named = {s.id for key in self._contained(normalize_tokens(label)) for s in self._aliases[key]}
            tagged = sorted(self._codes[code].values(), key=lambda s: (s.id not in named, -_share_of_codes(s, code)))
            return AliasMatch(tuple(tagged), "code")
        tokens = self.tokens(label)
        if not tokens:
            return None
        exact = self._aliases.get(tokens) or self._aliases.get(self._bags.get(tuple(sorted(tokens)), ()))
        if exact:
            return AliasMatch(exact, "alias")
        if not any(group == "side" for t in tokens for group, _ in polarity(t)):
            # A label naming no side of a sided condition names both: "atrial abnormality" is the left and the
            # right atrial abnormality (retrieval then takes one snippet of each side)
            sides = [self._aliases.get((side, *tokens), ()) for side in ("left", "right")]
            if all(sides):
                return AliasMatch(tuple({s.id: s for side in sides for s in side}.values()), "alias")
        spans = self._contained(tokens)
        if not spans:
            return None
        found: dict[str, Snippet] = {}
        for key in spans:
            found.update((s.id, s) for s in self._aliases[key])
        return AliasMatch(tuple(found.values()), "contained")

    def _single_word_names(self, tokens: Sequence[str], at: int) -> bool:
        """Whether the one-word alias `tokens[at]` names the label it is contained in."""
        word = tokens[at]
        if word in self.generic:
            # "block", "wave": no condition on their own; "bradycardia", "infarction" beside qualifiers only
            # ("acute bradycardia"); "PR" (CinC's pacing rhythm) and "QT" name intervals as often
            return len(word) > 2 and self._qualified(tokens, at)
        if (word,) in self._short or len(word) <= 2:
            return self._qualified(tokens, at)  # "SA" (sinus arrhythmia) in "possible SA", not in "SA block"
        return True

    def _qualified(self, tokens: Sequence[str], at: int) -> bool:
        """Whether every token of the label but `tokens[at]` only qualifies it (see `_QUALIFIERS`)."""
        return all(
            j == at or t in self.qualifiers or (t in _LIMB_LEADS and j > 0 and tokens[j - 1] == "lead")
            for j, t in enumerate(tokens)
        )

    def _contained(self, tokens: Sequence[str]) -> list[tuple[str, ...]]:
        """Aliases found as contiguous runs of `tokens`, longest first, none inside a longer one found."""
        taken = [False] * len(tokens)
        out: list[tuple[str, ...]] = []
        for length in range(min(self._max_len, len(tokens) - 1), 0, -1):
            for start in range(len(tokens) - length + 1):
                key = tuple(tokens[start : start + length])
                if key not in self._aliases or any(taken[start : start + length]):
                    continue
                if len(key) == 1 and not self._single_word_names(tokens, start):
                    continue
                out.append(key)
                taken[start : start + length] = [True] * length
        return out

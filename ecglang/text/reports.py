"""Report text normalisation: PTB-XL German/Swedish device text → English, MIMIC-IV-ECG cleaning,
sentence splitting and translation coverage.

PTB-XL reports are lower-case German (most) or Swedish device statements, or English cardiologist text.
`normalize_report` turns all of them into tidy lower-case English with a phrase table
(`ecglang/resources/ptbxl_phrases.tsv`, columns `source, english, lang, note`): phrases are matched
longest first at each position (so "sonst normales ekg" wins over "ekg"), whole words only, and any
run of whitespace in the text matches the single space of a key. English translations of complete
statements end with "." so that German device text splits into sentences like the English reports.

Edge cases, all deterministic:
- `None`, NaN, whitespace-only text → `""` (builders keep such records and flag `report_empty=True`).
- bytes are decoded as UTF-8, falling back to cp1252 (the encoding of PTB-XL-era device exports), so
  non-UTF-8 input never raises.
- PTB-XL device artefacts: `#` next to a letter is the device's encoding of `ü` ("f#r" → "für");
  plot glyphs such as `ó¬`/`ó½` are removed; the validation note "Edit: ..." that PTB-XL appends
  (SCP codes typed by the validating cardiologist, not report text) is dropped. The original text is
  kept by the builders as `report_original`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from ecglang.errors import ConfigError

SOURCES = ("ptbxl", "english")
PHRASE_TABLE = "ptbxl_phrases.tsv"
ENGLISH_VOCAB = "english_ecg_vocab.txt"

# Characters kept by the tidy step; everything else (device glyphs, control characters) becomes a space.
_ALLOWED_PUNCT = set(".,;:()&/+-%'<>=")
_EDIT_NOTE = re.compile(r"\bedit:.*\Z", re.DOTALL)
# PTB-XL device plot glyphs inside some reports: "ó" followed by a Latin-1 symbol ("¬", "½", "¿", "©").
_DEVICE_GLYPH = re.compile("ó[\u00a0-\u00bf]")
_HASH_UMLAUT = re.compile(r"#(?=[^\W\d_])|(?<=[^\W\d_])#")  # "f#r", "#bergang": '#' encodes 'ü'
_WORD = re.compile(r"\w+")
# Typographic characters of hand-written reports that the tidy step would otherwise delete, changing meaning:
# "V1–V3" (en dash) became "v1 v3", "ST ≥ 0.2 mV" became "st 0.2 mv".
_TYPOGRAPHY = str.maketrans(
    {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
     "\u2265": ">=", "\u2264": "<=", "\u2192": "->"}
)  # fmt: skip


@dataclass(frozen=True)
class Phrase:
    source: str
    english: str
    lang: str
    note: str = ""


def decode_report(raw: str | bytes | None) -> str:
    """Text of a report field: bytes decode as UTF-8, else cp1252; None/NaN → ""."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return ""
    if isinstance(raw, bytes | bytearray):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            # cp1252 maps almost every byte; the remaining five undefined bytes are replaced, not raised.
            return bytes(raw).decode("cp1252", errors="replace")
    return str(raw)


@cache
def load_phrase_table() -> tuple[Phrase, ...]:
    """The PTB-XL phrase table, in file order (the first row of a duplicated key wins)."""
    text = resources.files("ecglang").joinpath("resources", PHRASE_TABLE).read_text(encoding="utf-8")
    lines = text.splitlines()
    header = lines[0].split("\t")
    if header[:3] != ["source", "english", "lang"]:
        raise ConfigError(f"{PHRASE_TABLE}: header must start with source, english, lang; got {header}")
    seen: set[str] = set()
    rows: list[Phrase] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 3 or not cols[0].strip() or not cols[1].strip():
            raise ConfigError(f"{PHRASE_TABLE} line {lineno}: expected source<TAB>english<TAB>lang[<TAB>note]")
        key = " ".join(cols[0].lower().split())
        if key in seen:
            continue
        seen.add(key)
        rows.append(Phrase(key, cols[1].strip(), cols[2].strip(), cols[3].strip() if len(cols) > 3 else ""))
    return tuple(rows)


# German device free text runs findings together after a lead list ("flach v4-v6 normales ekg",
# "r-progression v1-3 st-hebung in v3 t neg in v2"): a finding that follows a lead reference starts a sentence.
_LEAD_LIST_END = re.compile(r"(?<![\w-])(?:ii|iii|avr|avl|avf|v\d)(?:\s*[-,]\s*v?\d)*[\s,]*\Z")
_FINDING_STARTS = ("st elevation", "st depression", "st-t", "t wave", "negative t waves", "no negative t", "poor r")


@cache
def _phrase_regex() -> tuple[re.Pattern[str], dict[str, str], frozenset[str]]:
    table = load_phrase_table()
    mapping = {p.source: p.english for p in table}
    # Longest key first: Python's alternation takes the first alternative that matches at a position.
    keys = sorted(mapping, key=lambda k: (-len(k), k))
    alts = [r"\s+".join(re.escape(w) for w in k.split(" ")) for k in keys]
    # Whole words only; '-' counts as part of a word so "t" never matches inside "st-t".
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(alts) + r")(?![\w-])")
    findings = frozenset(k for k, en in mapping.items() if en.endswith(".") or en.startswith(_FINDING_STARTS))
    return pattern, mapping, findings


def _translate(text: str) -> str:
    pattern, mapping, findings = _phrase_regex()

    def replace(m: re.Match[str]) -> str:
        key = " ".join(m.group(0).split())
        brk = ". " if key in findings and _LEAD_LIST_END.search(text, 0, m.start()) else " "
        return brk + mapping[key] + " "

    return pattern.sub(replace, text)


def _strip_unsupported(text: str) -> str:
    out = []
    for ch in text:
        # isalpha/isdigit rather than isalnum: symbols such as '½' count as alphanumeric in Python.
        if ch.isalpha() or ch.isdigit() or ch.isspace() or ch in _ALLOWED_PUNCT:
            out.append(ch if not ch.isspace() else " ")
        else:
            out.append(" ")
    return "".join(out)


def tidy_text(text: str) -> str:
    """Whitespace and punctuation tidy used by every normaliser (idempotent).

    Collapses whitespace, removes spaces before `. , ; : )` and after `(`, collapses repeated
    punctuation (`..`, `. .`, `,.`, `.,`), strips leading punctuation and ends non-empty text with `.`.
    """
    text = " ".join(text.split())
    text = re.sub(r"\s+([.,;:)])", r"\1", text)
    text = re.sub(r"\(\s+", "(", text)
    text = re.sub(r"([.,;:])(?:\s*\1)+", r"\1", text)  # ".." ". ." ",,"
    text = re.sub(r",\s*\.", ".", text)  # ",." → "."
    text = re.sub(r"[.;:]\s*,", ",", text)  # ". ," → "," (a statement continued by a qualifier)
    text = text.strip(" ,;:.")
    if text and (text[-1].isalnum() or text[-1] == ")"):
        text += "."
    return text


def normalize_report(text: str | bytes | None, source: str = "ptbxl") -> str:
    """English, lower-case, tidy version of a report (deterministic and idempotent).

    Args:
        text: the raw report (str, bytes or None/NaN).
        source: `"ptbxl"` (device artefact repair, "Edit:" note removal, German/Swedish → English via
            the phrase table) or `"english"` (lower-case and tidy only).

    Returns `""` for empty input. Words not in the phrase table pass through unchanged; measure how
    much of a corpus is covered with `translation_coverage`.
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown report source {source!r}; expected one of {list(SOURCES)}")
    raw = unicodedata.normalize("NFC", decode_report(text)).lower().translate(_TYPOGRAPHY)
    if source == "ptbxl":
        raw = _EDIT_NOTE.sub("", raw)
        raw = _DEVICE_GLYPH.sub(" ", raw)
        raw = _HASH_UMLAUT.sub("ü", raw)
    raw = _strip_unsupported(raw)
    if source == "ptbxl":
        raw = _translate(raw)
    return tidy_text(raw)


# ---------------------------------------------------------------------------------------------------
# coverage


@cache
def english_vocabulary() -> frozenset[str]:
    """Known English words: the phrase table's English side plus `resources/english_ecg_vocab.txt`."""
    words: set[str] = set()
    for p in load_phrase_table():
        words.update(w for w in _WORD.findall(p.english.lower()) if not any(c.isdigit() for c in w))
    text = resources.files("ecglang").joinpath("resources", ENGLISH_VOCAB).read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            words.update(_WORD.findall(line))
    return frozenset(words)


def _is_known(word: str, vocab: frozenset[str]) -> bool:
    # Numbers, dates, lead names with numbers (v1, v4) and values with units (225, 2mm) count as known.
    return word in vocab or any(c.isdigit() for c in word)


@dataclass
class CoverageReport:
    """How much of a corpus `normalize_report` turns into known English words."""

    n_texts: int
    n_empty: int
    n_words: int
    n_known: int
    unknown: Counter[str] = field(default_factory=Counter)

    @property
    def coverage(self) -> float:
        """Fraction of word tokens that are known English words or numbers (1.0 for no words)."""
        return self.n_known / self.n_words if self.n_words else 1.0

    def summary(self, top: int = 20) -> str:
        lines = [
            f"reports: {self.n_texts} ({self.n_empty} empty)",
            f"words: {self.n_words}, known or translated: {self.n_known} ({self.coverage:.2%})",
        ]
        if self.unknown:
            lines.append(
                "most frequent unknown words: " + ", ".join(f"{w} ({n})" for w, n in self.unknown.most_common(top))
            )
        return "\n".join(lines)


def translation_coverage(texts: Iterable[str | bytes | None], source: str = "ptbxl") -> CoverageReport:
    """Normalise every text and count word tokens that are known English words or numbers."""
    vocab = english_vocabulary()
    rep = CoverageReport(0, 0, 0, 0)
    for text in texts:
        rep.n_texts += 1
        norm = normalize_report(text, source=source)
        if not norm:
            rep.n_empty += 1
            continue
        for w in _WORD.findall(norm):
            rep.n_words += 1
            if _is_known(w, vocab):
                rep.n_known += 1
            else:
                rep.unknown[w] += 1
    return rep


# ---------------------------------------------------------------------------------------------------
# MIMIC-IV-ECG

_STARS = re.compile(r"\*+")
_REPEATED_PUNCT = re.compile(r"([.,;:!?\-=_~])\1+")
_EKG = re.compile(r"\bekg(s?)\b")


def clean_mimic_report(parts: Sequence[str | bytes | None]) -> str:
    """Join MIMIC-IV-ECG `report_0..report_17` machine statements into one English report.

    Rules, applied in this order:
    1. Parts that are None, NaN or blank are skipped; bytes are decoded (UTF-8, else cp1252).
    2. Each part is lower-cased; runs of `*` (the `***` markers around critical-value flags) are
       removed; a run of the same punctuation character (`..`, `---`, `!!`) becomes one; whitespace
       collapses to single spaces; leading/trailing punctuation of the statement is stripped.
    3. "ekg"/"ekgs" → "ecg"/"ecgs" (whole words), so that text matches the vocabulary of PTB-XL.
    4. Statements that are empty after cleaning are skipped; exact duplicate statements (after
       cleaning) are dropped, keeping the first.
    5. Statements are joined with ". " and the result ends with "." (the style of PTB-XL's English
       reports and of `normalize_report`). No statements → `""`.
    """
    statements: list[str] = []
    seen: set[str] = set()
    for part in parts:
        text = decode_report(part)
        if not text.strip():
            continue
        text = unicodedata.normalize("NFC", text).lower()
        text = _STARS.sub(" ", text)
        text = _REPEATED_PUNCT.sub(r"\1", text)
        text = _EKG.sub(r"ecg\1", text)
        text = " ".join(text.split()).strip(" .,;:!?-=_~")
        if text and text not in seen:
            seen.add(text)
            statements.append(text)
    return tidy_text(". ".join(statements)) if statements else ""


def count_words(text: str) -> int:
    """Number of word tokens (letters/digits runs)."""
    return len(_WORD.findall(text or ""))

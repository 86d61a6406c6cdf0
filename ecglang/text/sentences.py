"""Splitting text into sentences: clinical reports (statements for the beat-level loss) and knowledge snippets
(criteria, through `ecglang.knowledge.base.split_criteria`, which also keeps a bracketed group whole), with one
rule.

Breaks at semicolons, newlines and at periods followed by whitespace or the end, so decimals ("2.5 mm",
"0.5 mV") and abbreviations glued to a word ("intraventr.leitung") stay whole. The period of a common
abbreviation ("e.g.", "i.e.", "dr.", "vs.", "approx.", "ca.", "cf.", "resp.", "fig.") is no break either.
"""

from __future__ import annotations

import re

# Fixed-width look-behinds (one per abbreviation): Python's re has no variable-width look-behind.
_ABBREVIATIONS = ("e.g", "i.e", "dr", "vs", "approx", "ca", "cf", "resp", "fig")
_NOT_ABBREVIATION = "".join(rf"(?<!\b{re.escape(a)})" for a in _ABBREVIATIONS)
_SENTENCE_BREAK = re.compile(rf"[;\n\r]+|{_NOT_ABBREVIATION}\.(?=\s|\Z)", re.IGNORECASE)


def split_sentences(text: str, min_words: int = 0) -> list[str]:
    """Split `text` into sentences.

    Pieces are stripped of surrounding whitespace and of `,` `:` at either end; pieces without any letter or
    digit are dropped. With `min_words=0` (clinical reports: short statements such as "sinus rhythm" are
    sentences too) non-blank text never gives an empty list: if nothing is left, the stripped text itself is the
    one sentence. With `min_words > 0` (knowledge criteria) pieces of fewer whitespace-separated words are
    dropped, and the result may be empty. Blank text gives `[]`.
    """
    if not text or not text.strip():
        return []
    pieces = [p.strip().strip(",:").strip() for p in _SENTENCE_BREAK.split(text)]
    sentences = [p for p in pieces if any(c.isalnum() for c in p)]
    if min_words > 0:
        return [s for s in sentences if len(s.split()) >= min_words]
    return sentences or [text.strip()]


__all__ = ["split_sentences"]

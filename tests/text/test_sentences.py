"""One sentence splitter for clinical reports and knowledge criteria (`ecglang.text.sentences`)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ecglang.text.sentences import split_sentences


def test_split_sentences():
    assert split_sentences("sinus rhythm. left axis deviation. prolonged qt.") == [
        "sinus rhythm",
        "left axis deviation",
        "prolonged qt",
    ]
    assert split_sentences("st depression 1.5 mm; t inversion\nnormal ecg") == [
        "st depression 1.5 mm",
        "t inversion",
        "normal ecg",
    ]
    assert split_sentences("sinus rhythm") == ["sinus rhythm"]
    assert split_sentences("...") == ["..."]
    assert split_sentences("") == []
    assert split_sentences(" \n ") == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_split_sentences_never_empty_for_non_blank_text(text):
    out = split_sentences(text)
    if text.strip():
        assert out
        assert all(s.strip() == s and s for s in out)
    else:
        assert out == []


def test_knowledge_criteria_keep_decimals_and_drop_short_fragments():
    text = "ST depression ≥ 0.5 mm in V5. T inversion > 1 mm in I; QTc 450 ms in men. Ok."
    assert split_sentences(text, min_words=3) == [
        "ST depression ≥ 0.5 mm in V5",
        "T inversion > 1 mm in I",
        "QTc 450 ms in men",
    ]
    # A sentence starting with a number is a sentence too ("2:1 block ..."), and criteria may be empty.
    assert split_sentences("Search the T waves. 2:1 exit block halves the rate.", min_words=3) == [
        "Search the T waves",
        "2:1 exit block halves the rate",
    ]
    assert split_sentences("Ok.", min_words=3) == []


def test_abbreviation_periods_do_not_cut_a_finding():
    text = "dr. smith: st depression, e.g. 1.5 mm in v5-v6, i.e. lateral. no signs of infarction."
    assert split_sentences(text) == [
        "dr. smith: st depression, e.g. 1.5 mm in v5-v6, i.e. lateral",
        "no signs of infarction",
    ]
    assert split_sentences("Rate approx. 80 bpm. Compare vs. prior tracing (Fig. 2).") == [
        "Rate approx. 80 bpm",
        "Compare vs. prior tracing (Fig. 2)",
    ]
    # A word that merely ends like an abbreviation still ends its sentence.
    assert split_sentences("left axis deviation. prolonged qt.") == ["left axis deviation", "prolonged qt"]
    assert split_sentences("repeat if clinically indica. normal.") == ["repeat if clinically indica", "normal"]

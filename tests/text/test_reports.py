"""Report normalisation: PTB-XL phrase table, coverage, MIMIC cleaning, sentence splitting."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecglang.errors import ConfigError
from ecglang.text.reports import (
    clean_mimic_report,
    count_words,
    english_vocabulary,
    load_phrase_table,
    normalize_report,
    tidy_text,
    translation_coverage,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ptbxl_reports(ptbxl_dir: Path) -> list[str]:
    return pd.read_csv(ptbxl_dir / "ptbxl_database.csv", usecols=["report"])["report"].tolist()


# --- phrase table -----------------------------------------------------------------------------------


def test_phrase_table_is_well_formed():
    table = load_phrase_table()
    assert len(table) > 200
    keys = [p.source for p in table]
    assert len(keys) == len(set(keys))
    for p in table:
        assert p.lang in {"de", "sv"}, p
        assert p.source == p.source.lower() and p.source.strip() == p.source
        assert p.english == p.english.lower() and p.english.isascii(), p  # English side: plain lower-case ASCII


def test_no_single_word_key_is_an_english_word():
    """A key that is also English vocabulary would rewrite English reports (e.g. 'in', 'av', 'i')."""
    vocab = english_vocabulary()
    clashes = [p.source for p in load_phrase_table() if " " not in p.source and p.source in vocab]
    assert clashes == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sinusrhythmus linkstyp sonst normales ekg", "sinus rhythm. leftward axis. otherwise normal ecg."),
        ("sinusrhythmus periphere niederspannung", "sinus rhythm. low limb lead voltage."),
        ("sinusrhythmus ueberdrehter linkstyp linksanteriorer hemiblock",
         "sinus rhythm. marked left axis deviation. left anterior fascicular block."),
        ("sinusrhythmus überdrehter linkstyp", "sinus rhythm. marked left axis deviation."),
        ("sinusrhythmus unvollstÄndiger rechtsschenkelblock",
         "sinus rhythm. incomplete right bundle branch block."),
        ("vorhofflimmern lagetyp normal", "atrial fibrillation. normal axis."),
        ("sinusrytm a-v block i vÄnster el-axel", "sinus rhythm. first degree av block. leftward axis."),
        ("sinusrhythmus amplitudenkriterien f#r linkshypertrophie",
         "sinus rhythm. voltage criteria for left ventricular hypertrophy."),
        ("sinusrytm hÖgersidigt skÄnkelblock", "sinus rhythm. right bundle branch block."),
        ("sinus rhythm. normal ecg. Edit: NORM 100, (NORM 100)", "sinus rhythm. normal ecg."),
        ("sinusrhythmus qrs(t) abnormal    septaler infarkt nicht auszuschliessen",
         "sinus rhythm. abnormal qrs(t). septal infarction cannot be excluded."),
    ],
)  # fmt: skip
def test_translations_carry_the_medical_meaning(text, expected):
    assert normalize_report(text) == expected


def test_linkstyp_is_not_left_axis_deviation():
    # Linkstyp is a normal axis position; only 'überdrehter Linkstyp' is a deviation.
    assert "deviation" not in normalize_report("linkstyp")
    assert "deviation" in normalize_report("überdrehter linkstyp")


def test_longest_phrase_wins_and_words_stay_whole():
    # 'a-v block i' is one phrase: the Swedish/English 'i' alone is never translated.
    assert normalize_report("a-v block i") == "first degree av block."
    # 'st-t sänkning' must not be split into 'st-' + a key starting with 't'.
    assert normalize_report("st-t sänkning") == "st-t depression."
    # 'ekg' inside a longer word is not touched; whole word 'ekg' becomes 'ecg'.
    assert normalize_report("pacemaker ekg") == "pacemaker ecg."
    assert normalize_report("ekgx") == "ekgx."


def test_whitespace_runs_inside_phrases_match():
    assert normalize_report("inferiorer   infarkt\n wahrscheinlich    alt") == "inferior infarction, probably old."


def test_device_glyphs_and_hash_umlauts_are_repaired():
    assert normalize_report("r-s #bergang in v ableitungen nach rechts verschoben") == (
        "r-s transition zone in v leads displaced to the right."
    )
    out = normalize_report("sinusrytm   ó¿   ó¬ inferior ischemi  ó½ ó½")
    assert out == "sinus rhythm. inferior ischaemia."


def test_empty_and_undecodable_input():
    assert normalize_report(None) == ""
    assert normalize_report(float("nan")) == ""
    assert normalize_report("   ") == ""
    assert normalize_report("Edit: NORM 100") == ""
    # cp1252 bytes (not valid UTF-8) decode instead of raising: 0xfc is 'ü'.
    assert normalize_report(b"sinusrhythmus \xfcberdrehter linkstyp") == "sinus rhythm. marked left axis deviation."
    assert normalize_report(b"sinus rhythm") == "sinus rhythm."


def test_unknown_source_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown report source"):
        normalize_report("x", source="klingon")


def test_english_source_only_tidies():
    assert normalize_report("Sinus  Rhythm ..  Normal ECG", source="english") == "sinus rhythm. normal ecg."


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=80), st.binary(max_size=80)))
def test_normalize_never_raises_and_is_idempotent(raw):
    out = normalize_report(raw)
    assert isinstance(out, str)
    assert out == out.strip()
    assert normalize_report(out) == out


# --- the real sample --------------------------------------------------------------------------------


def test_sample_translation_coverage_at_least_95_percent(ptbxl_reports):
    assert len(ptbxl_reports) == 353
    cov = translation_coverage(ptbxl_reports)
    assert cov.n_texts == 353
    assert cov.n_empty == 1  # the one blank report of the sample
    assert cov.coverage >= 0.95, cov.summary()
    # No German/Swedish vocabulary of the sample is left untranslated: what remains unknown are
    # words cut off by the 250-character limit of the source text and device glyph debris.
    assert sum(cov.unknown.values()) <= 15, cov.summary()


def test_sample_normalisation_is_idempotent_and_english_reports_unchanged(ptbxl_reports):
    english_marker = re.compile(r"\b(sinus rhythm|requested|sinus arrhythmia\.|fibrillation\.|contraction\(s\))")
    n_english = 0
    for raw in ptbxl_reports:
        out = normalize_report(raw)
        assert normalize_report(out) == out, raw
        assert out == out.lower()
        if english_marker.search(raw.lower()):
            n_english += 1
            expected = tidy_text(" ".join(raw.lower().split("edit:")[0].split()))
            assert out == expected, raw
    assert n_english > 100  # the cardiologist-written English reports of the sample


def test_report_coverage_script(ptbxl_dir):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "report_coverage.py"), "--ptbxl", str(ptbxl_dir),
         "--min", "0.95"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    value = float(re.search(r"coverage (\d\.\d+)", proc.stdout).group(1))
    assert value >= 0.95


def test_coverage_counts_numbers_as_known_and_lists_unknown_words():
    cov = translation_coverage(["sinus rhythm 72 bpm v4", "zzqword sinus"], source="english")
    assert cov.n_words == 7
    assert cov.n_known == 6
    assert cov.unknown == {"zzqword": 1}
    assert math.isclose(cov.coverage, 6 / 7)


# --- MIMIC ------------------------------------------------------------------------------------------


def test_clean_mimic_report_rules():
    parts = [
        "Sinus rhythm",
        None,
        float("nan"),
        "  ",
        "*** Critical Test Result: STEMI ***",
        "Abnormal EKG..",
        "Sinus rhythm",  # exact duplicate after cleaning: dropped
        "--- Pediatric criteria used ---",
        "Borderline  ECG",
    ] + [None] * 9
    assert clean_mimic_report(parts) == (
        "sinus rhythm. critical test result: stemi. abnormal ecg. pediatric criteria used. borderline ecg."
    )


def test_clean_mimic_report_empty_and_bytes():
    assert clean_mimic_report([None] * 18) == ""
    assert clean_mimic_report(["***", "..."]) == ""
    assert clean_mimic_report([b"Normal EKG", b"Sinus rhythm \xe9"]) == "normal ecg. sinus rhythm é."


def test_count_words_counts_letter_and_digit_runs():
    assert count_words("sinus rhythm. normal ecg.") == 4
    assert count_words("normal ecg.") == 2
    assert count_words("") == 0
    assert count_words("st 2.5 mm") == 4


# --- meaning-preserving translation details ---------------------------------------------------------


def test_postposed_german_hedge_stays_with_its_finding():
    # 'möglich' follows the finding it hedges; it must not turn into 'possible' for the next finding.
    out = normalize_report("st & t abnormal, wahrscheinlich infarkt posterior chronisch moeglich kammerhypertrophie")
    assert out == (
        "abnormal st segments and t waves, probably chronic posterior infarction, possible. ventricular hypertrophy."
    )
    assert normalize_report("inferiorer infarkt möglich") == "inferior infarction, possible."


def test_german_abbreviated_hedge_is_translated():
    assert normalize_report("sinusrhythmus v.a. linkshypertrophie") == (
        "sinus rhythm. suspected left ventricular hypertrophy."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t-veraenderungen negativ in iii, flach v4-v6 normales ekg",
         "t wave changes negative in iii, flat v4-v6. normal ecg."),
        ("schlechte r-progression v1-3 st-hebung in v3 t neg in v2",
         "poor r wave progression v1-3. st elevation in v3. negative t waves in v2."),
        ("intraventr.leistungsstÖrung in v1 steillage t-verÄnderung neg in v4,v5, path.ekg",
         "intraventricular conduction disturbance in v1. vertical axis. t wave changes negative in v4,v5. "
         "pathological ecg."),
    ],
)  # fmt: skip
def test_a_finding_after_a_lead_list_starts_a_sentence(text, expected):
    # Device free text has no punctuation between findings; without the break the sentence split (beat-level
    # loss) would merge 'flat v4-v6' with 'normal ecg'.
    assert normalize_report(text) == expected
    assert normalize_report(expected) == expected


def test_typographic_dashes_and_comparisons_survive():
    text = "SINUS Rhythm – ST Elevation ≥ 0.2 mV in V1–V3, QTc ≤ 440 ms. Axis −30°."
    assert normalize_report(text, source="english") == (
        "sinus rhythm - st elevation >= 0.2 mv in v1-v3, qtc <= 440 ms. axis -30."
    )
    assert normalize_report("Low voltage (< 500 µV) in limb leads", source="english") == (
        "low voltage (< 500 µv) in limb leads."
    )

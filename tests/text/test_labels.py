"""Report-derived labels (`ecglang.text.labels`): what a report states, not what it negates or hedges."""

from __future__ import annotations

import numpy as np
import pytest

from ecglang.errors import ConfigError
from ecglang.text.labels import report_label_matrix, report_label_names, report_labels
from ecglang.text.reports import normalize_report


@pytest.mark.parametrize(
    "report",
    [
        "sinus rhythm. leftward axis. otherwise normal ecg.",  # PTB-XL Linkstyp / Swedish vänster el-axel
        normalize_report("sinusrhythmus linkstyp sonst normales ekg"),
        normalize_report("sinusrytm vänster el-axel eljest normalt ekg"),
        "sinus rhythm. rightward axis.",
        normalize_report("sinusrhythmus rechtstyp sonst normales ekg"),
    ],
)
def test_leftward_or_rightward_axis_is_not_axis_deviation(report):
    labels = report_labels(report)
    assert "sinus rhythm" in labels
    assert "left axis deviation" not in labels and "right axis deviation" not in labels


def test_axis_deviation_is_still_read():
    assert "left axis deviation" in report_labels("sinus rhythm. left axis deviation.")
    assert "left axis deviation" in report_labels(normalize_report("sinusrhythmus überdrehter linkstyp"))
    assert "right axis deviation" in report_labels(normalize_report("sinusrhythmus ueberdrehter rechtstyp"))


def test_label_matrix_and_unknown_label():
    m = report_label_matrix(["sinus rhythm. normal ecg.", ""], names=["normal ecg", "atrial fibrillation"])
    assert m.dtype == np.int8
    assert m.tolist() == [[1, 0], [0, 0]]
    assert report_label_matrix([]).shape == (0, len(report_label_names()))
    with pytest.raises(ConfigError, match="unknown report label"):
        report_label_matrix(["x"], names=["not a label"])


@pytest.mark.parametrize(
    ("report", "label"),
    [
        ("sinus rhythm. possible old inferior myocardial infarction.", "myocardial infarction"),
        (normalize_report("sinusrhythmus qrs(t) abnormal anterolateraler infarkt möglich"), "myocardial infarction"),
        ("chronic posterior infarction, possible.", "myocardial infarction"),  # German word order: hedge last
        ("sinus rhythm. inferior infarction should be considered.", "myocardial infarction"),
        ("this may be normal but inferior myocardial ischaemia cannot be entirely excluded.", "ischaemia"),
        ("sinus rhythm. cannot rule out anterior infarct.", "myocardial infarction"),
        ("left bundle branch block, this is most commonly due to ischaemic heart disease.", "ischaemia"),
        ("suspected left ventricular hypertrophy.", "left ventricular hypertrophy"),
        ("sinus rhythm. no signs of infarction.", "myocardial infarction"),
        (normalize_report("sinusrhythmus septaler infarkt nicht auszuschliessen"), "myocardial infarction"),
    ],
)
def test_hedged_or_negated_findings_are_not_positive(report, label):
    labels = report_labels(report)
    assert label not in labels, (report, labels)


@pytest.mark.parametrize(
    ("report", "label"),
    [
        # A negation or low-confidence hedge reaches only its own clause.
        ("sinus rhythm. no st elevation, t wave inversion in v1-v3.", "st-t changes"),
        ("possible left atrial enlargement, left axis deviation.", "left axis deviation"),
        # Probable findings and hedges about something else stay positive.
        ("inferior infarction, probably old.", "myocardial infarction"),
        ("q waves in ii, iii, avf consistent with old inferior myocardial infarction.", "myocardial infarction"),
        ("st segments are depressed in i, avl. this may be due to lv strain or ischaemia.", "ischaemia"),
        ("sinus rhythm. probable left ventricular hypertrophy.", "left ventricular hypertrophy"),
        # A trailing "possible" hedges only its own clause.
        ("abnormal st segments and t waves, probably chronic posterior infarction, possible.", "st-t changes"),
    ],
)
def test_stated_findings_are_positive(report, label):
    labels = report_labels(report)
    assert label in labels, (report, labels)


@pytest.mark.parametrize(
    ("report", "label"),
    [
        (normalize_report("sinusrytm låga qrs amplituder i extremitetsavledningarna"), "low voltage"),
        ("sinus rhythm. low qrs voltages in limb leads.", "low voltage"),
        ("sinus rhythm. qtc 480 ms - prolonged.", "prolonged qt"),
        ("sinus rhythm. anterior st elevation. acute mi / stemi.", "myocardial infarction"),
    ],
)
def test_mimic_and_swedish_wordings_are_read(report, label):
    assert label in report_labels(report)


def test_a_qt_that_is_not_prolonged_is_not_prolonged_qt():
    assert report_labels("sinus rhythm. qt not prolonged.") == ["sinus rhythm"]
    assert report_labels("sinus rhythm. qtc 420 ms, not prolonged.") == ["sinus rhythm"]

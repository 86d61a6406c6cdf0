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

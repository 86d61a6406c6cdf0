"""`plot_ecg` and `plot_explanation` given inputs they cannot draw (audit 17, findings 6-8): typed errors that say
what was wrong, and no figure left open behind a failure (a batch script that catches the error and goes on
piled up one open figure per failure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ecglang.beats.config import BeatConfig
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.modeling import load_model
from ecglang.errors import ConfigError
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.report.plotting import plot_ecg, plot_explanation
from ecglang.scores.classifier import ZeroShotClassifier

matplotlib.use("Agg")

ALL_LEADS = ", ".join(CANONICAL_LEADS)


@pytest.fixture(autouse=True)
def no_open_figures():
    """Each test starts with no open figure, and leaves none for the next."""
    plt.close("all")
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def record(ptbxl_dir: Path):
    return EcgProcessor().process(load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr.hea"))


@pytest.fixture(scope="module")
def explanation(ptbxl_dir: Path, one_torch_thread):
    clf = ZeroShotClassifier(load_model(None, "cpu"), knowledge="off")
    result = clf(ptbxl_dir / "records500" / "00000" / "00001_hr", labels=["sinus rhythm"], explain=True,
                 keep_signals=1, progress=False)  # fmt: skip
    return result.explanations["00001_hr"]["sinus rhythm"]


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A figure path whose folder cannot be made (a file of that name is in the way): the writing fails."""
    (tmp_path / "figs").write_text("not a folder")
    return tmp_path / "figs" / "figure.png"


# ------------------------------------------------------------------------------------------- weights (finding 7)
@pytest.mark.parametrize("extra", [-3, 1], ids=["short", "long"])
def test_beat_weights_must_be_one_per_beat(record, tmp_path: Path, extra: int) -> None:
    # Short: an untyped IndexError mid-drawing. Long: accepted, and the stray values set the colour scale.
    ecg, tokens = record
    n = tokens.n_beats
    target = tmp_path / "ecg.png"
    with pytest.raises(ConfigError) as caught:
        plot_ecg(ecg, tokens, beat_weights=np.ones(n + extra), out=target)
    assert str(caught.value) == f"beat_weights has {n + extra} values, expected {n} (one per beat)"
    assert plt.get_fignums() == [] and not target.exists()


@pytest.mark.parametrize("length", [2, 13])
def test_lead_weights_must_be_one_per_lead(record, tmp_path: Path, length: int) -> None:
    ecg, tokens = record
    target = tmp_path / "ecg.png"
    with pytest.raises(ConfigError) as caught:
        plot_ecg(ecg, tokens, lead_weights=np.ones(length), out=target)
    assert str(caught.value) == f"lead_weights has {length} values, expected 12 (one per lead: {ALL_LEADS})"
    assert plt.get_fignums() == [] and not target.exists()


def test_weights_of_the_wrong_shape_name_the_shape(record) -> None:
    ecg, tokens = record
    with pytest.raises(ConfigError, match=r"^lead_weights has shape \(1, 12\), expected 12 "):
        plot_ecg(ecg, tokens, lead_weights=np.ones((1, 12)))
    assert plt.get_fignums() == []


def test_beat_weights_without_beats_are_refused(record) -> None:
    # There is nothing to weight: the weights were dropped without a word.
    ecg, tokens = record
    with pytest.raises(ConfigError, match="beat_weights given without beats"):
        plot_ecg(ecg, None, beat_weights=np.ones(tokens.n_beats))
    assert plt.get_fignums() == []


def test_weights_that_fit_are_still_drawn(record, tmp_path: Path) -> None:
    ecg, tokens = record
    target = tmp_path / "ecg.png"
    plot_ecg(ecg, tokens, beat_weights=np.linspace(-1, 1, tokens.n_beats), lead_weights=np.ones(12), out=target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plt.get_fignums() == []


@pytest.mark.parametrize("weights", [False, True], ids=["bare", "with-weights"])
def test_plot_ecg_of_an_explanation_without_kept_signal_says_to_keep_it(explanation, weights: bool) -> None:
    # `explain=True` alone keeps no signal: `plot_ecg(exp.signal, exp.tokens)` was an AttributeError on None, and
    # with the weights a ConfigError asking for "the beat tokens the weights are for", not how to get them.
    exp = dataclasses.replace(explanation, signal=None, tokens=None)
    kwargs = {"beat_weights": exp.beat_contributions, "lead_weights": exp.lead_contributions} if weights else {}
    with pytest.raises(ConfigError, match=r"no record to draw.*keep_signals=N.*explain=True"):
        plot_ecg(exp.signal, exp.tokens, **kwargs)
    assert plt.get_fignums() == []


# --------------------------------------------------------------------------------- open figures (finding 6)
def test_plot_ecg_closes_its_figure_when_writing_fails(record, blocked: Path) -> None:
    ecg, tokens = record
    for _ in range(3):  # as a batch script that reports the error and goes on
        with pytest.raises(OSError):
            plot_ecg(ecg, tokens, out=blocked)
    assert plt.get_fignums() == []


def test_plot_explanation_closes_its_figure_when_writing_fails(explanation, blocked: Path) -> None:
    for _ in range(3):
        with pytest.raises(OSError):
            plot_explanation(explanation, out=blocked)
    assert plt.get_fignums() == []


def test_wrong_beat_config_leaves_no_figure(explanation, tmp_path: Path) -> None:
    target = tmp_path / "explain.png"
    with pytest.raises(ConfigError, match=r"but beat_config\.beat_len is 64"):
        plot_explanation(explanation, beat_config=BeatConfig(beat_len=64), out=target)
    assert plt.get_fignums() == [] and not target.exists()


def test_a_figure_without_out_is_still_returned_open(explanation) -> None:
    fig = plot_explanation(explanation)
    assert plt.get_fignums() == [fig.number]


# -------------------------------------------------------------------------------------- lead names (finding 8)
@pytest.mark.parametrize(("lead", "name"), [("V1", "V1"), ("v1", "V1"), ("avr", "aVR"), ("MLII", "II")])
def test_lead_is_named_as_the_readers_name_it(explanation, lead: str, name: str) -> None:
    fig = plot_explanation(explanation, lead=lead)
    beat_ax = next(a for a in fig.axes if a.get_title().startswith("input beat"))
    assert f"(lead {name})" in beat_ax.get_title()
    best = int(np.argmax(explanation.beat_contributions))  # no prototype index: the beat that contributed most
    trace = explanation.tokens.beats[best, CANONICAL_LEADS.index(name)]
    assert np.array_equal(beat_ax.lines[0].get_ydata(), trace)


@pytest.mark.parametrize("lead", ["X", "V7", "lead 13"])
def test_unknown_lead_is_a_config_error_listing_the_leads(explanation, tmp_path: Path, lead: str) -> None:
    target = tmp_path / "explain.png"
    with pytest.raises(ConfigError) as caught:
        plot_explanation(explanation, lead=lead, out=target)
    assert str(caught.value) == f"unknown lead {lead!r}: use one of the 12 leads {ALL_LEADS}"
    assert plt.get_fignums() == [] and not target.exists()

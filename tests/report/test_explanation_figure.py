"""The explanation figure (issue 17): input beat beside its nearest prototypes, attention beside contributions."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes

from ecglang.embeddings.prototypes import build_prototypes, find_reports, read_reports
from ecglang.encoders.modeling import load_model
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.report.plotting import plot_explanation
from ecglang.scores.classifier import ZeroShotClassifier

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def result_and_index(ptbxl_dir: Path, one_torch_thread, tmp_path_factory):
    model = load_model(None, "cpu")
    folder = ptbxl_dir / "records500" / "00000"
    out = tmp_path_factory.mktemp("fig-protos") / "index"
    index, _ = build_prototypes(model, [folder / r for r in ("00002_hr", "00003_hr", "00004_hr")], out,
                                reports=read_reports(find_reports(folder)), progress=False)  # fmt: skip
    clf = ZeroShotClassifier(model, knowledge="off", prototypes=index)
    return clf(folder / "00001_hr", labels="ptbxl_super", keep_signals=1, progress=False), index


def test_plot_writes_a_png(result_and_index, tmp_path) -> None:
    result, index = result_and_index
    exp = result.explanations["00001_hr"][result.scores.loc["00001_hr"].idxmax()]
    target = tmp_path / "figs" / "explain.png"
    fig = plot_explanation(exp, index, out=target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 10_000
    titles = [ax.get_title() for ax in fig.axes]
    assert any(t.startswith("input beat") and "lead II" in t for t in titles)
    assert sum(m.record_id in t for m in exp.prototypes for t in titles) == len(exp.prototypes)


def test_plot_without_windows_or_attention(result_and_index, tmp_path) -> None:
    result, _ = result_and_index
    exp = result.explanations["00001_hr"]["NORM"]
    exp.beat_attention = None  # as for an ssm mixer
    target = tmp_path / "bare.png"
    plot_explanation(exp, None, out=target)
    assert target.stat().st_size > 10_000


@pytest.fixture(scope="module")
def fast_without_lead_ii(ptbxl_dir: Path, result_and_index):
    """A real record played 4× faster (00001_hr's 10 s as 2.5 s: 37 beats in the 10 s window, ~260 bpm) with
    lead II left out: many beats and a missing lead, the two cases the review found unreadable."""
    _, index = result_and_index
    ecg = load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr.hea")
    keep = [i for i, name in enumerate(CANONICAL_LEADS) if name != "II"]
    signal = np.tile(np.asarray(ecg.signal, np.float32), 4)[keep]
    clf = ZeroShotClassifier(load_model(None, "cpu"), knowledge="off", prototypes=index)
    result = clf(signal, fs=4 * ecg.fs, leads=[CANONICAL_LEADS[i] for i in keep], labels=["sinus rhythm"],
                 keep_signals=1, progress=False)  # fmt: skip
    return next(iter(result.explanations.values()))["sinus rhythm"]


def bar_panels(fig) -> list[tuple[Axes, Axes]]:
    """(contribution axes, its attention twin) of the lead and beat panels."""
    panels = [a for a in fig.axes if a.get_title().endswith("contribution and attention")]
    twins = [next(t for t in fig.axes if t is not a and t.bbox.bounds == a.bbox.bounds) for a in panels]
    return list(zip(panels, twins, strict=True))


def test_bar_panels_put_both_zeros_at_one_height(fast_without_lead_ii) -> None:
    exp = fast_without_lead_ii
    assert np.nanmax(exp.lead_contributions) < 0 or np.nanmin(exp.beat_contributions) < 0  # the case that showed it
    fig = plot_explanation(exp)
    fig.canvas.draw()
    for ax, twin in bar_panels(fig):
        zero, twin_zero = ax.transData.transform((0, 0))[1], twin.transData.transform((0, 0))[1]
        assert zero == pytest.approx(twin_zero, abs=0.5), ax.get_title()
        low, high = ax.get_ylim()
        assert low <= 0 <= high


def test_bar_panels_readable_with_many_beats_and_a_missing_lead(fast_without_lead_ii) -> None:
    exp = fast_without_lead_ii
    assert len(exp.beat_contributions) > 30 and np.isnan(exp.lead_contributions[CANONICAL_LEADS.index("II")])
    fig = plot_explanation(exp)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    leads, beats = (ax for ax, _ in bar_panels(fig))
    labels = [t for t in beats.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert all(not a.overlaps(b) for a, b in pairwise(boxes)), "beat numbers run together"
    # the legend is not drawn over any bar
    for ax in (leads, beats):
        legend = ax.get_legend().get_window_extent(renderer)
        assert not any(legend.overlaps(p.get_window_extent(renderer)) for p in ax.patches if p.get_height())
    # lead II is said to be missing, not drawn as a zero contribution
    marks = [t for t in leads.texts if t.get_text() == "missing"]
    assert [round(t.get_position()[0]) for t in marks] == [CANONICAL_LEADS.index("II")]


def test_beats_are_drawn_against_time_from_r(result_and_index) -> None:
    # The beat panels had a bare sample axis (0-95): neither the window's duration nor where R falls was shown.
    result, index = result_and_index
    exp = result.explanations["00001_hr"][result.scores.loc["00001_hr"].idxmax()]
    fig = plot_explanation(exp, index)
    beat_ax = next(a for a in fig.axes if a.get_title().startswith("input beat"))
    assert "ms" in beat_ax.get_xlabel() and beat_ax.get_ylabel()
    x, y = beat_ax.lines[0].get_data()
    assert x[0] == pytest.approx(-250, abs=8) and x[-1] == pytest.approx(450, abs=8)
    assert abs(x[int(np.argmax(np.abs(y)))]) < 60  # the R peak of a real lead II beat sits at 0 ms
    for match in exp.prototypes:
        pax = next(a for a in fig.axes if a.get_title().startswith(f"{match.record_id} beat {match.beat_index}"))
        assert np.array_equal(pax.lines[0].get_xdata(), x)


def test_prototype_without_the_drawn_lead_says_so(ptbxl_dir: Path, one_torch_thread, tmp_path) -> None:
    # A reference record without lead II stores zeros there: drawn, they looked like a flat beat.
    ref = load_ecg(ptbxl_dir / "records500" / "00000" / "00002_hr.hea")
    mask = np.asarray(ref.lead_mask, bool).copy()
    mask[CANONICAL_LEADS.index("II")] = False
    ref = Ecg(signal=ref.signal, fs=ref.fs, lead_mask=mask, record_id="00002_hr", metadata=dict(ref.metadata))
    model = load_model(None, "cpu")
    index, _ = build_prototypes(model, [ref], tmp_path / "no-ii", progress=False)
    clf = ZeroShotClassifier(model, knowledge="off", prototypes=index)
    exp = clf(ptbxl_dir / "records500" / "00000" / "00001_hr", labels=["sinus rhythm"], keep_signals=1,
              progress=False).explanations["00001_hr"]["sinus rhythm"]  # fmt: skip
    fig = plot_explanation(exp, index)
    panels = [a for a in fig.axes if a.get_title().startswith("00002_hr")]
    assert panels and all(not a.lines and a.texts[0].get_text() == "lead II not recorded" for a in panels)


@pytest.fixture(scope="module")
def explained_without_prototypes(ptbxl_dir: Path, one_torch_thread):
    """The README's call (`explain=True`, no prototype index) on two records, keeping the first one's beats."""
    clf = ZeroShotClassifier(load_model(None, "cpu"), knowledge="off")
    folder = ptbxl_dir / "records500" / "00000"
    result = clf([folder / "00001_hr", folder / "00002_hr"], labels=["sinus rhythm"], explain=True, keep_signals=1,
                 progress=False)  # fmt: skip
    return result.explanations["00001_hr"]["sinus rhythm"], result.explanations["00002_hr"]["sinus rhythm"]


def input_beat_panel(fig) -> Axes:
    return next(a for a in fig.axes if a.get_title().startswith("input beat"))


def test_without_prototypes_the_beat_that_contributed_most_is_drawn(explained_without_prototypes) -> None:
    # Without a prototype index the panel drew beat 0, whatever the beat contributions said.
    exp, _ = explained_without_prototypes
    best = int(np.argmax(exp.beat_contributions))
    assert exp.prototype_beat is None and best != 0  # the case that showed it: beat 10 of 11 drives the score
    panel = input_beat_panel(plot_explanation(exp))
    ii = CANONICAL_LEADS.index("II")
    np.testing.assert_array_equal(panel.lines[0].get_ydata(), exp.tokens.beats[best, ii])
    title = panel.get_title()
    assert title.startswith(f"input beat {best} of {len(exp.beat_contributions)} (lead II)")
    assert f"largest contribution (cos {exp.beat_contributions[best]:.3f})" in title


def test_with_prototypes_the_matched_beat_is_drawn_and_named(result_and_index) -> None:
    result, index = result_and_index
    exp = result.explanations["00001_hr"][result.scores.loc["00001_hr"].idxmax()]
    assert exp.prototype_beat == int(np.argmax(exp.beat_contributions))  # the beat the prototypes were matched to
    panel = input_beat_panel(plot_explanation(exp, index))
    np.testing.assert_array_equal(panel.lines[0].get_ydata(), exp.tokens.beats[exp.prototype_beat, 1])  # lead II
    title = panel.get_title()
    assert title.startswith(f"input beat {exp.prototype_beat} of ") and "largest contribution" in title


def test_explanation_without_kept_beats_says_to_pass_keep_signals(explained_without_prototypes, caplog) -> None:
    # The README's `explain=True` keeps no beats (keep_signals=0): the input-beat panel was left empty, titled
    # "input beat 0", with no word. The contribution and attention panels are still drawn.
    _, exp = explained_without_prototypes
    assert exp.tokens is None and exp.signal is None
    with caplog.at_level("WARNING", logger="ecglang.report.plotting"):
        fig = plot_explanation(exp)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "00002_hr" in caplog.text and "keep_signals=" in caplog.text and "explain=True" in caplog.text
    panel = input_beat_panel(fig)
    assert not panel.lines and "not kept" in panel.get_title()
    assert "keep_signals=" in " ".join(t.get_text() for t in panel.texts)
    assert len(bar_panels(fig)) == 2 and all(ax.patches for ax, _ in bar_panels(fig))

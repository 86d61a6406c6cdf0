"""`plot_ecg` on a real PTB-XL record: the beat shading and lead colours keep the sign of the contributions."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.patches import Rectangle

from ecglang.beats.config import BeatConfig
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.record.io import load_ecg
from ecglang.report.plotting import plot_ecg

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def record(ptbxl_dir: Path):
    return EcgProcessor().process(load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr.hea"))


def beat_spans(fig) -> list[Rectangle]:
    """The beat windows of the first lead's row, in beat order."""
    spans = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    return sorted(spans, key=lambda p: p.get_x())


def test_negative_contributions_are_not_drawn_as_support(record) -> None:
    # Every beat dissimilar to the label (as on the tachycardia of the review): the old min-max scale drew the
    # least negative beat darkest red, as if it drove the score.
    ecg, tokens = record
    n = tokens.n_beats
    weights = -np.linspace(0.01, 0.2, n)
    fig = plot_ecg(ecg, tokens, beat_weights=weights, lead_weights=-np.linspace(0.01, 0.1, 12))
    spans = beat_spans(fig)
    assert len(spans) == n
    blue, red = np.array(to_rgb("tab:blue")), np.array(to_rgb("tab:red"))
    assert all(np.allclose(p.get_facecolor()[:3], blue) for p in spans)
    assert not any(np.allclose(p.get_facecolor()[:3], red) for p in spans)
    # the most dissimilar beat is the most visible one, the least dissimilar the faintest
    alphas = [p.get_alpha() for p in spans]
    assert int(np.argmax(alphas)) == n - 1 and int(np.argmin(alphas)) == 0
    label = fig.axes[0].yaxis.label
    red_part, _, blue_part = label.get_color()[:3]
    assert blue_part > red_part, "a lead with a negative contribution must not be coloured red"


def test_mixed_signs_keep_zero_at_zero(record) -> None:
    ecg, tokens = record
    n = tokens.n_beats
    weights = np.zeros(n)
    weights[0], weights[1] = 0.3, -0.3
    spans = beat_spans(plot_ecg(ecg, tokens, beat_weights=weights))
    red, blue = np.array(to_rgb("tab:red")), np.array(to_rgb("tab:blue"))
    assert np.allclose(spans[0].get_facecolor()[:3], red) and np.allclose(spans[1].get_facecolor()[:3], blue)
    assert spans[0].get_alpha() == pytest.approx(spans[1].get_alpha())
    # a zero contribution is drawn as faint as possible, not as the middle of a min-max scale
    assert spans[2].get_alpha() == pytest.approx(0.05)


def test_beat_windows_are_drawn_where_the_beats_were_cut(ptbxl_dir: Path) -> None:
    # BeatTokens do not carry their settings, and plot_ecg drew 0.25 s / 0.45 s whatever the model cut.
    cfg = BeatConfig(pre_s=0.1, post_s=0.6)
    ecg, tokens = EcgProcessor(beats=cfg).process(load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr.hea"))
    spans = beat_spans(plot_ecg(ecg, tokens, beat_config=cfg))
    r = np.asarray(tokens.rpeaks[: tokens.n_beats]) / tokens.fs
    end = (ecg.n_samples - 1) / ecg.fs  # the last sample drawn: windows are clipped to the signal
    assert np.allclose([p.get_x() for p in spans], np.maximum(r - 0.1, 0.0))
    assert np.allclose([p.get_x() + p.get_width() for p in spans], np.minimum(r + 0.6, end))
    assert np.isclose(spans[len(spans) // 2].get_width(), 0.7)  # a beat inside: the whole window


def test_beat_windows_stay_inside_the_drawn_signal(record) -> None:
    """`inspect --plot --seconds 4` shaded the last beat's window to about 4.4 s, past the end of the 4 s drawn
    (windows are cut from padded signal): each span is clipped to [0, duration], so the x-axis is the signal's."""
    ecg, tokens = record
    seconds = float(tokens.rpeaks[tokens.n_beats - 1] / tokens.fs) + 0.1  # the last R 0.1 s before the end
    view = ecg.replace(signal=ecg.signal[:, : round(seconds * ecg.fs)])
    fig = plot_ecg(view, tokens)
    spans = beat_spans(fig)
    assert len(spans) == tokens.n_beats
    assert min(p.get_x() for p in spans) >= 0.0
    assert max(p.get_x() + p.get_width() for p in spans) <= (view.n_samples - 1) / view.fs + 1e-9
    assert fig.axes[0].get_xlim() == plot_ecg(view).axes[0].get_xlim()  # the same axis as the signal alone

"""The explanation figure (issue 17): input beat beside its nearest prototypes, attention beside contributions."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from ecglang.embeddings.prototypes import build_prototypes, find_reports, read_reports
from ecglang.encoders.modeling import load_model
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

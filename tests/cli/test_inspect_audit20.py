"""CLI audit 20, findings 1 and 9, on the command line.

1: `--fs`/`--leads` ("for .npy input") replaced the rate and lead names stored in every `.npz` of the call: a
1000 Hz file was read at 500 Hz (`inspect`: "duration 20.0 s", half the heart rate; `zero-shot`: the tachycardia
ranked second) without a word. They now fill in only what a file lacks; a stored value that differs fails that
record, naming both values and the file.
9: a signal in µV went through `inspect` with `quality ok`, and its plot had no unit on the y-axis (a "1.5 V" QRS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.cli.main import main as cli
from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.preprocess import PreprocessConfig, preprocess

pytestmark = pytest.mark.shared_data

LEADS = ",".join(CANONICAL_LEADS)


@pytest.fixture
def real(ptbxl_dir: Path) -> Path:
    return ptbxl_dir / "records500" / "00000" / "00001_hr.hea"


def _npz(path: Path, signal: np.ndarray, fs: float) -> Path:
    np.savez(path, signal=signal, fs=fs, leads=np.array(CANONICAL_LEADS))
    return path


def test_inspect_refuses_an_fs_that_differs_from_the_rate_an_npz_stores(real: Path, tmp_path: Path, capsys) -> None:
    path = _npz(tmp_path / "rec1000.npz", load_ecg(real).signal, 1000.0)
    assert cli(["inspect", str(path), "--fs", "500"]) == 1  # "duration 20.0 s" and rc 0 before
    captured = capsys.readouterr()
    assert "duration" not in captured.out
    assert "rec1000.npz" in captured.err and "1000" in captured.err and "500" in captured.err, captured.err
    assert cli(["inspect", str(path), "--fs", "1000"]) == 0  # the value the file stores
    assert "duration  5.0 s" in capsys.readouterr().out


def test_zero_shot_fails_only_the_npz_whose_stored_rate_differs(
    real: Path, tmp_path: Path, model_dir: Path, capsys
) -> None:
    """A bare .npy beside stored-rate .npz files and a WFDB record: the flags are for the .npy."""
    signal = load_ecg(real).signal
    folder = tmp_path / "recs"
    folder.mkdir()
    np.save(folder / "bare.npy", signal)
    wrong = _npz(folder / "rec1000.npz", signal, 1000.0)
    _npz(folder / "same.npz", signal, 500.0)
    out = tmp_path / "s.csv"
    argv = ["zero-shot", str(folder), str(real), "--fs", "500", "--leads", LEADS, "--labels", "sinus rhythm",
            "--model", str(model_dir), "--knowledge", "off", "--no-progress", "--quiet", "--out", str(out)]  # fmt: skip
    assert cli(argv) == 1  # rc 0 before: rec1000 scored as a 20 s record
    assert sorted(pd.read_csv(out)["record"]) == ["00001_hr", "bare", "same"]
    failed = pd.read_csv(out.with_suffix(".failures.csv"))
    assert failed["path"].tolist() == [str(wrong)], failed
    assert "1000" in failed["error"][0] and "500" in failed["error"][0], failed["error"][0]


def test_inspect_flags_a_signal_in_microvolts(real: Path, tmp_path: Path, capsys) -> None:
    signal = load_ecg(real).signal
    assert cli(["inspect", str(_npz(tmp_path / "mv.npz", signal, 500.0))]) == 0
    assert "quality   ok" in capsys.readouterr().out  # a real record in mV: no flag
    assert cli(["inspect", str(_npz(tmp_path / "uv.npz", signal * 1000, 500.0))]) == 0
    quality = [line for line in capsys.readouterr().out.splitlines() if line.startswith("quality")]
    assert len(quality) == 1 and "looks like µV" in quality[0] and "divide by 1000" in quality[0], quality


def test_the_microvolt_flag_leaves_the_model_input_as_it_was(real: Path) -> None:
    """The flag is a note: the default (robust z-score) input of a µV record is that of its mV original."""
    ecg = load_ecg(real)
    in_uv = ecg.replace(signal=ecg.signal * 1000)
    clean, clean_uv = preprocess(ecg), preprocess(in_uv)
    assert "unit_warning" not in clean.metadata and "looks like µV" in clean_uv.metadata["unit_warning"]
    np.testing.assert_allclose(clean_uv.signal, clean.signal, atol=1e-3)
    assert "looks like µV" in preprocess(in_uv, PreprocessConfig(normalize="mm")).metadata["unit_warning"]


def test_the_inspect_plot_names_its_unit(real: Path, tmp_path: Path, monkeypatch) -> None:
    import ecglang.report.plotting as plotting

    drawn = []
    original = plotting.plot_ecg

    def spy(*args, **kwargs):
        drawn.append(fig := original(*args, **kwargs))
        return fig

    monkeypatch.setattr(plotting, "plot_ecg", spy)
    assert cli(["inspect", str(real), "--plot", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").is_file() and len(drawn) == 1
    labels = [t.get_text() for t in drawn[0].texts] + [ax.get_ylabel() for ax in drawn[0].axes]
    assert any("mV" in label for label in labels), labels

"""CLI audit 20, findings 4 and 8, in `ecglang data build physionet FOLDER`.

4: the builder kept only `.hea`/`.dat`/`.mat` files: the `.npz`/`.npy` records of a folder (which `ecglang
zero-shot FOLDER` scores) were left out of the prepared dataset without a word (0 failures, rc 0).
8: an upper-case `.HEA` header was not seen at all ("no record to build (0 metadata rows)").
Now record files it cannot build are listed failures with the reason, other files a counted note, and an
upper-case header says to rename it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecglang.data.cinc import build_physionet_folder, physionet_files
from ecglang.record.leads import CANONICAL_LEADS

pytestmark = pytest.mark.shared_data


@pytest.fixture
def folder(shared_data: Path, tmp_path: Path) -> Path:
    """Two real CinC 2021 records (one with an upper-case header), an NPZ and an NPY export, and a README."""
    cinc = shared_data / "formats" / "cinc2021"
    root = tmp_path / "mine"
    root.mkdir()
    for suffix in (".hea", ".mat"):
        shutil.copy(cinc / f"E07500{suffix}", root)
    shutil.copy(cinc / "E07501.mat", root / "E07501.mat")
    shutil.copy(cinc / "E07501.hea", root / "E07501.HEA")
    signal = np.zeros((12, 5000), dtype=np.float32)
    signal[:, ::400] = 1.0
    np.savez(root / "export.npz", signal=signal, fs=500.0, leads=np.array(CANONICAL_LEADS))
    np.save(root / "bare.npy", signal)
    (root / "README.txt").write_text("my folder\n")
    return root


def test_files_not_built_are_listed_not_dropped(folder: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ecglang.data.cinc"):
        ds, report = build_physionet_folder(folder, progress=False)
    assert ds["id"] == ["E07500"]
    reasons = {Path(f.path).name: f.reason for f in report.failures}
    assert set(reasons) == {"export.npz", "bare.npy", "E07501.HEA"}, reasons  # none listed before
    for name in ("export.npz", "bare.npy"):
        assert "not a WFDB record" in reasons[name] and "ecglang zero-shot" in reasons[name], reasons[name]
    assert "lower-case .hea" in reasons["E07501.HEA"] and "rename E07501.HEA to E07501.hea" in reasons["E07501.HEA"]
    assert report.n_rows == 4  # each failure is a row of the summary, as a signal file without its header is
    assert report.notes["other_files_skipped"].startswith("1 ")
    assert "README.txt" in report.notes["other_files_skipped"] and "README.txt" in caplog.text
    # the prepared folder's fingerprint is what makes the table's rows, as before: a folder prepared then still opens
    assert [p.name for p in physionet_files(folder)] == ["E07500.hea", "E07500.mat", "E07501.mat"]


def test_the_command_says_which_files_it_left_out(folder: Path, tmp_path: Path, capsys) -> None:
    from ecglang.cli.main import main as cli  # here: the builder test above needs no CLI

    out = tmp_path / "prep"
    assert cli(["data", "build", "physionet", str(folder), "--out", str(out), "--no-progress"]) == 1  # rc 0 before
    err = capsys.readouterr().err
    assert "export.npz" in err and "bare.npy" in err and "E07501.HEA" in err, err

"""Labels of the CinC 2021 and CPSC 2018 format samples mapped to their label sets (real files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.errors import ConfigError
from ecglang.evaluation.config import EvaluateConfig
from ecglang.evaluation.datasets import load_label_set
from ecglang.scores.prompts import load_prompt_set


@pytest.fixture(scope="module")
def cinc_dir(shared_data: Path) -> Path:
    folder = shared_data / "formats" / "cinc2021"
    if not any(folder.glob("*.hea")):
        pytest.skip(f"CinC 2021 format sample not found in {folder}")
    return folder


@pytest.fixture(scope="module")
def cpsc_dir(shared_data: Path) -> Path:
    folder = shared_data / "formats" / "cpsc2018"
    if not any(folder.glob("*.mat")):
        pytest.skip(f"CPSC 2018 format sample not found in {folder}")
    return folder


def _dx(hea: Path) -> list[str]:
    line = next(x for x in hea.read_text().splitlines() if x.startswith("# Dx:"))
    return [c.strip() for c in line.split(":", 1)[1].split(",")]


def test_cinc_header_codes_become_cinc2021_labels(cinc_dir: Path):
    data = load_label_set("cinc", None, {"cinc2021": cinc_dir})
    ps = load_prompt_set("cinc2021")
    assert data.name == "cinc2021" and data.label_codes == ps.codes and not data.missing
    assert data.record_ids == sorted(p.stem for p in cinc_dir.glob("*.hea"))
    unlabelled: set[str] = set()
    for rid, row in zip(data.record_ids, data.labels, strict=True):
        codes = _dx(cinc_dir / f"{rid}.hea")
        expected = {ps.code_map()[c] for c in codes if c in ps.code_map()}
        unlabelled |= {c for c in codes if c not in ps.code_map()}
        assert {c for c, v in zip(data.label_codes, row, strict=True) if v} == expected, rid
    # The sample: sinus tachycardia ×3, sinus bradycardia ×1, prolonged QT ×1 (each label both classes).
    positives = {c: int(v) for c, v in zip(data.label_codes, data.labels.sum(axis=0), strict=True) if v}
    assert positives == {"427084000": 3, "426177001": 1, "111975006": 1}
    # Unscored codes (left atrial abnormality/enlargement) are counted, not silently dropped.
    listed = {key.split()[0] for key in data.notes["codes_without_label"]}
    assert listed == unlabelled == {"253352002", "67741000119109"}


def test_cinc_has_no_folds_and_needs_no_split(cinc_dir: Path):
    with pytest.raises(ConfigError, match="no folds"):
        load_label_set("cinc2021", None, {"cinc2021": cinc_dir}, folds=[8])
    EvaluateConfig(model="m", label_sets=["cinc2021"], data_roots=[f"cinc2021={cinc_dir}"]).validate()
    with pytest.raises(ConfigError, match="split-root"):
        EvaluateConfig(model="m", label_sets=["cinc2021", "cpsc2018"], data_roots=[str(cinc_dir)]).validate()


def test_cpsc_sample_labels_come_from_the_icbeb_split(cpsc_dir: Path, shared_data: Path):
    split_root = shared_data / "merl" / "data_split"
    data = load_label_set("icbeb", split_root, {"cpsc2018": cpsc_dir}, part="train")
    assert data.record_ids == ["A1980", "A1981"]
    frame = pd.read_csv(split_root / "icbeb" / "icbeb_train.csv").set_index("filename")
    np.testing.assert_array_equal(data.labels, frame.loc[data.record_ids, data.label_codes].to_numpy())
    positives = {c: int(v) for c, v in zip(data.label_codes, data.labels.sum(axis=0), strict=True) if v}
    assert positives == {"PAC": 1, "STD": 1}
    assert len(data.missing) == len(frame) - 2  # the rest of the split is counted as missing from disk

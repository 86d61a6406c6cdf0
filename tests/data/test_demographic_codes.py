"""Age and sex codes of records and builder tables (issue 17): unknown stays unknown (NaN / 0), PTB-XL's
"over 89" age, CinC header text, and the training batch's columns from a real PTB-XL table."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from ecglang.data.ptbxl import build_ptbxl
from ecglang.record.demographics import demographic_codes, metadata_demographics
from ecglang.training.setup import demographic_arrays


def test_codes_of_known_and_unknown_values() -> None:
    assert demographic_codes(63, "Male") == (63.0, 1)
    assert demographic_codes("71 years", "female") == (71.0, 2)
    assert demographic_codes(300.0, "F") == (90.0, 2)  # PTB-XL writes ages over 89 as 300
    for age, sex in ((None, None), (float("nan"), "?"), ("Unknown", "x"), (-3, 1), (200.0, True)):
        a, s = demographic_codes(age, sex)
        assert math.isnan(a) and s == 0, (age, sex)
    assert metadata_demographics({}) == metadata_demographics({"age": None, "sex": None})


def test_table_columns_become_batch_arrays() -> None:
    table = datasets.Dataset.from_dict({"id": ["a", "b", "c"], "age": [63.0, None, 300.0], "sex": ["M", None, "F"]})
    demo = demographic_arrays(table)
    age, sex = demo.age, demo.sex
    assert age.dtype == np.float32 and sex.dtype == np.int64
    assert age[0] == 63.0 and math.isnan(age[1]) and age[2] == 90.0
    assert sex.tolist() == [1, 0, 2]
    no_columns = demographic_arrays(datasets.Dataset.from_dict({"id": ["a", "b"]}))
    assert np.isnan(no_columns.age).all() and no_columns.sex.tolist() == [0, 0]


@pytest.mark.shared_data
def test_ptbxl_age_and_sex_reach_the_training_arrays(ptbxl_dir: Path) -> None:
    table = build_ptbxl(ptbxl_dir, progress=False).dataset
    demo = demographic_arrays(table)
    age, sex = demo.age, demo.sex
    csv = pd.read_csv(ptbxl_dir / "ptbxl_database.csv").set_index("ecg_id")
    expected_sex = [1 if csv.loc[int(i), "sex"] == 0 else 2 for i in table["id"]]  # PTB-XL: 0 male, 1 female
    assert sex.tolist() == expected_sex
    raw = csv.loc[[int(i) for i in table["id"]], "age"].to_numpy(dtype=float)
    known = np.isfinite(raw) & (raw != 300)
    assert np.allclose(age[known], raw[known]) and (age[raw == 300] == 90).all()

"""Fixtures shared by the zero-shot tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecglang.record.io import load_ecg


@pytest.fixture(scope="module")
def model(model_dir):
    """The test checkpoint (`model_dir`) loaded on the CPU; a module that needs another model defines its own."""
    from ecglang.encoders.modeling import load_model  # here: torch loads only for the tests that use it

    return load_model(model_dir, device="cpu")


# The inputs of the zero-shot input tests (a module that needs others defines its own fixture of the same name).
@pytest.fixture(scope="module")
def records(ptbxl_dir) -> list[Path]:
    """Two PTB-XL sample records (500 Hz WFDB headers)."""
    db = pd.read_csv(ptbxl_dir / "ptbxl_database.csv")
    return [ptbxl_dir / f for f in db["filename_hr"].head(2)]


@pytest.fixture(scope="module")
def clf(model):
    """A classifier without knowledge retrieval: the inputs, not the prompts, are under test."""
    from ecglang.scores.classifier import ZeroShotClassifier  # here: torch loads only for the tests that use it

    return ZeroShotClassifier(model, knowledge=None)


@pytest.fixture(scope="module")
def signal(records) -> np.ndarray:
    return load_ecg(records[0]).signal  # [12, 5000] at 500 Hz

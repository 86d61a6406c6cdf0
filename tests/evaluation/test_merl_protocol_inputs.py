"""A converted MERL checkpoint is evaluated on MERL's own inputs (evaluation-protocol audit, session 20): the
published code reads 10 s, min-maxes the whole record and swaps aVL/aVF (MIMIC-IV-ECG's order) for every dataset,
and for CPSC 2018 keeps the first 2500 samples, zero-pads them to 5000 and then min-maxes. `--preprocess
merl_compat` lost the swap (its processor fell back to the canonical order), and the default processor read CPSC
records' first 10 s."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.evaluation.store import processor_for
from ecglang.record.io import load_ecg

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "merl"
pytestmark = pytest.mark.skipif(
    not (FIXTURE / "reference.npz").is_file(),
    reason=f"MERL fixture {FIXTURE} not found (it ships beside the repo in ../shared/fixtures/merl)",
)


@pytest.fixture(scope="module")
def merl_model():
    from ecglang.encoders.convert_merl import build_merl_model  # here: torch loads only for the tests that use it

    return build_merl_model(FIXTURE / "merl_resnet18_tinytext.pth", str(FIXTURE / "text-encoder"))


def merl_input(signal: np.ndarray, cpsc: bool) -> np.ndarray:
    """MERL's `finetune_dataset.py` input of a `[12, n]` 500 Hz record in canonical lead order."""
    x = signal[:, :2500] if cpsc else signal[:, :5000]
    x = np.pad(x, ((0, 0), (0, 5000 - x.shape[1])))
    x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    return x[[0, 1, 2, 3, 5, 4, *range(6, 12)]]


def prepared_signal(processor, path: Path) -> np.ndarray:
    return processor([load_ecg(path)])["signal"][0].numpy()


@pytest.mark.parametrize("preprocess", ["default", "merl_compat"])
def test_a_converted_merl_model_gets_merls_ptbxl_input(merl_model, ptbxl_dir, preprocess) -> None:
    processor = processor_for(merl_model, preprocess, "ptbxl")
    assert processor.lead_order == "mimic"
    path = next(iter(sorted(ptbxl_dir.glob("records500/*/*_hr.hea"))))
    expected = merl_input(load_ecg(path).signal, cpsc=False)
    np.testing.assert_allclose(prepared_signal(processor, path), expected, atol=1e-5)


@pytest.mark.parametrize("preprocess", ["default", "merl_compat"])
def test_a_converted_merl_model_gets_merls_cpsc_input(merl_model, shared_data, preprocess) -> None:
    folder = shared_data / "formats" / "cpsc2018"
    if not folder.is_dir():
        pytest.skip(f"CPSC 2018 format samples not found in {folder}")
    processor = processor_for(merl_model, preprocess, "cpsc2018")
    for path in sorted(folder.glob("*.mat")):
        expected = merl_input(load_ecg(path).signal, cpsc=True)
        np.testing.assert_allclose(prepared_signal(processor, path), expected, atol=1e-5, err_msg=path.name)


def test_an_ecglang_models_processor_is_its_own_for_every_dataset() -> None:
    # Only a processor whose contract is MERL's min-max is made dataset-aware: an ecglang model keeps its own.
    from ecglang.encoders.registry import create_model  # here: torch loads only for the tests that use it

    model = create_model("ecglang-small")
    own = model.get_processor().to_dict()
    for dataset in ("ptbxl", "cpsc2018", "chapman"):
        assert processor_for(model, "default", dataset).to_dict() == own

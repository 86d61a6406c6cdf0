"""The README's Python quick start printed two "Loading weights" progress bars and peft's FutureWarning about
`is_gradient_checkpointing` (docs audit 18): read by a newcomer as something going wrong. The library silences
them inside its own loading calls only, and leaves the user's transformers settings as they were."""

from __future__ import annotations

import warnings

import pytest
from transformers.utils import logging as hf_logging

import ecglang


def test_loading_the_bundled_model_prints_nothing_and_restores_the_settings(capfd: pytest.CaptureFixture[str]) -> None:
    hf_logging.enable_progress_bar()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ecglang.load_model()
    err = capfd.readouterr().err
    assert "Loading weights" not in err, err[-500:]
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    assert hf_logging.is_progress_bar_enabled()  # the user's setting, as it was

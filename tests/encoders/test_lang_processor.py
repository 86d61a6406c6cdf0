"""`EcgLangProcessor`: ECG and text inputs from one object, read from a checkpoint without its weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ecglang
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.errors import ConfigError
from ecglang.signal.simulate import simulate_ecg

REPORTS = ["sinus rhythm. normal ecg.", "atrial fibrillation; left axis deviation."]


@pytest.fixture(scope="module")
def model() -> ecglang.EcgLangModel:
    return ecglang.load_model()


def test_from_pretrained_matches_the_models_own_preparation(model) -> None:
    processor = ecglang.EcgLangProcessor.from_pretrained()  # the bundled checkpoint, no weights loaded
    ecgs = [simulate_ecg(heart_rate=hr, seed=i) for i, hr in enumerate((60, 110))]
    batch = processor(ecgs=ecgs, texts=REPORTS)
    own = model.get_processor()(ecgs)
    tokens = model.tokenize(REPORTS)
    for key in ("beats", "beat_mask", "lead_mask", "rr", "times"):
        assert torch.equal(batch[key], own[key]), key
    for key in ("input_ids", "attention_mask", "token_mask", "sentence_ids"):
        assert torch.equal(batch[key], tokens[key]), key
    with torch.inference_mode():
        out = model(**batch)  # one dict is the whole model input
    assert out.logits_per_ecg.shape == (2, 2) and torch.isfinite(out.loss)


def test_from_model_and_single_inputs(model) -> None:
    processor = EcgLangProcessor.from_model(model)
    only_text = processor(texts=REPORTS)
    assert set(only_text) == {"input_ids", "attention_mask", "token_mask", "sentence_ids"}
    only_ecg = processor(ecgs=simulate_ecg(heart_rate=75, seed=3))
    assert only_ecg["beats"].shape[0] == 1 and "input_ids" not in only_ecg
    assert np.isfinite(only_ecg["rr"].numpy()).all()
    with pytest.raises(ConfigError, match="ecgs, texts or both"):
        processor()


def test_save_writes_the_contract_and_the_tokenizer(model, tmp_path) -> None:
    processor = EcgLangProcessor.from_model(model)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "processor_config.json").is_file() and (tmp_path / "tokenizer_config.json").is_file()

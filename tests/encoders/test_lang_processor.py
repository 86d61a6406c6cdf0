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


def test_collected_failures_leave_their_reports_out_so_rows_stay_pairs(model) -> None:
    """With `errors="collect"` a bad ECG was left out but its report kept: 2 ECG rows beside 3 text rows, and
    `model(**batch, return_loss=False)` paired every ECG after the bad one with the wrong report."""
    processor = EcgLangProcessor.from_model(model)
    good = [simulate_ecg(heart_rate=hr, seed=i) for i, hr in enumerate((60, 110))]
    flat = good[0].replace(signal=np.zeros_like(good[0].signal), record_id="flat")
    texts = ["first report.", "flat report.", "last report."]
    batch = processor(ecgs=[good[0], flat, good[1]], texts=texts, errors="collect")
    assert batch.indices == [0, 2] and [f.record for f in batch.failures] == ["flat"]
    assert torch.equal(batch["input_ids"], model.tokenize([texts[0], texts[2]])["input_ids"])
    with pytest.raises(ConfigError, match="2 ECGs but 3 texts"):
        processor(ecgs=good, texts=texts)
    with pytest.raises(ecglang.EcgReadError, match=r"00001_hr\.hea: file not found"):
        processor(ecgs=["00001_hr.hea"])  # was AttributeError: 'str' object has no attribute 'metadata'; now read
    with pytest.raises(TypeError, match=r"ecgs\[0\] is an int, not an Ecg record or a file path"):
        processor(ecgs=[1])
    assert processor(texts="one report.")["input_ids"].shape[0] == 1  # one string is one text


def test_a_saved_processor_loads_back(model, tmp_path) -> None:
    """`processor.save_pretrained(d)` then `EcgLangProcessor.from_pretrained(d)` was a ModelLoadError
    (config.json is missing): a processor saved on its own could not be read back, as transformers' can."""
    processor = EcgLangProcessor.from_model(model)
    processor.save_pretrained(tmp_path)
    again = EcgLangProcessor.from_pretrained(tmp_path)
    ecgs = [simulate_ecg(heart_rate=hr, seed=i) for i, hr in enumerate((60, 110))]
    a, b = processor(ecgs=ecgs, texts=REPORTS), again(ecgs=ecgs, texts=REPORTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.text_config == processor.text_config
    (tmp_path / "text_processor.json").write_text('{"text_tower": {"max_length": "long"}}')
    with pytest.raises(ecglang.ModelLoadError, match="not a saved EcgLangProcessor"):
        EcgLangProcessor.from_pretrained(tmp_path)

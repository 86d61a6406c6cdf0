"""A model whose projection does not L2-normalise (`projection.normalize: false`) is trained on cosines (the
losses normalise both sides), so its zero-shot scores, lead contributions and `logits_per_ecg` must be cosines
too, not dot products that rank records partly by the length of their embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

LABELS = ["sinus rhythm", "atrial fibrillation", "left bundle branch block"]


@pytest.fixture(scope="module")
def raw_model():
    from ecglang.encoders.registry import create_model  # here: torch loads only for the tests that use it

    torch.manual_seed(0)
    tower = {"d_model": 32, "n_layers": 1, "n_heads": 2, "cnn_channels": [8, 16], "dropout": 0.0}
    return create_model("ecglang-small", ecg_tower=tower, projection={"dim": 32, "normalize": False}).eval()


@pytest.fixture(scope="module")
def cosines(raw_model, records):
    batch = {k: v for k, v in dict(raw_model.get_processor()(records)).items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        ecg, text = raw_model.get_ecg_features(**batch), raw_model.get_text_features(LABELS)
    # The premise: these embeddings are not unit length, so a dot product is not a cosine.
    assert not torch.allclose(ecg.norm(dim=-1), torch.ones(len(records)), atol=0.05)
    unit = torch.nn.functional.normalize
    return (unit(ecg, dim=-1) @ unit(text, dim=-1).T).numpy(), ecg, text


def test_zero_shot_scores_of_an_unnormalised_model_are_cosines(raw_model, records, cosines):
    from ecglang.scores.classifier import ZeroShotClassifier  # here: torch loads only for the tests that use it

    result = ZeroShotClassifier(raw_model, knowledge=None)(records, labels=LABELS, progress=False)
    np.testing.assert_allclose(result.scores[LABELS].to_numpy(), cosines[0], atol=1e-5)
    assert np.abs(result.scores.to_numpy()).max() <= 1.0


def test_explained_scores_of_an_unnormalised_model_are_cosines(raw_model, records, cosines):
    from ecglang.scores.classifier import ZeroShotClassifier  # here: torch loads only for the tests that use it

    clf = ZeroShotClassifier(raw_model, knowledge=None)
    result = clf(records, labels=LABELS, progress=False, explain=True)
    np.testing.assert_allclose(result.scores[LABELS].to_numpy(), cosines[0], atol=1e-5)
    leads = result.explanations[result.scores.index[0]][LABELS[0]].lead_contributions
    assert np.nanmax(np.abs(leads)) <= 2.0  # a difference of two cosines


def test_logits_per_ecg_of_an_unnormalised_model_are_scaled_cosines(raw_model, records, cosines):
    batch = {k: v for k, v in dict(raw_model.get_processor()(records)).items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        out = raw_model(**batch, texts=LABELS, return_loss=False)
    scale = float(raw_model.loss_fn.scale("rhythm").detach())
    np.testing.assert_allclose(out.logits_per_ecg.numpy() / scale, cosines[0], atol=1e-5)

"""Zero-shot arithmetic a user sees, against the documented formulas (ecglang/scores/classifier.py docstring):
a label embedding is `unit((1 - w) * own + w * knowledge)` (w = `knowledge_weight`, default 0.75: an asymmetric
weight, so w and 1 - w are told apart), `softmax` is `softmax(logit_scale * cosine)` over the labels and
`sigmoid` is `sigmoid(logit_scale * (cosine - threshold))`, with `logit_scale = exp(the rhythm scale)`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecglang.encoders.registry import create_model
from ecglang.scores.classifier import ZeroShotClassifier

LABELS = ["atrial fibrillation", "sinus rhythm", "left bundle branch block", "sinus bradycardia"]
SCALE = 30.0  # not CLIP's initial 1/0.07, so a formula that drops or replaces the scale shows


@pytest.fixture(scope="module")
def model(one_torch_thread):
    torch.manual_seed(0)
    m = create_model("ecglang-small").eval()
    with torch.no_grad():
        m.loss_fn.logit_scale["rhythm"].fill_(math.log(SCALE))
    return m


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _mean_embedding(model, texts: list[str]) -> np.ndarray:
    """Mean of the unit text embeddings, made unit again (the documented prompt ensemble)."""
    with torch.inference_mode():
        emb = model.encode_text(list(texts)).text_embeds.float().numpy()
    return _unit((emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(0))


@pytest.mark.parametrize("weight", [None, 0.0, 1.0, 0.2])
def test_label_embedding_mixes_knowledge_at_the_documented_weight(model, weight):
    kw = {} if weight is None else {"knowledge_weight": weight}
    clf = ZeroShotClassifier(model, knowledge=True, k=3, drop_ambiguous_prompts=False, **kw)
    w = 0.75 if weight is None else weight  # the documented default
    assert clf.knowledge_weight == w
    specs = clf.label_specs(labels=["CLBBB", "AMI"], prompts="ptbxl_sub")
    matrix = clf.label_matrix(specs, progress=False)
    for row, (code, spec) in zip(matrix, specs.items(), strict=True):
        assert spec.knowledge_prompts, code
        own, know = _mean_embedding(model, spec.prompts), _mean_embedding(model, spec.knowledge_prompts)
        assert float(own @ know) < 0.999, code  # else any weight gives the same row
        np.testing.assert_allclose(row, _unit((1 - w) * own + w * know), atol=1e-5, err_msg=f"{code} w={w}")


@pytest.fixture(scope="module")
def ecg() -> np.ndarray:
    """12 leads, 10 s at 500 Hz: narrow R-like pulses at an irregular rhythm plus a slow wave."""
    fs, n = 500, 5000
    t = np.arange(n) / fs
    beats = np.cumsum([0.3, 0.8, 0.7, 1.0, 0.6, 0.9, 0.75, 0.85, 0.7, 0.95, 0.8])
    x = sum(np.exp(-0.5 * ((t - b) / 0.012) ** 2) for b in beats) + 0.1 * np.sin(2 * np.pi * 0.3 * t)
    gains = np.linspace(0.4, 1.2, 12)[:, None]
    return (gains * x[None, :]).astype(np.float32)


def test_softmax_and_sigmoid_follow_the_documented_formulas(model, ecg):
    clf = ZeroShotClassifier(model, knowledge=None)
    assert float(model.loss_fn.scale("rhythm").detach()) == pytest.approx(SCALE, rel=1e-6)
    cos = clf(ecg, labels=LABELS, fs=500, progress=False).scores.to_numpy()[0].astype(np.float64)
    assert np.ptp(cos) > 1e-3  # labels score differently

    soft = clf(ecg, labels=LABELS, fs=500, mode="softmax", progress=False).scores.to_numpy()[0]
    e = np.exp(SCALE * cos)
    np.testing.assert_allclose(soft, e / e.sum(), rtol=1e-4)

    # the threshold is one label's cosine: that label scores exactly 0.5, those below it under 0.5
    threshold = float(np.sort(cos)[1])
    sig = clf(ecg, labels=LABELS, fs=500, mode="sigmoid", threshold=threshold, progress=False).scores.to_numpy()[0]
    np.testing.assert_allclose(sig, 1.0 / (1.0 + np.exp(-SCALE * (cos - threshold))), rtol=1e-4)
    assert sig[np.argsort(cos)[1]] == pytest.approx(0.5, abs=1e-4)
    assert ((sig < 0.5) == (cos < threshold - 1e-6)).all()

"""A model cast to float16 (audit 21, finding 5): its default `forward` returned `loss = nan`, since `F.normalize`'s
eps (1e-12) is 0 in float16 and the zero-filled padding of beats and tokens normalised to 0/0. The scores now
normalise in float32."""

from __future__ import annotations

import numpy as np
import torch

from ecglang import Ecg
from ecglang.data.synthetic import synthetic_signal
from ecglang.encoders.loss import beat_scores, token_scores


def _padded(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Two ECGs of 3 and 1 beats and two reports of 2 and 1 sentences, padded with zero rows as the model pads."""
    g = torch.Generator().manual_seed(0)
    beats, sentences = torch.randn(2, 3, 8, generator=g), torch.randn(2, 2, 8, generator=g)
    beat_mask = torch.tensor([[True, True, True], [True, False, False]])
    sentence_mask = torch.tensor([[True, True], [True, False]])
    beats[~beat_mask], sentences[~sentence_mask] = 0.0, 0.0
    return beats.to(dtype), beat_mask, sentences.to(dtype), sentence_mask


def test_beat_and_token_scores_of_float16_inputs_with_zero_padding_are_finite_and_match_float32() -> None:
    half, full = _padded(torch.float16), _padded(torch.float32)
    for score in (beat_scores, token_scores):
        got = [s.float() for s in score(*half)]
        want = score(*full)
        for g, w in zip(got, want, strict=True):
            assert torch.isfinite(g).all(), score.__name__
            torch.testing.assert_close(g, w, atol=2e-2, rtol=2e-2)


def test_a_float16_model_forward_gives_a_finite_loss(tiny_model) -> None:
    model = tiny_model(False).half()
    rng = np.random.default_rng(0)
    # different heart rates: different beat counts, so the batch holds padded beat slots
    ecgs = [Ecg(synthetic_signal(rng), 500) for _ in range(3)]
    batch = {k: v for k, v in model.get_processor()(ecgs).items() if isinstance(v, torch.Tensor)}
    assert not batch["beat_mask"].all()
    texts = ["sinus rhythm. normal ecg.", "atrial fibrillation. left axis deviation.", "sinus bradycardia."]
    with torch.no_grad():
        out = model(**batch, texts=texts)
    assert torch.isfinite(out.loss), {k: float(v) for k, v in out.losses.items()}
    assert all(torch.isfinite(v) for v in out.losses.values())

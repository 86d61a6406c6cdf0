"""Rhythm mixers and pooling heads of the ECG tower (issue 17 parts): what each may and may not depend on."""

from __future__ import annotations

import math

import pytest
import torch

from ecglang.encoders.heads import DemographicEmbedding, LeadGroupPool
from ecglang.encoders.mixers import NeighbourhoodAttention, SelectiveSSM, band_keep


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_band_keep_allows_only_real_neighbours() -> None:
    keep = torch.tensor([[True, True, True, False, True]])
    m = band_keep(keep, window=1)[0]
    assert m[0].tolist() == [True, True, False, False, False]
    assert m[2].tolist() == [False, True, True, False, False]  # key 3 is padding
    assert m[4].tolist() == [False, False, False, False, True]
    lonely = band_keep(torch.tensor([[True, False, False, False]]), window=1)[0]
    assert lonely[3].tolist() == [False, False, False, True]  # no real key in its band: itself, never NaN


def test_neighbourhood_attention_sees_only_its_window() -> None:
    mix = NeighbourhoodAttention(16, n_heads=2, dropout=0.0, window=2).eval()
    x = torch.randn(1, 10, 16)
    keep = torch.ones(1, 10, dtype=torch.bool)
    base = mix(x, keep)
    far = x.clone()
    far[0, 9] += 5.0  # beat 9 is 9 positions from beat 0
    near = x.clone()
    near[0, 2] += 5.0  # beat 2 is inside beat 0's window
    assert torch.allclose(mix(far, keep)[0, 0], base[0, 0], atol=1e-6)
    assert not torch.allclose(mix(near, keep)[0, 0], base[0, 0], atol=1e-3)


def test_ssm_real_beats_ignore_padding_and_mix_both_directions() -> None:
    mix = SelectiveSSM(16, d_state=4).eval()
    x = torch.randn(2, 6, 16)
    keep = torch.ones(2, 6, dtype=torch.bool)
    out = mix(x, keep)
    padded = torch.cat([x, torch.randn(2, 4, 16)], 1)  # garbage in 4 padded slots
    keep_padded = torch.cat([keep, torch.zeros(2, 4, dtype=torch.bool)], 1)
    assert torch.allclose(mix(padded, keep_padded)[:, :6], out, atol=1e-5)
    later = x.clone()
    later[:, 5] += 3.0
    earlier = x.clone()
    earlier[:, 0] += 3.0
    # Beats 0 and 5 are further apart than the convolution reaches (±1): only the scans can carry the change.
    # At Mamba's init the state changes slowly, so the effect is small but far above float32 rounding (~1e-7).
    assert (mix(later, keep)[:, 0] - out[:, 0]).abs().max() > 1e-5  # backward scan
    assert (mix(earlier, keep)[:, 5] - out[:, 5]).abs().max() > 1e-5  # forward scan
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mix.parameters())


def test_lead_group_pool_ignores_missing_leads_and_padded_beats() -> None:
    pool = LeadGroupPool(8).eval()
    tokens = torch.randn(2, 5, 12, 8)
    beat_keep = torch.tensor([[True] * 5, [True, True, True, False, False]])
    lead_keep = torch.ones(2, 12, dtype=torch.bool)
    lead_keep[1, 6:] = False  # second ECG: limb leads only
    out = pool(tokens, beat_keep, lead_keep)
    changed = tokens.clone()
    changed[1, :, 6:] = 100.0  # missing precordial leads
    changed[1, 3:] = -100.0  # padded beats
    assert torch.isfinite(out).all()
    assert torch.allclose(pool(changed, beat_keep, lead_keep)[1], out[1], atol=1e-6)
    real = tokens.clone()
    real[1, 0, 0] += 1.0  # a present lead of a real beat does matter
    assert not torch.allclose(pool(real, beat_keep, lead_keep)[1], out[1], atol=1e-5)


def test_demographics_mark_unknown_values_instead_of_inventing_them() -> None:
    age = torch.tensor([63.0, math.nan])
    sex = torch.tensor([2, 0])
    f = DemographicEmbedding.features(age, sex)
    assert f[0].tolist() == pytest.approx([0.63, 0.0, 0.0, 1.0, 0.0])
    assert f[1].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    emb = DemographicEmbedding(8)(age, sex)
    assert emb.shape == (2, 8) and torch.isfinite(emb).all()


VARIANTS = {
    "neighbourhood": {"rhythm_mixer": "neighbourhood", "mixer_window": 1},
    "ssm": {"rhythm_mixer": "ssm", "ssm_state": 4},
    "lead_group": {"pooling": "lead_group"},
    "demographics": {"demographics": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_tower_variant_trains_with_the_three_alignment_losses(variant: str) -> None:
    """Every part the config selects runs inside the beat tower and gets gradients from token, beat and rhythm
    losses; a different part gives a different model (the option is really read)."""
    from ecglang.encoders.registry import create_model

    small = {"d_model": 32, "n_layers": 1, "n_heads": 2, "cnn_channels": [4, 8], "dropout": 0.0}
    model = create_model("ecglang-small", ecg_tower={**small, **VARIANTS[variant]})
    plain = create_model("ecglang-small", ecg_tower=small)
    assert repr(model.ecg_tower) != repr(plain.ecg_tower)  # other modules, not the same tower renamed
    g = torch.Generator().manual_seed(0)
    b, n = 3, 8
    beat_mask = torch.arange(n)[None, :] < torch.tensor([8, 5, 3])[:, None]
    batch = {
        "beats": torch.randn(b, n, 12, 96, generator=g),
        "beat_mask": beat_mask,
        "lead_mask": torch.ones(b, 12, dtype=torch.bool),
        "rr": torch.full((b, n, 2), 0.8),
        "times": torch.linspace(0.4, 9.0, n).expand(b, n).clone(),
    }
    out = model(**batch, texts=["sinus rhythm. normal ecg.", "atrial fibrillation.", "left bundle branch block."])
    assert set(out.losses) >= {"rhythm", "beat", "token"}
    assert all(torch.isfinite(v) for v in out.losses.values())
    out.loss.backward()
    tower_grads = [p.grad for p in model.ecg_tower.parameters() if p.requires_grad]
    assert sum(float(gr.abs().sum()) for gr in tower_grads if gr is not None) > 0

"""ECG-only objectives (issue 17): masked-beat reconstruction and EMA latent prediction on the real beat tower."""

from __future__ import annotations

import pytest
import torch

from ecglang.encoders.ecg_encoders import BeatEcgEncoder
from ecglang.encoders.objectives import (
    LatentBeatPrediction,
    MaskedBeatReconstruction,
    blank_beats,
    choose_masked_beats,
)
from ecglang.encoders.registry import load_model_config


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # each test starts from the same weights, whatever ran before it


def tiny_tower() -> torch.nn.Module:
    cfg = load_model_config("ecglang-small").ecg_tower
    cfg.update(d_model=32, n_layers=1, n_heads=2, cnn_channels=[4, 8], dropout=0.0)
    return BeatEcgEncoder(cfg)


def batch(b: int = 3, n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    beat_mask = torch.zeros(b, n, dtype=torch.bool)
    for i, k in enumerate((8, 5, 2)[:b]):
        beat_mask[i, :k] = True
    lead_mask = torch.ones(b, 12, dtype=torch.bool)
    lead_mask[1, 6:] = False
    beats = torch.randn(b, n, 12, 96, generator=g) * beat_mask[:, :, None, None]
    rr = torch.full((b, n, 2), 0.8)
    times = torch.arange(n).float().repeat(b, 1) * 0.8
    return {"beats": beats, "beat_mask": beat_mask, "lead_mask": lead_mask, "rr": rr, "times": times}


def test_masked_beats_are_real_and_leave_context() -> None:
    inputs = batch()
    masked = choose_masked_beats(inputs["beat_mask"], 0.5, torch.Generator().manual_seed(0))
    assert not (masked & ~inputs["beat_mask"]).any()
    assert masked.sum(1).tolist() == [4, 2, 1]  # half of 8 and of 5 (rounded), one of 2: never all
    blanked = blank_beats(inputs, masked)["beats"]
    assert (blanked[masked] == 0).all() and torch.equal(blanked[~masked], inputs["beats"][~masked])
    with pytest.raises(ValueError):
        choose_masked_beats(inputs["beat_mask"], 1.0)


def test_reconstruction_learns_and_scores_only_blanked_present_leads() -> None:
    tower = tiny_tower()
    objective = MaskedBeatReconstruction(32, 96, mask_ratio=0.4)
    inputs = batch()
    opt = torch.optim.Adam([*tower.parameters(), *objective.parameters()], lr=3e-3)
    losses = []
    for _ in range(30):
        loss = objective(tower, inputs, torch.Generator().manual_seed(0))  # same blanking: a fixed task
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    # The target of a missing lead never enters the loss.
    changed = dict(inputs)
    changed["beats"] = inputs["beats"].clone()
    changed["beats"][1, :, 6:] = 50.0
    g = torch.Generator().manual_seed(0)
    assert objective(tower, changed, g).item() == pytest.approx(
        objective(tower, inputs, torch.Generator().manual_seed(0)).item(), rel=1e-5
    )


def test_latent_prediction_trains_online_tower_and_ema_follows() -> None:
    tower = tiny_tower()
    objective = LatentBeatPrediction(tower, 32, mask_ratio=0.4, momentum=0.9)
    assert not any(p.requires_grad for p in objective.target.parameters())
    inputs = batch()
    opt = torch.optim.Adam([*tower.parameters(), *objective.predictor.parameters()], lr=1e-3)
    before = [p.clone() for p in objective.target.parameters()]
    loss = objective(tower, inputs, torch.Generator().manual_seed(0))
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in objective.target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tower.parameters())
    opt.step()
    objective.update_target(tower)
    for t, b, o in zip(objective.target.parameters(), before, tower.parameters(), strict=True):
        assert torch.allclose(t, 0.9 * b + 0.1 * o.detach(), atol=1e-6)

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


def windows_of(signal: torch.Tensor, times: torch.Tensor, offsets: torch.Tensor, fs: float) -> torch.Tensor:
    """`[N, 12, L]` beat windows of a `[12, T]` signal around R peaks at `times`, as the tokenizer cuts them."""
    idx = ((times[:, None] + offsets[None, :]) * fs).round().long().clamp(0, signal.shape[1] - 1)
    return signal[:, idx].permute(1, 0, 2)


@pytest.mark.parametrize("rate_bpm", [150, 100, 60])
def test_a_blanked_beat_is_hidden_in_its_neighbours_windows_too(rate_bpm: int) -> None:
    # Beat windows (0.25 s before R to 0.45 s after) overlap whenever RR < 0.7 s: a neighbour's window then
    # holds part of the blanked beat, and the objective could copy it instead of inferring it.
    from ecglang.beats.config import BeatConfig  # here: the only test of this module that needs the beat geometry

    offsets = torch.as_tensor(BeatConfig().offsets_s(), dtype=torch.float32)
    fs, n = 500.0, 8
    times = 0.5 + torch.arange(n, dtype=torch.float32) * (60.0 / rate_bpm)
    signal = torch.randn(12, int(fs * 10), generator=torch.Generator().manual_seed(3))
    inputs = {
        "beats": windows_of(signal, times, offsets, fs)[None],
        "beat_mask": torch.ones(1, n, dtype=torch.bool),
        "lead_mask": torch.ones(1, 12, dtype=torch.bool),
        "rr": torch.full((1, n, 2), 60.0 / rate_bpm),
        "times": times[None],
    }
    masked = torch.zeros(1, n, dtype=torch.bool)
    masked[0, 3] = True
    # The same ECG with anything at all where beat 3's window lies: the model input must not change.
    changed = signal.clone()
    span = ((times[3] + offsets[0]) * fs).round().long(), ((times[3] + offsets[-1]) * fs).round().long()
    changed[:, span[0] : span[1] + 1] = 99.0
    other = dict(inputs, beats=windows_of(changed, times, offsets, fs)[None])
    seen = blank_beats(inputs, masked, offsets)["beats"]
    assert torch.equal(seen, blank_beats(other, masked, offsets)["beats"])
    if rate_bpm > 86:  # the blanked windows alone leak it (what this test guards against)
        assert not torch.equal(blank_beats(inputs, masked)["beats"], blank_beats(other, masked)["beats"])
    # Exactly what lies inside the blanked beat's window is hidden: the other beats keep their other samples.
    sample_t = times[:, None] + offsets[None, :]  # [N, L]
    inside = (sample_t >= times[3] + offsets[0]) & (sample_t <= times[3] + offsets[-1])
    inside[3] = True
    assert torch.equal(seen[0, :, 0] == 0, inside)  # a random signal is never exactly 0
    assert inside.sum() > inside.shape[1] if rate_bpm > 86 else inside.sum() == inside.shape[1]


class RecordingTower(torch.nn.Module):
    """The tiny tower, keeping the beat windows it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.tower, self.seen = tiny_tower(), []

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(inputs["beats"])
        return self.tower(**inputs)


def test_both_objectives_hide_the_blanked_beat_from_its_neighbours() -> None:
    from ecglang.beats.config import BeatConfig  # here: the only tests of this module that need the beat geometry

    offsets = torch.as_tensor(BeatConfig().offsets_s(), dtype=torch.float32)
    times = 0.5 + torch.arange(8, dtype=torch.float32) * 0.4  # 150 /min: windows overlap
    signal = torch.randn(12, 5000, generator=torch.Generator().manual_seed(4))
    inputs = {
        "beats": windows_of(signal, times, offsets, 500.0)[None],
        "beat_mask": torch.ones(1, 8, dtype=torch.bool),
        "lead_mask": torch.ones(1, 12, dtype=torch.bool),
        "rr": torch.full((1, 8, 2), 0.4),
        "times": times[None],
    }
    masked = choose_masked_beats(inputs["beat_mask"], 0.3, torch.Generator().manual_seed(0))
    changed = signal.clone()
    for k in masked[0].nonzero().flatten().tolist():
        changed[:, int((times[k] - 0.25) * 500) : int((times[k] + 0.45) * 500) + 1] = 99.0
    other = dict(inputs, beats=windows_of(changed, times, offsets, 500.0)[None])
    recorder = RecordingTower()
    objectives = (
        MaskedBeatReconstruction(32, 96, 0.3, offsets),
        LatentBeatPrediction(recorder.tower, 32, 0.3, offsets_s=offsets),
    )
    for objective in objectives:
        recorder.seen.clear()
        objective(recorder, inputs, torch.Generator().manual_seed(0))
        objective(recorder, other, torch.Generator().manual_seed(0))
        assert torch.equal(recorder.seen[0], recorder.seen[1])

"""BEAT-Net attention maps of the beat tower (issue 17): which leads and which beats the tower attended to."""

from __future__ import annotations

import pytest
import torch

from ecglang.encoders.configuration import BEAT_TOWER_DEFAULTS
from ecglang.encoders.ecg_encoders import BeatEcgEncoder
from ecglang.encoders.layers import SelfAttention
from ecglang.errors import ConfigError


def small_tower(**overrides) -> BeatEcgEncoder:
    cfg = {**BEAT_TOWER_DEFAULTS, "d_model": 32, "n_heads": 4, "n_layers": 2, "cnn_channels": [4, 8],
           "max_beats": 12, **overrides}  # fmt: skip
    return BeatEcgEncoder(cfg).eval()


def batch(b: int = 3, n: int = 9) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    beat_mask = torch.zeros(b, n, dtype=torch.bool)
    for i, real in enumerate([9, 5, 7][:b]):
        beat_mask[i, :real] = True
    lead_mask = torch.ones(b, 12, dtype=torch.bool)
    lead_mask[1, [0, 4, 7]] = False  # record 1 lacks I, aVL and V2
    lead_mask[2, 6:] = False  # record 2: limb leads only
    beats = torch.randn(b, n, 12, 96) * beat_mask[..., None, None] * lead_mask[:, None, :, None]
    rr = torch.rand(b, n, 2) + 0.5
    times = torch.arange(n, dtype=torch.float32).expand(b, n) * 0.8
    return {"beats": beats, "beat_mask": beat_mask, "lead_mask": lead_mask, "rr": rr, "times": times}


@pytest.mark.parametrize("rhythm", ["summary", "per_lead"])
@pytest.mark.parametrize("dense", [False, True])
def test_maps_sum_to_one_over_present_leads_and_real_beats(rhythm: str, dense: bool) -> None:
    torch.manual_seed(0)
    tower = small_tower(rhythm_attention=rhythm)
    tower.static_shapes = dense
    x = batch()
    with torch.no_grad():
        out = tower(**x, output_attentions=True)
    lead, beat = out["lead_attention"], out["beat_attention"]
    assert lead.shape == (3, 12) and beat.shape == (3, 9)
    lm, bm = x["lead_mask"], x["beat_mask"]
    torch.testing.assert_close(lead.sum(1), torch.ones(3))
    assert torch.all(lead[~lm] == 0) and torch.all(lead[lm] > 0)
    torch.testing.assert_close(beat.sum(1), torch.ones(3))
    assert torch.all(beat[~bm] == 0) and torch.all(beat[bm] > 0)


def test_maps_do_not_depend_on_the_dense_layout() -> None:
    torch.manual_seed(0)
    tower = small_tower(rhythm_attention="per_lead")
    x = batch()
    with torch.no_grad():
        sparse = tower(**x, output_attentions=True)
        tower.static_shapes = True
        dense = tower(**x, output_attentions=True)
    torch.testing.assert_close(sparse["lead_attention"], dense["lead_attention"])
    torch.testing.assert_close(sparse["beat_attention"], dense["beat_attention"])


@pytest.mark.parametrize("mixer", ["attention", "neighbourhood", "ssm"])
def test_flag_changes_no_output(mixer: str) -> None:
    torch.manual_seed(0)
    tower = small_tower(rhythm_mixer=mixer)
    x = batch()
    with torch.no_grad():
        off = tower(**x)
        on = tower(**x, output_attentions=True)
    assert "lead_attention" not in off and "beat_attention" not in off  # off: the outputs are what they were
    for key in ("rhythm", "beats", "tokens"):
        assert torch.equal(off[key], on[key]), key  # bit for bit, not merely close
    assert on["lead_attention"] is not None
    if mixer == "attention":
        assert on["beat_attention"] is not None
    else:  # no attention weights to read (documented in ecglang.encoders.mixers)
        assert on["beat_attention"] is None


def test_maps_are_the_weights_averaged_as_documented() -> None:
    """The reduction checked against a plain loop over the weights the attention layers returned (a hook), so a
    map that were only the mask spread evenly, or averaged over the wrong axis, fails."""
    torch.manual_seed(0)
    tower = small_tower(n_layers=1, rhythm_attention="summary")
    x = batch()
    seen = {}
    block = tower.blocks[0]
    block.spatial.register_forward_hook(lambda m, args, out: seen.update(spatial=(out[1], args[1])))
    block.temporal.register_forward_hook(lambda m, args, out: seen.update(temporal=(out[1], args[1])))
    with torch.no_grad():
        out = tower(**x, output_attentions=True)
    w_s, lead_keep = seen["spatial"]  # [R, heads, 12, 12], [R, 12]: real beats in order
    w_t = seen["temporal"][0]  # [B, heads, n, n]
    lead_expected = torch.zeros(3, 12)
    beat_expected = torch.zeros(3, 9)
    r = 0
    for b in range(3):
        n_real = int(x["beat_mask"][b].sum())
        per_beat = []
        for _ in range(n_real):
            queries = [q for q in range(12) if lead_keep[r, q]]
            per_beat.append(sum(w_s[r, :, q].mean(0) for q in queries) / len(queries))
            r += 1
        lead_expected[b] = sum(per_beat) / n_real
        beat_expected[b, :n_real] = (sum(w_t[b, :, q].mean(0) for q in range(n_real)) / n_real)[:n_real]
    assert r == len(w_s)
    torch.testing.assert_close(out["lead_attention"], lead_expected)
    torch.testing.assert_close(out["beat_attention"], beat_expected)
    assert not torch.allclose(out["beat_attention"][0], torch.full((9,), 1 / 9), atol=1e-4)  # not just uniform


@pytest.mark.parametrize("need_weights", [False, True])
def test_fused_kernel_matches_the_short_path(need_weights: bool) -> None:
    """The fused kernel (`F.scaled_dot_product_attention`, used off the CPU) and the short path written out for
    the CPU compute one function, weights included: the GPU branch checked here on CPU, by name. A group whose
    keys are all masked (`allow_any_if_none`) is in the batch, since the two could disagree exactly there."""
    torch.manual_seed(0)
    short = SelfAttention(32, 4, dropout=0.0, kernel="short").eval()
    fused = SelfAttention(32, 4, dropout=0.0, kernel="fused").eval()
    fused.load_state_dict(short.state_dict())
    x = torch.randn(5, 9, 32)
    keep = torch.rand(5, 9) > 0.3
    keep[0] = False
    keep[1, 0] = True
    with torch.no_grad():
        a, b = short(x, keep, need_weights=need_weights), fused(x, keep, need_weights=need_weights)
    if need_weights:
        torch.testing.assert_close(a[0], b[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a[1], b[1])
        allowed = keep | ~keep.any(-1, keepdim=True)
        assert torch.all(b[1].masked_select(~allowed[:, None, None, :]) == 0)  # masked keys get no weight
    else:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="kernel"):
        SelfAttention(32, 4, dropout=0.0, kernel="flash")

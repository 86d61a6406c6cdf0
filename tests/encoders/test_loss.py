"""Each loss against small cases written out by hand with explicit numpy formulas (loops, no shared code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecglang.encoders.loss import (
    EcgLangLoss,
    batch_offset,
    beat_scores,
    clip_loss,
    contrastive_loss,
    gather_with_grad,
    report_targets,
    rhythm_scores,
    token_scores,
)

LN_1_007 = math.log(1 / 0.07)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 0, v / np.where(n > 0, n, 1), 0)


def _ce(logits: np.ndarray, target: int) -> float:
    """Cross-entropy of one row: -log softmax(logits)[target]."""
    m = logits.max()
    return float(-(logits[target] - m - math.log(np.exp(logits - m).sum())))


def _symmetric_ce(rows_ecg: np.ndarray, rows_text: np.ndarray) -> float:
    n = rows_ecg.shape[0]
    a = sum(_ce(rows_ecg[i], i) for i in range(n)) / n
    b = sum(_ce(rows_text[j], j) for j in range(n)) / n
    return 0.5 * (a + b)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


# ------------------------------------------------------------------------------------------ rhythm
def test_rhythm_clip_loss_2x2_by_hand() -> None:
    ecg = np.array([[1.0, 0.0], [0.6, 0.8]])
    text = np.array([[2.0, 0.0], [0.0, 3.0]])  # not unit length: the score must normalise
    scale = 1 / 0.07
    # cosines: e0·t0 = 1, e0·t1 = 0, e1·t0 = 0.6, e1·t1 = 0.8
    logits = scale * np.array([[1.0, 0.0], [0.6, 0.8]])
    row0 = -math.log(math.exp(logits[0, 0]) / (math.exp(logits[0, 0]) + math.exp(logits[0, 1])))
    row1 = -math.log(math.exp(logits[1, 1]) / (math.exp(logits[1, 0]) + math.exp(logits[1, 1])))
    col0 = -math.log(math.exp(logits[0, 0]) / (math.exp(logits[0, 0]) + math.exp(logits[1, 0])))
    col1 = -math.log(math.exp(logits[1, 1]) / (math.exp(logits[0, 1]) + math.exp(logits[1, 1])))
    expected = 0.5 * ((row0 + row1) / 2 + (col0 + col1) / 2)
    loss, logits_t = contrastive_loss(
        lambda e, t: rhythm_scores(e[0], t[0]), (_t(ecg),), (_t(text),), torch.tensor(scale, dtype=torch.float64)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(logits_t.numpy(), logits, rtol=1e-12)


def test_clip_loss_is_low_for_matched_and_high_for_swapped_pairs() -> None:
    eye = torch.eye(3) * 20
    assert clip_loss(eye, eye).item() < 1e-6
    swapped = eye[[1, 0, 2]]
    assert clip_loss(swapped, swapped.T).item() > 10


def test_logit_scale_starts_at_clip_value_and_is_clamped_at_100() -> None:
    loss = EcgLangLoss(
        {"weights": {"rhythm": 1.0}, "logit_scale_init": LN_1_007, "logit_scale_max": math.log(100.0),
         "beat_attention_temperature": 0.1, "beat_gamma": 5.0, "local_loss": False, "token_chunk_elements": 10},
        ["rhythm"],
    )  # fmt: skip
    assert loss.scale("rhythm").item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        loss.logit_scale["rhythm"].fill_(7.0)
    s = loss.scale("rhythm")
    assert s.item() == pytest.approx(100.0, rel=1e-6)
    s.backward()
    assert loss.logit_scale["rhythm"].grad.item() == 0.0  # clamped: no further sharpening


# -------------------------------------------------------------------------------------------- beat
def _beat_score_by_hand(beats, bmask, sents, smask, tau, gamma):
    be, bt = beats.shape[0], sents.shape[0]
    out = np.zeros((be, bt))
    for i in range(be):
        valid_b = [n for n in range(beats.shape[1]) if bmask[i, n]]
        for j in range(bt):
            valid_s = [s for s in range(sents.shape[1]) if smask[j, s]]
            if not valid_s:
                out[i, j] = 0.0
                continue
            cosines = []
            for s in valid_s:
                q = _unit(sents[j, s])
                keys = [_unit(beats[i, n]) for n in valid_b]
                sims = np.array([q @ k for k in keys])
                a = np.exp(sims / tau) / np.exp(sims / tau).sum()
                ctx = sum(a_n * k for a_n, k in zip(a, keys, strict=True))
                cosines.append(q @ ctx / np.linalg.norm(ctx))
            out[i, j] = math.log(sum(math.exp(gamma * c) for c in cosines) / len(cosines)) / gamma
    return out


def _beat_case():
    rng = np.random.default_rng(3)
    beats = rng.normal(size=(2, 3, 4))
    bmask = np.array([[True, True, True], [True, True, False]])
    sents = rng.normal(size=(2, 2, 4))
    smask = np.array([[True, True], [True, False]])
    return beats, bmask, sents, smask


def test_beat_scores_2x2_by_hand_with_masks() -> None:
    beats, bmask, sents, smask = _beat_case()
    expected = _beat_score_by_hand(beats, bmask, sents, smask, tau=0.1, gamma=5.0)
    s_e, s_t = beat_scores(_t(beats), torch.tensor(bmask), _t(sents), torch.tensor(smask), 0.1, 5.0)
    np.testing.assert_allclose(s_e.numpy(), expected, rtol=1e-9)
    assert torch.equal(s_e, s_t)  # symmetric score
    # Padded beats and sentences must not matter, whatever they contain.
    beats2, sents2 = beats.copy(), sents.copy()
    beats2[1, 2] = 1e3
    sents2[1, 1] = -1e3
    s2, _ = beat_scores(_t(beats2), torch.tensor(bmask), _t(sents2), torch.tensor(smask), 0.1, 5.0)
    np.testing.assert_allclose(s2.numpy(), expected, rtol=1e-9)
    # Chunking over ECGs gives the same matrix.
    s3, _ = beat_scores(_t(beats), torch.tensor(bmask), _t(sents), torch.tensor(smask), 0.1, 5.0, chunk_elements=1)
    np.testing.assert_allclose(s3.numpy(), s_e.numpy(), rtol=1e-12)


def test_beat_loss_3x3_by_hand() -> None:
    rng = np.random.default_rng(7)
    beats = rng.normal(size=(3, 4, 5))
    bmask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    sents = rng.normal(size=(3, 3, 5))
    smask = np.array([[1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=bool)
    scale = 12.0
    score = _beat_score_by_hand(beats, bmask, sents, smask, tau=0.2, gamma=3.0)
    expected = _symmetric_ce(scale * score, scale * score.T)
    loss, _ = contrastive_loss(
        lambda e, t: beat_scores(*e, *t, 0.2, 3.0),
        (_t(beats), torch.tensor(bmask)), (_t(sents), torch.tensor(smask)), torch.tensor(scale, dtype=torch.float64),
    )  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_beat_scores_without_any_valid_beat_or_sentence_are_finite() -> None:
    beats, bmask, sents, smask = _beat_case()
    bmask[0] = False
    smask[1] = False
    b, s = _t(beats).requires_grad_(), _t(sents).requires_grad_()
    score, _ = beat_scores(b, torch.tensor(bmask), s, torch.tensor(smask))
    assert torch.isfinite(score).all()
    assert (score[:, 1] == 0).all()  # a report without sentences scores 0 against every ECG
    score.sum().backward()
    assert torch.isfinite(b.grad).all() and torch.isfinite(s.grad).all()


# ------------------------------------------------------------------------------------------- token
def _filip_by_hand(et, em, tt, tm):
    be, bt = et.shape[0], tt.shape[0]
    s_e, s_t = np.zeros((be, bt)), np.zeros((be, bt))
    for i in range(be):
        for j in range(bt):
            ek = [_unit(et[i, k]) for k in range(et.shape[1]) if em[i, k]]
            tl = [_unit(tt[j, m]) for m in range(tt.shape[1]) if tm[j, m]]
            s_e[i, j] = np.mean([max(e @ t for t in tl) for e in ek])
            s_t[i, j] = np.mean([max(e @ t for e in ek) for t in tl])
    return s_e, s_t


def _token_case():
    rng = np.random.default_rng(11)
    et = rng.normal(size=(2, 3, 4))
    em = np.array([[True, True, False], [True, True, True]])
    tt = rng.normal(size=(2, 2, 4))
    tm = np.array([[True, True], [True, False]])
    return et, em, tt, tm


def test_token_scores_2x2_by_hand_with_masks() -> None:
    et, em, tt, tm = _token_case()
    exp_e, exp_t = _filip_by_hand(et, em, tt, tm)
    s_e, s_t = token_scores(_t(et), torch.tensor(em), _t(tt), torch.tensor(tm))
    np.testing.assert_allclose(s_e.numpy(), exp_e, rtol=1e-9)
    np.testing.assert_allclose(s_t.numpy(), exp_t, rtol=1e-9)
    assert not np.allclose(exp_e, exp_t)  # the two directions really differ
    # masked tokens with extreme content change nothing; chunking changes nothing
    et2, tt2 = et.copy(), tt.copy()
    et2[0, 2] = 50.0
    tt2[1, 1] = 50.0
    c_e, c_t = token_scores(_t(et2), torch.tensor(em), _t(tt2), torch.tensor(tm), chunk_elements=1)
    np.testing.assert_allclose(c_e.numpy(), exp_e, rtol=1e-9)
    np.testing.assert_allclose(c_t.numpy(), exp_t, rtol=1e-9)


def test_token_loss_2x2_by_hand() -> None:
    et, em, tt, tm = _token_case()
    exp_e, exp_t = _filip_by_hand(et, em, tt, tm)
    scale = 1 / 0.07
    # ECG→report rows use s_e; report→ECG rows (one per report j, over ECGs i) use s_t transposed.
    expected = _symmetric_ce(scale * exp_e, scale * exp_t.T)
    loss, _ = contrastive_loss(
        lambda e, t: token_scores(*e, *t),
        (_t(et), torch.tensor(em)), (_t(tt), torch.tensor(tm)), torch.tensor(scale, dtype=torch.float64),
    )  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_token_scores_fully_masked_rows_are_finite() -> None:
    et, em, tt, tm = _token_case()
    em[1] = False
    tm[0] = False
    a, b = _t(et).requires_grad_(), _t(tt).requires_grad_()
    s_e, s_t = token_scores(a, torch.tensor(em), b, torch.tensor(tm))
    assert torch.isfinite(s_e).all() and torch.isfinite(s_t).all()
    assert (s_e[1] == 0).all() and (s_t[:, 0] == 0).all()
    (s_e.sum() + s_t.sum()).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


# ---------------------------------------------------------------------------------------- combined
def test_weighted_total_and_single_process_gather() -> None:
    torch.manual_seed(0)
    cfg = {"weights": {"rhythm": 1.0, "beat": 0.5, "token": 0.25}, "logit_scale_init": LN_1_007,
           "logit_scale_max": math.log(100.0), "beat_attention_temperature": 0.1, "beat_gamma": 5.0,
           "local_loss": False, "token_chunk_elements": 2**20}  # fmt: skip
    fn = EcgLangLoss(cfg, ["rhythm", "beat", "token"])
    b, n, d = 3, 4, 8
    ecg = {"rhythm_embeds": torch.randn(b, d), "beat_embeds": torch.randn(b, n, d),
           "token_embeds": torch.randn(b, n, 12, d), "beat_mask": torch.ones(b, n, dtype=torch.bool),
           "lead_mask": torch.ones(b, 12, dtype=torch.bool)}  # fmt: skip
    text = {"text_embeds": torch.randn(b, d), "sentence_embeds": torch.randn(b, 2, d),
            "sentence_mask": torch.ones(b, 2, dtype=torch.bool), "token_embeds": torch.randn(b, 5, d),
            "token_mask": torch.ones(b, 5, dtype=torch.bool)}  # fmt: skip
    total, parts = fn(ecg, text)
    assert set(parts) == {"rhythm", "beat", "token"}
    assert total.item() == pytest.approx(
        parts["rhythm"].item() + 0.5 * parts["beat"].item() + 0.25 * parts["token"].item()
    )
    # single process: gather is the identity (same tensor, graph kept) and the offset is 0
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert batch_offset(3) == 0


def test_padded_beat_slots_do_not_change_the_losses() -> None:
    """Trailing padding (the processor pads every ECG to max_beats) is cut before the B×B scores."""
    torch.manual_seed(1)
    cfg = {"weights": {"rhythm": 1.0, "beat": 1.0, "token": 1.0}, "logit_scale_init": LN_1_007,
           "logit_scale_max": math.log(100.0), "beat_attention_temperature": 0.1, "beat_gamma": 5.0,
           "local_loss": False, "token_chunk_elements": 2**20}  # fmt: skip
    fn = EcgLangLoss(cfg, ["rhythm", "beat", "token"])
    b, n, d = 3, 5, 8
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    ecg = {
        "rhythm_embeds": torch.randn(b, d),
        "beat_embeds": torch.randn(b, n, d),
        "token_embeds": torch.randn(b, n, 12, d),
        "beat_mask": mask,
        "lead_mask": torch.ones(b, 12, dtype=torch.bool),
    }
    text = {"text_embeds": torch.randn(b, d), "sentence_embeds": torch.randn(b, 2, d),
            "sentence_mask": torch.ones(b, 2, dtype=torch.bool), "token_embeds": torch.randn(b, 4, d),
            "token_mask": torch.ones(b, 4, dtype=torch.bool)}  # fmt: skip
    padded = dict(ecg)
    padded["beat_embeds"] = torch.cat([ecg["beat_embeds"], torch.randn(b, 35, d)], 1)
    padded["token_embeds"] = torch.cat([ecg["token_embeds"], torch.randn(b, 35, 12, d)], 1)
    padded["beat_mask"] = torch.cat([mask, torch.zeros(b, 35, dtype=torch.bool)], 1)
    _, a = fn(ecg, text)
    _, p = fn(padded, text)
    for k in a:
        torch.testing.assert_close(a[k], p[k])


# ------------------------------------------------------------------------------------- report targets
def test_report_targets_by_hand() -> None:
    """Soft targets: (1 - w) on a row's own pair, w spread by softmax(cos(report_r, report_c) / t)."""
    feats = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    w, t = 0.4, 0.1
    cos = _unit(feats) @ _unit(feats).T
    expected = np.zeros((3, 3))
    for r in range(3):
        e = np.exp(cos[r] / t)
        expected[r] = w * e / e.sum()
        expected[r, r] += 1 - w
    got = report_targets(_t(feats), _t(feats), w, t).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
    # a shard's rows against all columns: its own pairs sit `offset` columns on
    shard = report_targets(_t(feats[1:]), _t(feats), w, t, offset=1).numpy()
    np.testing.assert_allclose(shard, expected[1:], rtol=1e-6)


def test_soft_targets_by_hand_and_the_loss_module_switch() -> None:
    ecg = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    text = np.array([[1.0, 0.1], [0.2, 1.0], [0.9, 0.3]])
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])  # reports 0 and 2 say nearly the same
    scale, w, t = 10.0, 0.5, 0.1
    logits = scale * (_unit(ecg) @ _unit(text).T)
    targets = report_targets(_t(feats), _t(feats), w, t).numpy()

    def soft_ce(rows: np.ndarray) -> float:
        m = rows.max(1, keepdims=True)
        log_p = rows - m - np.log(np.exp(rows - m).sum(1, keepdims=True))
        return float(-(targets * log_p).sum(1).mean())

    expected = 0.5 * (soft_ce(logits) + soft_ce(logits.T))
    loss, _ = contrastive_loss(
        lambda e, tx: rhythm_scores(e[0], tx[0]), (_t(ecg),), (_t(text),), torch.tensor(scale, dtype=torch.float64),
        soft=(_t(feats), w, t),
    )  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    cfg = {
        "weights": {"rhythm": 1.0},
        "logit_scale_init": math.log(scale),
        "logit_scale_max": math.log(100.0),
        "beat_attention_temperature": 0.1,
        "beat_gamma": 5.0,
        "local_loss": False,
        "token_chunk_elements": 10,
    }
    ecg_out = {"rhythm_embeds": _t(ecg)}
    text_out = {"text_embeds": _t(text), "text_features": _t(feats)}
    plain, _ = EcgLangLoss(cfg, ["rhythm"])(ecg_out, text_out)  # default: one-hot targets
    assert plain.item() == pytest.approx(_symmetric_ce(logits, logits.T), rel=1e-6)
    soft, _ = EcgLangLoss({**cfg, "report_targets": w, "report_target_temperature": t}, ["rhythm"])(ecg_out, text_out)
    assert soft.item() == pytest.approx(expected, rel=1e-6)

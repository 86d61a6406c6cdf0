"""Property tests: preprocessing, the beat tokenizer and the processor on arbitrary input, under varied configs.

tests/test_preprocess.py and tests/test_beats.py already check families of seeded signals (noise, ECG-like,
spikes, steps, constants) under the default configs. These add what they do not cover:

- arbitrary values: a patch of any float32 (extremes, subnormals, ±3e38; NaN/inf in one variant) drawn by
  hypothesis inside an ECG-like, noisy or empty background, at any sampling rate (not only the usual six);
- varied configs: `target_fs`, `target_samples`, `keep_samples`, crop/pad/normalise policies, band-pass, and
  `beat_len`, `max_beats`, window, refractory period;
- the full token contract: RR intervals (not only R-peak spacing) respect the refractory period, padded rows
  are zero, times match R-peaks, and the processor's batch tensors follow the configs.

Only `EcgQualityError` / `ConfigError` may come out; anything else is a crash. An example refused with one is
rejected (`hypothesis.reject`), not passed: if nearly every example is refused, Hypothesis fails the test
(health check `filter_too_much`) instead of checking nothing; the strategies are weighted so that most are not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ecglang.beats.tokenize import BeatConfig, tokenize_beats
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError, EcgLangError, EcgQualityError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.preprocess import PreprocessConfig, preprocess

TYPED = (EcgQualityError, ConfigError)
QUICK = [HealthCheck.too_slow, HealthCheck.data_too_large]
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=QUICK)

_FS = st.one_of(st.sampled_from([100.0, 250.0, 257.0, 360.0, 500.0, 1000.0]), st.floats(50.0, 2000.0))


@st.composite
def signals(draw: st.DrawFn, finite: bool = True) -> tuple[np.ndarray, float, np.ndarray]:
    """(signal [12, n] float32, fs, lead mask): a background with a hypothesis-drawn patch of arbitrary values.

    Weighted so that most examples are usable records (and so reach the output checks), while short, empty,
    tiny, huge and non-finite inputs still come up."""
    fs = draw(_FS)
    # sampled_from, not one_of: Hypothesis draws one_of's first branches and small integers far more often
    low, high = draw(st.sampled_from([(1, 64), (65, 6000), *[(int(3 * fs), int(12 * fs))] * 4]))
    n = draw(st.integers(low, high))
    kind = draw(st.sampled_from(["ecg"] * 5 + ["noise", "zeros", "sine"]))
    scale = draw(st.sampled_from([1.0] * 6 + [1e-3, 1e3, 1e-30, 1e8]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = np.arange(n) / fs
    if kind == "ecg":
        beats = np.arange(rng.uniform(0.1, 0.6), n / fs, 60.0 / rng.uniform(30, 220))
        x = np.exp(-0.5 * ((t[None, :] - beats[:, None]) / 0.012) ** 2).sum(0)[None, :] * rng.uniform(-2, 2, (12, 1))
        x = x + rng.normal(0, 0.02, (12, n))
    elif kind == "noise":
        x = rng.normal(0, 1, (12, n))
    elif kind == "zeros":
        x = np.zeros((12, n))
    else:
        x = np.sin(2 * np.pi * rng.uniform(0.1, 60) * t)[None, :] * rng.uniform(0.1, 2, (12, 1))
    x = (x * scale).astype(np.float32)
    width = draw(st.integers(0, min(n, 48)))
    if width:
        # One example in four: any float32 at all (extremes make most of these a typed error); else values
        # within an ECG's range (and NaN/inf in the non-finite variant).
        anything = draw(st.sampled_from([False, False, False, True]))
        if anything:
            elements = st.floats(width=32, allow_nan=not finite, allow_infinity=not finite)
        else:
            elements = st.floats(-5.0, 5.0, width=32)
            if not finite:
                elements = st.one_of(elements, st.sampled_from([np.nan, np.inf, -np.inf]))
        patch = draw(hnp.arrays(np.float32, (12, width), elements=elements))
        at = draw(st.integers(0, n - width))
        x[:, at : at + width] = patch
    mask = draw(st.one_of(st.just([True] * 12), st.lists(st.booleans(), min_size=12, max_size=12)))
    return x, fs, np.array(mask)


@st.composite
def preprocess_configs(draw: st.DrawFn) -> PreprocessConfig:
    target_fs = draw(st.sampled_from([None, 100.0, 250.0, 500.0]))
    nyquist = (target_fs or 1e9) / 2
    bands = [None] + [b for b in ((0.5, 40.0), (1.0, 30.0), (0.05, 150.0)) if b[1] < nyquist]
    return PreprocessConfig(
        target_fs=target_fs,
        target_samples=draw(st.one_of(st.none(), st.integers(1, 6000), st.integers(2500, 6000))),
        keep_samples=draw(st.one_of(st.none(), st.none(), st.integers(1, 6000))),
        bandpass=draw(st.sampled_from(bands)),
        crop=draw(st.sampled_from(["start", "center", "random"])),
        pad=draw(st.sampled_from(["zero", "edge", "repeat"])),
        normalize=draw(st.sampled_from(["zscore", "minmax", "record_minmax", "mm", "none"])),
        robust=draw(st.booleans()),
        pad_then_normalize=draw(st.booleans()),
    )


@st.composite
def beat_configs(draw: st.DrawFn) -> BeatConfig:
    max_beats = draw(st.integers(1, 64))
    return BeatConfig(
        beat_len=draw(st.integers(2, 160)),
        max_beats=max_beats,
        min_beats=draw(st.integers(1, min(3, max_beats))),
        pre_s=draw(st.floats(0.0, 0.5)),
        post_s=draw(st.floats(0.05, 0.8)),
        refractory_s=draw(st.floats(0.15, 0.6)),
        # random signals are noise, which the consistency check refuses: mostly off, so that the tokenizer's
        # properties are still checked on most examples; on, it must only ever raise EcgQualityError
        min_consistency=draw(st.sampled_from([0.0, 0.0, 0.0, 0.25])),
    )


def _check_preprocessed(out: Ecg, ecg: Ecg, cfg: PreprocessConfig) -> None:
    meta = out.metadata
    assert out.signal.dtype == np.float32 and np.isfinite(out.signal).all()
    assert out.fs == (cfg.target_fs or ecg.fs)
    # resample_poly gives ceil(n * up / down) samples; the rational ratio approximates target_fs / fs
    assert abs(meta["resampled_n_samples"] - ecg.n_samples * out.fs / ecg.fs) <= 1.0 + 1e-6 * ecg.n_samples
    kept = min(meta["resampled_n_samples"], cfg.keep_samples or math.inf)
    assert out.n_samples == (cfg.target_samples if cfg.target_samples is not None else kept)
    if cfg.target_samples is not None:
        assert meta["pad_samples"] == max(0, cfg.target_samples - kept)
        assert 0 <= meta["crop_offset"] <= max(0, kept - cfg.target_samples)
    assert out.lead_mask.any() and not (out.lead_mask & ~ecg.lead_mask).any()  # never un-masks a lead
    assert not out.signal[~out.lead_mask].any()
    assert set(meta["quality"]) <= set(CANONICAL_LEADS)


def _check_tokens(tokens, cfg: BeatConfig, n_valid: int, lead_mask: np.ndarray) -> None:
    k = tokens.n_beats
    assert tokens.beats.shape == (cfg.max_beats, 12, cfg.beat_len) and tokens.beats.dtype == np.float32
    assert tokens.beat_mask.shape == (cfg.max_beats,) and tokens.rr.shape == (cfg.max_beats, 2)
    assert tokens.times.shape == (cfg.max_beats,)
    assert cfg.min_beats <= k == tokens.beat_mask.sum() == len(tokens.rpeaks) <= cfg.max_beats
    assert tokens.beat_mask[:k].all()  # real beats first, then padding
    r = tokens.rpeaks
    assert r.dtype == np.int64 and r.min() >= 0 and r.max() < n_valid  # inside the signal, never in the padding
    assert (np.diff(r) > 0).all()  # sorted, unique
    fs = tokens.fs
    assert (np.diff(r) >= cfg.refractory_s * fs - 1e-6).all()
    if k >= 2 or tokens.rr[:k].any():
        assert (tokens.rr[:k] >= cfg.refractory_s - 1e-6).all()  # RR intervals respect the refractory period
    np.testing.assert_allclose(tokens.times[:k], r / fs, rtol=1e-6)
    for padded in (tokens.beats[k:], tokens.rr[k:], tokens.times[k:]):
        assert not padded.any()
    assert not tokens.beats[:, ~lead_mask].any()
    assert np.isfinite(tokens.beats).all() and np.isfinite(tokens.rr).all()
    hr = tokens.heart_rate  # from every beat found (max_beats only limits the tokens); nan below 2 beats
    assert (math.isfinite(hr) or k < 2) and (math.isnan(hr) or hr <= 60.0 / cfg.refractory_s + 1e-6)


@PROPERTY
@given(data=signals(finite=True), cfg=preprocess_configs())
def test_preprocess_any_finite_input_any_config(data, cfg):
    sig, fs, mask = data
    ecg = Ecg(sig, fs, mask, record_id="prop")
    try:
        out = preprocess(ecg, cfg, rng=0)
    except TYPED as exc:
        event(f"{type(exc).__name__}")
        assert "prop" in str(exc) or isinstance(exc, ConfigError)  # names the record
        reject()
    event("preprocessed")
    _check_preprocessed(out, ecg, cfg)


@PROPERTY
@given(data=signals(finite=False), cfg=preprocess_configs())
def test_preprocess_nan_and_inf_give_finite_output_or_a_typed_error(data, cfg):
    sig, fs, mask = data
    ecg = Ecg(sig, fs, mask, record_id="prop")
    try:
        out = preprocess(ecg, cfg, rng=0)
    except TYPED as exc:
        event(type(exc).__name__)
        reject()
    event("preprocessed")
    _check_preprocessed(out, ecg, cfg)


@PROPERTY
@given(data=signals(finite=True), cfg=beat_configs())
def test_tokenizer_any_finite_input_any_config(data, cfg):
    sig, fs, mask = data
    if not mask.any():
        mask[0] = True
    ecg = Ecg(sig, fs, mask, record_id="prop")
    try:
        tokens = tokenize_beats(ecg, cfg)
    except TYPED as exc:
        event(type(exc).__name__)
        reject()
    event("tokenized")
    _check_tokens(tokens, cfg, ecg.n_samples, mask)


@PROPERTY
@given(data=signals(finite=True), pre=preprocess_configs(), beats=beat_configs())
def test_preprocess_then_tokenize_follows_both_configs(data, pre, beats):
    sig, fs, mask = data
    try:
        clean = preprocess(Ecg(sig, fs, mask, record_id="prop"), pre, rng=1)
        tokens = tokenize_beats(clean, beats)
    except TYPED as exc:
        event(type(exc).__name__)
        reject()
    event("tokenized")
    _check_tokens(tokens, beats, clean.n_samples - clean.metadata["pad_samples"], clean.lead_mask)


@settings(max_examples=25, deadline=None, suppress_health_check=QUICK)
@given(
    records=st.lists(signals(finite=False), min_size=1, max_size=4),
    target=st.integers(64, 6000),
    target_fs=st.sampled_from([250.0, 500.0]),
    beats=beat_configs(),
)
def test_processor_batch_follows_the_configs_and_accounts_for_every_record(records, target, target_fs, beats):
    proc = EcgProcessor(PreprocessConfig(target_fs=target_fs, target_samples=target), beats, return_signal=True)
    ecgs = [Ecg(sig, fs, mask if mask.any() else ~mask, record_id=f"r{i}") for i, (sig, fs, mask) in enumerate(records)]
    batch = proc(ecgs, errors="collect")  # never raises in collect mode
    failed = batch.failed_indices
    event(f"{len(batch.indices)} of {len(ecgs)} processed")
    assert sorted(batch.indices + failed) == list(range(len(ecgs)))  # every record scored or listed, once
    assert len(batch.failures) == len(failed)
    for f, i in zip(batch.failures, failed, strict=True):
        assert f.stage == "process" and f.reason and f.record == f"r{i}"
    b = len(batch.indices)
    assert batch["beats"].shape == (b, beats.max_beats, 12, beats.beat_len)
    assert batch["beat_mask"].shape == (b, beats.max_beats) and batch["lead_mask"].shape == (b, 12)
    assert batch["rr"].shape == (b, beats.max_beats, 2) and batch["times"].shape == (b, beats.max_beats)
    assert batch["signal"].shape == (b, 12, target)
    for row, tok in enumerate(batch.tokens):
        assert int(batch["beat_mask"][row].sum()) == tok.n_beats >= beats.min_beats
        assert batch["lead_mask"][row].numpy().tolist() == tok.lead_mask.tolist()
    for name in ("beats", "rr", "times", "signal"):
        assert bool(batch[name].isfinite().all())
    if failed:
        with pytest.raises(EcgLangError):
            proc([ecgs[failed[0]]], errors="raise")

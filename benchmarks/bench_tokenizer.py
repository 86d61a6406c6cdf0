"""Tokenizer benchmark: our multi-lead R-peak detector against `wfdb.processing.xqrs_detect`.

Both run in this process on the same records, already in memory (file reading is not timed):
MIT-BIH record 100 (30 min, 360 Hz; xqrs on lead MLII, ours on both leads) with F1 against the
reference beat annotations, and a batch of PTB-XL 10 s records at 500 Hz (xqrs on lead II, ours on
all 12 leads and, for a like-for-like line, on lead II alone). A last row times the whole per-record
pipeline (preprocess + tokenize_beats) that feeds the model, with the two parts also timed apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import wfdb
from wfdb import processing

from ecglang.beats.evaluation import beat_f1, f1
from ecglang.beats.tokenize import detect_rpeaks, tokenize_beats
from ecglang.record.ecg import Ecg
from ecglang.record.leads import LEAD_INDEX, to_canonical
from ecglang.signal.preprocess import preprocess

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext


BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")  # MIT-BIH beat annotation symbols


def f1_score(reference: np.ndarray, detected: np.ndarray, tolerance: float) -> float:
    """Beat F1 with one-to-one matching, as every other benchmark and test computes it."""
    return f1(*beat_f1(reference, detected, tolerance))


def _xqrs(sig: np.ndarray, fs: float) -> np.ndarray:
    return processing.xqrs_detect(sig, fs=fs, verbose=False)


def _mitbih_row(ctx: BenchContext) -> dict[str, Any]:
    path = ctx.data_dir / "mitbih" / "100"
    sampto = 60 * 360 if ctx.quick else None  # quick: the first minute
    rec = wfdb.rdrecord(str(path), sampto=sampto)
    ann = wfdb.rdann(str(path), "atr", sampto=sampto)
    reference = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS])
    both = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32)  # [2, n]
    mlii = np.ascontiguousarray(rec.p_signal[:, rec.sig_name.index("MLII")])
    fs = float(rec.fs)
    t_ours, t_base = ctx.compare(lambda: detect_rpeaks(both, fs), lambda: _xqrs(mlii, fs))
    tol = 0.05 * fs
    minutes = rec.sig_len / fs / 60
    ratios = ctx.ratio_columns(t_ours, t_base)
    f1_ours = f1_score(reference, detect_rpeaks(both, fs), tol)
    return {
        "case": f"MIT-BIH 100, {minutes:.0f} min @360 Hz ({len(reference)} beats)",
        "ours": "detect_rpeaks, 2 leads",
        "baseline": "xqrs_detect, MLII",
        **ratios,
        "F1 ours": f1_ours,
        "F1 baseline": f1_score(reference, _xqrs(mlii, fs), tol),
        **ctx.target_columns(
            "≥ 20× xqrs; F1 ≥ 0.995",
            f"{ratios['speedup']:.0f}× (CPU {ratios['speedup (CPU)']:.0f}×); F1 {f1_ours:.4f}",
            ratios["speedup"] >= 20 and f1_ours >= 0.995,
        ),
    }


def _ptbxl_records(ctx: BenchContext) -> list[Ecg]:
    headers = sorted((ctx.data_dir / "ptbxl-sample" / "records500").glob("*/*.hea"))
    headers = headers[: 5 if ctx.quick else 100]
    out = []
    for h in headers:
        rec = wfdb.rdrecord(str(h.with_suffix("")))
        signal, mask, _ = to_canonical(rec.p_signal.T, rec.sig_name, path=str(h))
        out.append(Ecg(signal, rec.fs, mask, record_id=h.stem))
    return out


def _ptbxl_rows(ctx: BenchContext) -> list[dict[str, Any]]:
    records = _ptbxl_records(ctx)
    n = len(records)
    fs = records[0].fs
    lead_ii = [np.ascontiguousarray(e.signal[LEAD_INDEX["II"]], dtype=np.float64) for e in records]

    def ours12() -> list[np.ndarray]:
        return [detect_rpeaks(e.signal, e.fs, e.lead_mask) for e in records]

    def ours_ii() -> list[np.ndarray]:
        return [detect_rpeaks(s, fs) for s in lead_ii]

    def base() -> list[np.ndarray]:
        return [_xqrs(s, fs) for s in lead_ii]

    agree = np.mean([f1_score(b, o, 0.05 * fs) for o, b in zip(ours12(), base(), strict=True)])
    case = f"PTB-XL {n} x 10 s @500 Hz"
    rows = []
    for label, fn in (("detect_rpeaks, 12 leads", ours12), ("detect_rpeaks, lead II", ours_ii)):
        t_ours, t_base = ctx.compare(fn, base)
        ratios = ctx.ratio_columns(t_ours, t_base)
        rows.append({
            "case": case,
            "ours": label,
            "baseline": "xqrs_detect, lead II",
            **ratios,
            "note": f"{n / t_ours.wall:.0f} records/s ours; beat agreement with xqrs F1 {agree:.3f}",
            **ctx.target_columns("≥ 20× xqrs", f"{ratios['speedup']:.0f}× (CPU {ratios['speedup (CPU)']:.0f}×)",
                             ratios["speedup"] >= 20),
        })  # fmt: skip

    def pipeline() -> None:
        for e in records:
            tokenize_beats(preprocess(e))

    clean = [preprocess(e) for e in records]
    t_pipe = ctx.time(pipeline)
    t_pre = ctx.time(lambda: [preprocess(e) for e in records])
    t_tok = ctx.time(lambda: [tokenize_beats(c) for c in clean])
    rows.append({
        "case": case,
        "ours": "preprocess + tokenize_beats",
        "ours s": t_pipe.wall,
        "note": f"{n / t_pipe.wall:.0f} records/s on one core ({1e3 * t_pipe.wall / n:.2f} ms wall, "
        f"{1e3 * t_pipe.cpu / n:.2f} ms CPU per record; of which preprocess {1e3 * t_pre.cpu / n:.2f} ms "
        f"and tokenize_beats {1e3 * t_tok.cpu / n:.2f} ms CPU, timed apart)",
    })  # fmt: skip
    return rows


def bench_tokenizer(ctx: BenchContext) -> list[dict[str, Any]]:
    if not (ctx.data_dir / "mitbih" / "100.hea").is_file():
        ctx.notes.append(f"tokenizer: data folder {ctx.data_dir} not found; skipped")
        return []
    rows = [_mitbih_row(ctx), *_ptbxl_rows(ctx)]
    if ctx.quick:
        ctx.notes.append("tokenizer --quick: MIT-BIH first minute and 5 PTB-XL records only")
    return rows


BENCHMARKS = {"tokenizer": bench_tokenizer}

"""`ecglang inspect RECORD`: what a record holds, its beats and its signal quality, with an optional plot."""

from __future__ import annotations

import argparse

import numpy as np

from ecglang.cli import plot_file, seconds
from ecglang.errors import EcgQualityError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print a record's leads, rate, beats and quality flags; plot it")
    p.add_argument("record", help="record path (WFDB .hea/.dat/.mat, CPSC .mat, .npy/.npz)")
    p.add_argument("--plot", metavar="PNG", type=plot_file, help="write a 12-lead figure with R-peaks and beat windows")
    p.add_argument("--fs", type=float, help="sampling rate of a .npy, or of an .npz that stores none (an .npz or WFDB "
                   "header that stores another rate is an error)")  # fmt: skip
    p.add_argument("--leads", help="comma-separated lead names of a .npy, or of an .npz that stores none (an .npz "
                   "that stores other leads is an error; WFDB/.mat: they rename the stored signals)")  # fmt: skip
    p.add_argument("--seconds", type=seconds, default=10.0, help="length drawn in the plot (default 10 s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Here, not at the top: `ecglang --help` must not wait for scipy and wfdb.
    from ecglang.beats.tokenize import (
        NO_BEATS_CAUSES,
        BeatConfig,
        beat_consistency,
        detect_rpeaks,
        extract_windows,
        tokenize_beats,
    )
    from ecglang.record.io import load_ecg
    from ecglang.signal.preprocess import PreprocessConfig, preprocess

    leads = args.leads.split(",") if args.leads else None
    ecg = load_ecg(args.record, fs=args.fs, leads=leads)
    # Keep the record's own length and amplitude: inspection shows the record, not the model input.
    clean = preprocess(ecg, PreprocessConfig(target_samples=None, normalize="none"))
    rpeaks = detect_rpeaks(clean.signal, clean.fs, clean.lead_mask)
    rr = np.diff(rpeaks) / clean.fs
    hr = 60.0 / float(np.median(rr)) if rr.size else float("nan")

    meta = ecg.metadata
    print(f"record    {ecg.record_id}  ({meta.get('format', '?')}: {meta.get('source_path', args.record)})")
    print(f"leads     {', '.join(ecg.present_leads)}  ({int(ecg.lead_mask.sum())} of 12)")
    if meta.get("dropped_leads"):
        print(f"dropped   {', '.join(meta['dropped_leads'])} (not part of the 12-lead set)")
    print(f"fs        {ecg.fs:g} Hz")
    print(f"duration  {ecg.duration:.1f} s  ({ecg.n_samples} samples)")
    print(f"rate      {hr:.0f} bpm (median RR {np.median(rr) * 1000:.0f} ms)" if rr.size else "rate      n/a")
    if rr.size > 1:
        print(f"RR        min {rr.min() * 1000:.0f} ms, max {rr.max() * 1000:.0f} ms, CV {rr.std() / rr.mean():.2f}")
    cfg = BeatConfig()
    consistency = beat_consistency(extract_windows(clean.signal, rpeaks, clean.fs, cfg), clean.lead_mask)
    print(f"beats     {len(rpeaks)}" + (f" (consistency {consistency:.2f}: how alike they are, 1 = the same)"
                                        if np.isfinite(consistency) else ""))  # fmt: skip
    for key in ("age", "sex", "snomed", "report"):
        if meta.get(key) not in (None, "", []):
            print(f"{key:<9} {meta[key]}")
    # Missing leads are already listed above; quality is about the leads that are there.
    flags = {lead: [x for x in f if x != "missing"] for lead, f in clean.metadata.get("quality", {}).items()}
    flags = {lead: f for lead, f in flags.items() if f}
    problems = [f"{lead}: {', '.join(f)}" for lead, f in flags.items()]
    if clean.metadata.get("unit_warning"):  # µV read as mV: every check passes, the plot shows "1.5 V" QRSs
        problems.insert(0, clean.metadata["unit_warning"])
    if len(rpeaks) < cfg.min_beats:  # what zero-shot would refuse, said here too
        problems.insert(0, f"{len(rpeaks)} beat(s) found, zero-shot needs {cfg.min_beats}")
    elif consistency < cfg.min_consistency:
        problems.insert(0, f"no consistent heartbeat (consistency {consistency:.2f} < {cfg.min_consistency:g}): "
                           f"{NO_BEATS_CAUSES}; zero-shot will not score it")  # fmt: skip
    print("quality   " + ("; ".join(problems) or "ok"))

    if args.plot:
        from ecglang.report.plotting import plot_ecg  # here: matplotlib loads only when a plot is asked for

        n = min(ecg.n_samples, round(args.seconds * ecg.fs))
        view = ecg.replace(signal=ecg.signal[:, :n])
        view_clean = clean.replace(signal=clean.signal[:, : round(args.seconds * clean.fs)])
        cut = BeatConfig(max_beats=10_000)
        try:
            tokens = tokenize_beats(view_clean, cut)
        except EcgQualityError:
            tokens = None  # fewer than 2 beats in view: draw the signal alone
        plot_ecg(view, tokens, title=f"{ecg.record_id}: {hr:.0f} bpm, {len(rpeaks)} beats", out=args.plot,
                 beat_config=cut, unit="mV")  # fmt: skip
        print(f"plot      {args.plot}")
    return 0

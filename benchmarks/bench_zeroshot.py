"""Zero-shot end to end: decoded `[12, 5000]` arrays → preprocessing → beats → encoder → scores.

`ZeroShotClassifier` with the default small model, the `ptbxl_super` prompt set and the bundled knowledge
base (test-time retrieval on). A warm-up call embeds the prompts, so the timed calls find them in the
prompt cache, as every call after the first does. Each timed call scores the same batch of jittered
real records (`BenchContext.ecg_arrays`) held in memory:

- `score_arrays`, default settings; the target row. On a CPU with at most 4 usable cores one DataLoader
  worker per core prepares (preprocessing + beats) *and* encodes its own batches of 16, torch on one thread
  each, and this process only collects (`pipeline.encode_in_workers`); with more cores the workers prepare
  while this process runs the encoder on the cores they leave free;
- `score_arrays` with `num_workers=0`: everything in this process (side by side with the first, so the
  ratio is what the workers bring);
- `__call__` on `Ecg` objects (the general entry point, same pipeline);
- `score_arrays` with `precision="bf16"` (opt-in: the encoder under bfloat16 autocast), with how far its
  scores move from the float32 ones.

The target row of issue 18 sets the pipelined figure against MERL's ResNet1d-18 tower forward alone
(`merl-resnet18`, 2 torch threads, 64 preprocessed ECGs), interleaved in the same run: a load change on the
shared machine hits both sides. Target: end to end >= 3.4x MERL's forward.

The last rows split the work per ECG into CPU time of each stage, each measured alone on one thread (64
ECGs): preparation (preprocessing, of which the zero-phase band-pass; beat tokens, of which R-peak
detection; collation) and the encoder. On free cores the pipeline can run at most at cores / (prep + encoder)
ECGs/s where every worker runs both stages (at most 4 cores), else at 1 / max(prep, encoder). The wall-clock
figures are lower by however much CPU other jobs take (see the load average).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import signal as sps

from ecglang.beats.detect import detect_rpeaks
from ecglang.beats.tokenize import tokenize_beats
from ecglang.core.threads import usable_cores
from ecglang.embeddings.pipeline import BatchPreparer, encode_in_workers, encode_rhythm
from ecglang.embeddings.sources import ArraySource
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.record.ecg import Ecg
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.signal.preprocess import preprocess
from ecglang.signal.zero_phase import zero_phase

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET = 200.0  # ECGs/s
TARGET_VS_MERL = 3.4  # end to end over MERL's ResNet1d-18 forward alone (issue 18)
LABELS = "ptbxl_super"


def cpu_split(clf: ZeroShotClassifier, signals: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median CPU seconds per ECG of preparing a batch and of encoding it, each alone on one thread."""
    preparer = BatchPreparer(ArraySource(signals, 500.0), clf.processor, len(signals))
    prep, enc = [], []
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round is the warm-up
            c0 = time.process_time()
            batch = preparer[0]
            c1 = time.process_time()
            encode_rhythm(clf.model, batch.tensors)
            c2 = time.process_time()
            prep.append(c1 - c0)
            enc.append(c2 - c1)
    n = len(signals)
    return float(np.median(prep[1:])) / n, float(np.median(enc[1:])) / n


def stage_split(clf: ZeroShotClassifier, signals: np.ndarray, repeats: int) -> dict[str, float]:
    """Median CPU ms per ECG of each preparation stage alone on one thread (same inputs as `cpu_split`)."""
    cfg, beat_cfg = clf.processor.preprocess_config, clf.processor.beat_config
    ecgs = [Ecg(s, 500.0, record_id=f"r{i}") for i, s in enumerate(signals)]
    clean = [preprocess(e, cfg) for e in ecgs]
    tokens = [tokenize_beats(c, beat_cfg) for c in clean]
    band: Any = None
    if cfg.bandpass is not None:  # the band-pass alone, as preprocess runs it on a 12 x 5000 record
        sos = sps.butter(cfg.filter_order, cfg.bandpass, btype="bandpass", fs=500.0, output="sos")
        zi = sps.sosfilt_zi(sos)[:, None, :]
        padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
        band = lambda: [zero_phase(sos, zi, s, padlen) for s in signals]  # noqa: E731
    stages = {
        "preprocess": lambda: [preprocess(e, cfg) for e in ecgs],
        "  of which band-pass": band,
        "beat tokens": lambda: [tokenize_beats(c, beat_cfg) for c in clean],
        "  of which R-peak detection": lambda: [detect_rpeaks(c.signal, 500.0, c.lead_mask, beat_cfg) for c in clean],
        "collate": lambda: clf.processor.collate(tokens),
    }
    out = {}
    for name, fn in stages.items():
        if fn is None:
            continue
        times = []
        for _ in range(repeats + 1):  # the first round is the warm-up
            c0 = time.process_time()
            fn()
            times.append(time.process_time() - c0)
        out[name] = 1e3 * float(np.median(times[1:])) / len(signals)
    return out


def bench_zeroshot(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 64 if ctx.quick else 1000
    signals = ctx.ecg_arrays(n, seed=2)
    ecgs = [Ecg(s, 500.0, record_id=f"r{i}") for i, s in enumerate(signals)]
    clf = ZeroShotClassifier(ctx.model("ecglang-small"), knowledge="default")
    clf.score_arrays(signals[:64], 500.0, LABELS, progress=False)  # embeds (and caches) the prompts

    def pipelined() -> Any:
        return clf.score_arrays(signals, 500.0, LABELS, progress=False)

    def serial() -> Any:
        return clf.score_arrays(signals, 500.0, LABELS, progress=False, num_workers=0)

    def objects() -> Any:
        return clf(ecgs, LABELS, progress=False)

    result = pipelined()
    assert len(result.scores) == n and not result.failures, result.failures[:3]
    repeats = max(2, ctx.repeats - 2)
    t_pipe, t_serial = ctx.compare(pipelined, serial, repeats=repeats)
    t_obj = ctx.time(objects, repeats=repeats)
    bf16 = ZeroShotClassifier(clf.model, knowledge=clf.knowledge, precision="bf16")  # the same loaded index
    bf16.score_arrays(signals[:64], 500.0, LABELS, progress=False)  # warm-up (prompts are cached per model)

    def pipelined_bf16() -> Any:
        return bf16.score_arrays(signals, 500.0, LABELS, progress=False)

    t_bf16 = ctx.time(pipelined_bf16, repeats=repeats)
    drift = float(np.abs(pipelined_bf16().scores.to_numpy() - result.scores.to_numpy()).max())
    ratios = ctx.ratio_columns(t_pipe, t_serial)
    rate = n / t_pipe.wall
    merl = ctx.model("merl-resnet18")
    merl_batch = EcgProcessor(return_signal=True)(ecgs[:64])

    def merl_forward() -> Any:
        with ctx.threads(2), torch.inference_mode():
            return merl.ecg_tower(merl_batch["signal"], merl_batch["lead_mask"])

    t_pipe_m, t_merl = ctx.compare(pipelined, merl_forward, repeats=repeats)
    rate_m, rate_merl = n / t_pipe_m.wall, 64 / t_merl.wall
    vs_merl = rate_m / rate_merl
    with ctx.threads(1):
        prep, enc = cpu_split(clf, signals[:64], repeats)
        stages = stage_split(clf, signals[:64], repeats)
    # Each of the cores runs both stages on its own batches (`pipeline.encode_in_workers`), so the bound is the
    # cores over the two stages' CPU together, not the slower stage.
    cores = usable_cores()
    bound = cores / (prep + enc) if encode_in_workers("cpu", False, 1) else 1.0 / max(prep, enc)
    case = f"{n} arrays 12×5000 @500 Hz, {LABELS} + knowledge, prompts cached"
    rows = [
        {
            "case": case,
            "ours": "score_arrays (default: on ≤ 4 cores each worker prepares and encodes)",
            "baseline": "score_arrays, num_workers=0",
            **ratios,
            "ECG/s": rate,
            "ECG/s baseline": n / t_serial.wall,
            "note": f"this process's CPU: {1e3 * t_pipe.cpu / n:.2f} ms/ECG (the workers' is not counted)",
            **ctx.target_columns(f"≥ {TARGET:g} ECG/s", f"{rate:.0f} ECG/s wall", rate >= TARGET),
        },
        {
            "case": case,
            "ours": "__call__ on Ecg objects",
            "ours s": t_obj.wall,
            "ECG/s": n / t_obj.wall,
        },
        {
            "case": case,
            "ours": "score_arrays, precision='bf16' (opt-in)",
            "ours s": t_bf16.wall,
            "ECG/s": n / t_bf16.wall,
            "note": f"largest score change vs float32: {drift:.1e} (cosine)",
        },
        {
            "case": case,
            "ours": "score_arrays (as above), interleaved with MERL's forward",
            "baseline": "merl-resnet18 tower forward alone, 2 threads, 64 ECGs",
            "ECG/s": rate_m,
            "ECG/s baseline": rate_merl,
            "speedup": vs_merl,
            "note": "the same run, interleaved: a load change hits both sides",
            **ctx.target_columns(f"≥ {TARGET_VS_MERL:g}× MERL forward", f"{vs_merl:.2f}×", vs_merl >= TARGET_VS_MERL),
        },
        *(
            {"case": "CPU per ECG, preparation stages alone on 1 thread (64-ECG batch)", "ours": name, "ms/ECG": ms}
            for name, ms in stages.items()
        ),
        {
            "case": "CPU per ECG, each stage alone on 1 thread (64-ECG batch)",
            "ours": "preparation | encoder",
            "ECG/s": bound,
            "note": f"preparation {1e3 * prep:.2f} ms, encoder {1e3 * enc:.2f} ms: on {cores} free cores the "
            f"pipeline is bounded at {bound:.0f} ECG/s",
        },
    ]
    if rate < TARGET <= bound:
        ctx.note(f"zeroshot: {rate:.0f} ECG/s wall-clock is below the {TARGET:g} ECG/s target, while the CPU time of "
                 f"the two stages allows {bound:.0f} ECG/s on 2 free cores: the gap is overlap loss (the first batch "
                 "is prepared before the encoder starts; the two processes share caches and memory bandwidth) and "
                 "other jobs on the shared machine (load averages above), not a compute limit")  # fmt: skip
    ctx.note(f"zeroshot: end to end {rate_m:.0f} ECG/s vs MERL's ResNet1d-18 forward alone {rate_merl:.0f} ECG/s "
             f"(2 threads), same run: {vs_merl:.2f}× (target ≥ {TARGET_VS_MERL:g}×); CPU per ECG on 1 thread: "
             + ", ".join(f"{k.strip()} {v:.2f} ms" for k, v in stages.items())
             + f", encoder {1e3 * enc:.2f} ms")  # fmt: skip
    if ctx.quick:
        ctx.note(f"zeroshot --quick: {n} arrays")
    return rows


BENCHMARKS = {"zeroshot": bench_zeroshot}

"""ECG tower benchmark: the default beat-level tower (`ecglang-small`) against the MERL-style ResNet1d-18
baseline tower (`merl-resnet18`), forward passes on the same batch of ECGs.

Both models are freshly initialised (speed does not depend on the weights). The batch is real PTB-XL
records tiled and jittered (`BenchContext.ecg_arrays`), prepared once by one `EcgProcessor` that returns
both the beat tokens (ours) and the preprocessed signal (the baseline's input), so preparing the inputs is
not timed. Rows: the tower forward alone and `encode_ecg` (tower + projection heads), at 1 and 2 torch
threads. Each row also gives the FLOPs per ECG (`torch.utils.flop_counter.FlopCounterMode`: matmuls and
convolutions) and the achieved GFLOP/s against the fp32 matmul peak measured at the same thread count
(a large `torch.mm`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.record.ecg import Ecg

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

TARGET = 2.0  # our ECGs/s over the baseline's


def count_flops(fn: Any) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_encoder(ctx: BenchContext) -> list[dict[str, Any]]:
    n = 8 if ctx.quick else 64
    signals = ctx.ecg_arrays(n, seed=1)
    batch = EcgProcessor(return_signal=True)([Ecg(s, 500.0, record_id=f"r{i}") for i, s in enumerate(signals)])
    ours, base = ctx.model("ecglang-small"), ctx.model("merl-resnet18")
    beat_inputs = [batch[k] for k in ("beats", "beat_mask", "lead_mask", "rr", "times")]
    beats_per_ecg = float(batch["beat_mask"].sum(1).float().mean())
    base_inputs = [batch["signal"], batch["lead_mask"]]
    cases = {
        "tower forward": (lambda: ours.ecg_tower(*beat_inputs), lambda: base.ecg_tower(*base_inputs)),
        "encode_ecg (tower + projections)": (lambda: ours.encode_ecg(**batch), lambda: base.encode_ecg(**batch)),
    }
    rows = []
    for threads in (1,) if ctx.quick else (1, 2):
        with ctx.threads(threads), torch.inference_mode():
            peak = ctx.matmul_peak(1024 if ctx.quick else 2048)
            for case, (fn_ours, fn_base) in cases.items():
                flops_ours, flops_base = count_flops(fn_ours), count_flops(fn_base)
                t_ours, t_base = ctx.compare(fn_ours, fn_base)
                ratios = ctx.ratio_columns(t_ours, t_base)
                gf_ours, gf_base = flops_ours / t_ours.wall / 1e9, flops_base / t_base.wall / 1e9
                rows.append({
                    "case": f"{case}, {n} ECGs ({beats_per_ecg:.1f} beats each), {threads} thread(s)",
                    "ours": "ecglang-small",
                    "baseline": "merl-resnet18",
                    **ratios,
                    "ECG/s ours": n / t_ours.wall,
                    "ECG/s baseline": n / t_base.wall,
                    "GFLOP/ECG ours": flops_ours / n / 1e9,
                    "GFLOP/ECG baseline": flops_base / n / 1e9,
                    "GFLOP/s ours": gf_ours,
                    "GFLOP/s baseline": gf_base,
                    "fp32 mm peak GFLOP/s": peak,
                    "note": f"of peak: ours {100 * gf_ours / peak:.0f} %, baseline {100 * gf_base / peak:.0f} %",
                    **ctx.target_columns(f"≥ {TARGET:g}× baseline ECG/s",
                                         f"{ratios['speedup']:.2f}× (CPU {ratios['speedup (CPU)']:.2f}×)",
                                         ratios["speedup"] >= TARGET),
                })  # fmt: skip
    if ctx.quick:
        ctx.note(f"encoder --quick: {n} ECGs, 1 thread only")
    return rows


BENCHMARKS = {"encoder": bench_encoder}

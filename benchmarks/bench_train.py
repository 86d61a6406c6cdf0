"""Training throughput: pairs/s of each config in configs/pretrain for a few optimizer steps, on this machine.

Each config runs as shipped except: `schedule.max_steps` (3; `--quick` 2), no validation or checkpoint before the
end, `train.batch_size` capped at 16 (the shipped 512 of mimic-base does not fit a CPU run), one process. The data
is prepared once with `ecglang data build` (the PTB-XL sample for smoke and ptbxl-mini; for mimic-base a synthetic
MIMIC-shaped folder of 200 records, `ecglang.data.synthetic.write_mimic_like`) and read with `data.prepared`.
Throughput is the trainer's own `samples_per_s` (pairs per second since the loop started, validation included),
so it is a lower bound of the steady-state rate.

    python benchmarks/run.py --only train
"""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the harness passes its context; no import of run.py needed at run time
    from run import BenchContext

ROOT = Path(__file__).resolve().parents[1]
MAX_BATCH = 16


def prepare(work: Path, source: str, root: Path, model: str) -> Path:
    out = work / f"prepared-{source}-{model}"
    if not (out / "manifest.json").is_file():
        cmd = [sys.executable, "-m", "ecglang.cli.main", "data", "build", source, str(root), "--out", str(out),
               "--model", model]  # fmt: skip
        subprocess.run(cmd, check=False, capture_output=True)  # exit 1 only lists left-out records
    return out


def run_config(name: str, prepared: Path, out: Path, steps: int) -> dict[str, Any]:
    from ecglang.training.config import load_config
    from ecglang.training.trainer import train

    cfg = load_config(name)
    batch = min(cfg.train.batch_size, MAX_BATCH)
    overrides = [f"data.prepared={prepared}", f"schedule.max_steps={steps}", f"train.batch_size={batch}",
                 "train.eval_every=1000", "train.checkpoint_every=1000", "train.eval_batch_size=16",
                 "data.num_workers=0", "data.val_max=16", "logging.progress=false",
                 "logging.log_every=1"]  # fmt: skip  # every step's loss is checked below, whatever the config logs
    if cfg.data.val_folds is not None:
        overrides += ["data.val_folds=null", "data.val_fraction=0.1", f"data.val_group={cfg.data.val_group or 'id'}"]
    if cfg.schedule.epochs is not None:
        overrides.append("schedule.epochs=null")
    cfg = load_config(name, overrides)
    shutil.rmtree(out, ignore_errors=True)
    result = train(cfg, output_dir=out)
    losses = [float(r["loss"]) for r in _train_rows(out)]
    finite = len(losses) == steps and all(math.isfinite(x) for x in losses)
    return {"config": name, "model": cfg.model.name, "batch": batch, "steps": result.steps,
            "pairs_per_s": round(result.samples_per_s, 2), "target": f"{steps} steps, finite losses",
            "measured": f"{len(losses)} steps", "met": "yes" if finite else "no"}  # fmt: skip


def _train_rows(out: Path) -> list[dict[str, str]]:
    with (out / "metrics.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def measure(work: Path, data_dir: Path, steps: int = 3) -> list[dict[str, Any]]:
    from ecglang.data.synthetic import write_mimic_like

    mimic = work / "mimic-200"
    if not (mimic / "machine_measurements.csv").is_file():
        write_mimic_like(mimic, 200, seed=0)
    ptbxl = data_dir / "ptbxl-sample"
    plans = {
        "smoke": prepare(work, "ptbxl", ptbxl, "ecglang-small"),
        "ptbxl-mini": prepare(work, "ptbxl", ptbxl, "ecglang-small"),
        "mimic-base": prepare(work, "mimic", mimic, "ecglang-base"),
    }
    return [run_config(name, prepared, work / f"run-{name}", steps) for name, prepared in plans.items()]


def bench_train(ctx: BenchContext) -> list[dict[str, Any]]:
    ctx.note(f"train: each config for a few steps at batch <= {MAX_BATCH}, one CPU process, data.prepared")
    return measure(ctx.work("train"), ctx.data_dir, steps=2 if ctx.quick else 3)


BENCHMARKS = {"train": bench_train}

if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in measure(Path(tmp), ROOT.parent / "shared" / "data"):
            print(row)

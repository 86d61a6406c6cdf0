#!/usr/bin/env bash
# GPU check: bf16 and fp16 training and zero-shot scoring on CUDA, with the same runs on CPU beside them.
#
#   scripts/gpu_check.sh [PTBXL_DIR] [WORK_DIR]     (default ../shared/data/ptbxl-sample, a temporary folder)
#
# 1. prepares the PTB-XL folder once (`ecglang data build ptbxl`: table + signal cache), as a real run would;
# 2. trains configs/pretrain/smoke.yaml (tiny towers, 8 steps, global batch 16) on data.prepared with
#    train.mixed_precision=bf16 and =fp16 on the GPU, and =no on the CPU (CUDA_VISIBLE_DEVICES=""), and checks
#    that each run's losses are finite and its final/ checkpoint loads;
# 3. scores the prepared cache zero-shot (the five PTB-XL superclass names as bare labels, not the ptbxl_super
#    prompt set; no knowledge) with the bf16-trained model in fp32, bf16 and fp16 on the GPU and fp32 on the CPU,
#    checking that the GPU scores agree with the CPU's;
# 4. prints one table: pairs/s (training) and ECG/s (zero-shot) per device and precision.
# Exit status 0 only when every check passed. Needs a CUDA GPU (it stops at once without one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
DATA=${1:-../shared/data/ptbxl-sample}
WORK=${2:-$(mktemp -d)}
mkdir -p "$WORK"   # a WORK_DIR given that does not exist yet
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

$PY - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch; nothing to check")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
EOF

$PY -m ecglang.cli.main data build ptbxl "$DATA" --out "$WORK/prepared" --workers 4 --model ecglang-small \
  >"$WORK/prepare.log" 2>&1 || true   # exit 1 only lists records left out; the check below decides
test -f "$WORK/prepared/manifest.json" || { tail -20 "$WORK/prepare.log"; exit 1; }

train() {  # train DEVICE PRECISION
  local dev=$1 prec=$2 env=()
  [[ $dev == cpu ]] && env=(CUDA_VISIBLE_DEVICES=)
  env "${env[@]}" $PY - "$WORK" "$dev" "$prec" <<'EOF'
import json, math, sys
from pathlib import Path
from ecglang.encoders.modeling import EcgLangModel
from ecglang.training.config import load_config
from ecglang.training.trainer import train
work, dev, prec = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
out = work / f"train-{dev}-{prec}"
cfg = load_config("configs/pretrain/smoke.yaml", [
    f"data.prepared={work / 'prepared'}", "data.limit=200", "train.batch_size=16", "train.eval_every=8",
    "train.checkpoint_every=8", f"train.mixed_precision={prec}", "train.threads=null",
])
result = train(cfg, output_dir=out)
rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
head = rows[0]
losses = [float(r[head.index("loss")]) for r in rows[1:] if r[head.index("split")] == "train"]
assert losses and all(math.isfinite(x) for x in losses), f"{dev}/{prec}: non-finite losses {losses}"
device = EcgLangModel.from_pretrained(out / "final").device
print(json.dumps({"what": "train", "device": dev, "precision": prec, "per_s": round(result.samples_per_s, 1),
                  "first_loss": losses[0], "last_loss": losses[-1]}))
EOF
}

zeroshot() {  # zeroshot DEVICE PRECISION
  local dev=$1 prec=$2 env=()
  [[ $dev == cpu ]] && env=(CUDA_VISIBLE_DEVICES=)
  env "${env[@]}" $PY - "$WORK" "$dev" "$prec" <<'EOF'
import json, sys, time
from pathlib import Path
import numpy as np, torch
from ecglang.data.prepared import PreparedDataset
from ecglang.encoders.modeling import EcgLangModel
from ecglang.scores.classifier import ZeroShotClassifier
work, dev, prec = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
model = EcgLangModel.from_pretrained(work / "train-cuda-bf16" / "final").to("cuda" if dev == "cuda" else "cpu")
shard = PreparedDataset(work / "prepared").cache.shards[0]
clf = ZeroShotClassifier(model, knowledge=None, batch_size=128, precision=prec)
labels = ["normal ecg", "myocardial infarction", "st/t change", "conduction disturbance", "hypertrophy"]
clf.score_cache(shard, labels, rows=list(range(16)), progress=False)  # warm-up
if dev == "cuda":
    torch.cuda.synchronize()
t0 = time.perf_counter()
result = clf.score_cache(shard, labels, progress=False)
if dev == "cuda":
    torch.cuda.synchronize()
n = len(shard.ok_rows)
scores = np.asarray(result.scores, dtype=np.float32)
np.save(work / f"zs-{dev}-{prec}.npy", scores)
print(json.dumps({"what": "zero-shot", "device": dev, "precision": prec,
                  "per_s": round(n / (time.perf_counter() - t0), 1), "records": n}))
EOF
}

{
  for p in bf16 fp16; do train cuda "$p"; done
  train cpu no
  for p in fp32 bf16 fp16; do zeroshot cuda "$p"; done
  zeroshot cpu fp32
} | tee "$WORK/results.jsonl"

$PY - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
work = Path(sys.argv[1])
rows = [json.loads(line) for line in (work / "results.jsonl").read_text().splitlines() if line.startswith("{")]
print(f"\n{'what':10s} {'device':6s} {'precision':9s} {'per second':>10s}")
for r in rows:
    unit = "pairs/s" if r["what"] == "train" else "ECG/s"
    print(f"{r['what']:10s} {r['device']:6s} {r['precision']:9s} {r['per_s']:10.1f} {unit}")
cpu = np.load(work / "zs-cpu-fp32.npy")
ok = True
for prec, tol in (("fp32", 1e-3), ("bf16", 5e-2), ("fp16", 1e-2)):
    gpu = np.load(work / f"zs-cuda-{prec}.npy")
    diff = float(np.abs(gpu - cpu).max())
    good = diff <= tol
    ok &= good
    print(f"zero-shot cuda {prec} vs cpu fp32: max |diff| {diff:.2e} (tolerance {tol:g}) {'ok' if good else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
echo "gpu_check: all checks passed (work folder $WORK)"

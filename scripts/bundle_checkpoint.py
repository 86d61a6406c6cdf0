"""Turn a finished pretraining run into the bundled checkpoint, with its held-out figures in the model card.

    ecglang pretrain --config configs/pretrain/ptbxl-mini.yaml --output runs/ptbxl-mini
    python scripts/bundle_checkpoint.py --run runs/ptbxl-mini --data ../shared/data --out checkpoints/ecglang-mini

    python scripts/bundle_checkpoint.py --resave checkpoints/ecglang-mini   # metadata only, same weights
    python scripts/bundle_checkpoint.py --refresh checkpoints/ecglang-mini --data ../shared/data  # figures again

The figures come only from the pairs held out from pretraining (PTB-XL strat_fold 8 of the sample): retrieval
recall and zero-shot macro AUROC on their PTB-XL superclass labels, with bootstrap 95 % CIs and the random-
encoder baseline beside them. They are in-distribution (same source, same devices) and were not used to train
or to choose the checkpoint: selection used retrieval and report-derived labels of the same held-out pairs.

`--resave FOLDER` rewrites a bundled checkpoint's metadata (config.json, model card, adapter config,
checksums) with the current code, from its own files: the weights are saved back byte for byte, the card's
training data and figures are carried over, and the model-index comes from its heldout_eval.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import yaml

from ecglang.core.checksums import sha256_file
from ecglang.encoders.modeling import EcgLangModel, load_model
from ecglang.evaluation.protocol import EvaluateConfig, run_evaluation, write_outputs
from ecglang.training.config import SELECTION_METRICS
from ecglang.training.logs import RESOLVED_CONFIG

HELD_OUT_FOLDS = [8]
# The bundled checkpoint lives in git and in the wheel: the ECG tower, heads and LoRA adapter, MiniLM by reference.
MAX_BUNDLE_BYTES = 10 * 1024 * 1024
# Model-card metadata of the bundled checkpoint (huggingface_hub model-index and header fields).
CARD_METADATA = {"license": "apache-2.0", "datasets": ["ptb-xl"], "pipeline_tag": "feature-extraction"}
EVAL_DATASET = {
    "dataset_type": "ptb-xl",
    "dataset_name": "PTB-XL v1.0.3 development sample, strat_fold 8 (held out)",
    "dataset_split": "strat_fold 8",
}


# How the card's figures are measured (`heldout_metrics`), for a reader of the card alone (the Hub has no README).
PROTOCOL = (
    "Zero-shot: every record of strat_fold 8 of the PTB-XL sample that MERL's published superclass split files "
    "label (`ptbxl_super_class_{train,val,test}.csv`, all parts) is scored against the 5 superclasses by the "
    "cosine between its rhythm embedding and each label's embedding. Label embeddings: `names`, the label's name; "
    "`prompts`, the mean of the bundled prompt set's prompts (`prompts/ptbxl_super.json`); `knowledge`, those "
    "prompts with the top snippet of the bundled knowledge base (weight 0.75). Macro AUROC with a 95 % percentile "
    "bootstrap over records (1000 resamples, seed 0), beside the random encoder: the same architecture with an "
    "untrained ECG tower and projections, the same text tower and prompts. Retrieval: the fold-8 ECG-report pairs "
    "whose reports are distinct, ranked by cosine, recall@k over queries. Reproduce with `ecglang evaluate --model "
    "MODEL --label-sets ptbxl_super --data-root ptbxl=PTBXL_SAMPLE --split-root MERL_DATA_SPLIT --part all --folds 8 "
    "--sources names prompts knowledge --retrieval --retrieval-folds 8`."
)


class BundleError(SystemExit):
    """A run that must not become the bundled checkpoint (see `check_run`), or a checkpoint over the size cap."""


def check_run(run: Path) -> None:
    """Raise `BundleError` unless `run` is an `ecglang pretrain` run whose best/ was chosen on the fold-8 pairs alone.

    The card calls the fold-8 figures held out and says no downstream label chose the checkpoint: that holds only
    when fold 8 was the run's validation part (else it trained on it), selection read pair metrics only, and the
    run was not one of several scored on the label sets to pick from (scripts/ablation.py and crossfit.py put
    `eval*/results.json` beside `train/`: bundling the best of those selects with downstream labels)."""
    saved = run / RESOLVED_CONFIG
    if not all(path.exists() for path in (run / "best", saved, run / "metrics.csv")):
        raise BundleError(f"--run {run}: not a finished `ecglang pretrain` output folder (needs best/, {saved.name} "
                          "and metrics.csv)")  # fmt: skip
    cfg = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    val_folds = (cfg.get("data") or {}).get("val_folds")
    if val_folds != HELD_OUT_FOLDS:
        raise BundleError(
            f"--run {run}: selected on data.val_folds={val_folds}, not {HELD_OUT_FOLDS}: fold "
            f"{HELD_OUT_FOLDS[0]} was not held out, so the card's held-out figures would not be"
        )
    metrics = (cfg.get("selection") or {}).get("metrics") or []
    if not metrics or set(metrics) - set(SELECTION_METRICS):
        raise BundleError(f"--run {run}: selection.metrics {metrics} are not all held-out pair metrics "
                          f"{list(SELECTION_METRICS)}")  # fmt: skip
    scored = sorted(str(p) for p in run.parent.glob("eval*/results.json"))
    if scored:
        raise BundleError(
            f"--run {run}: scored on downstream label sets beside it ({', '.join(scored)}): a run picked from a "
            "comparison on labels is selected with downstream labels; train the chosen recipe afresh and bundle that"
        )


def check_size(model: EcgLangModel, best: Path) -> None:
    """Raise `BundleError` when `model` saved as a checkpoint (the card adds a few kB) exceeds `MAX_BUNDLE_BYTES`."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(Path(tmp) / "ckpt")
        size = sum(p.stat().st_size for p in (Path(tmp) / "ckpt").rglob("*") if p.is_file())
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"{best}: the checkpoint would be {size / 2**20:.1f} MiB, over the {MAX_BUNDLE_BYTES / 2**20:.0f} MiB "
            "of a bundled checkpoint (a larger tower, or text_tower.finetune=full?); publish it on the Hub instead"
        )


def eval_results(metrics: dict[str, str]) -> list[dict]:
    """The held-out figures as model-index entries (`huggingface_hub.EvalResult` fields): the point value
    that each formatted figure starts with. Training steps and times are not metrics and are left out."""
    out = []
    for name, text in metrics.items():
        if "AUROC" in name:
            task = {"task_type": "zero-shot-classification", "metric_type": "roc_auc"}
        elif "recall@" in name:
            task = {"task_type": "retrieval", "task_name": "ECG-report retrieval", "metric_type": "recall"}
        else:
            continue
        out.append({**task, **EVAL_DATASET, "metric_name": name, "metric_value": float(text.split()[0])})
    return out


def resave(folder: Path) -> int:
    """Rewrite `folder`'s metadata with the current code; the weights must come back byte for byte."""
    weights = ["model.safetensors", "text_adapter/adapter_model.safetensors"]
    before = {name: sha256_file(folder / name) for name in weights if (folder / name).is_file()}
    metrics = json.loads((folder / "heldout_eval.json").read_text(encoding="utf-8"))["metrics"]
    model = EcgLangModel.from_pretrained(folder)
    model.save_pretrained(folder, card={**CARD_METADATA, "protocol": PROTOCOL, "eval_results": eval_results(metrics)})
    after = {name: sha256_file(folder / name) for name in before}
    if after != before:
        print(f"error: the weights changed on re-save: {before} -> {after}", file=sys.stderr)
        return 1
    print(f"metadata of {folder} rewritten; weights unchanged: {json.dumps(after, indent=2)}")
    return 0


def _ci(d: dict) -> str:
    return f"{d['point']:.3f} (95 % CI {d['low']:.3f}–{d['high']:.3f})"


def _training_summary(run: Path) -> dict[str, str]:
    with open(run / "metrics.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["split"] == "train"]
    last = train[-1]
    rates = [float(r["samples_per_s"]) for r in train if r["samples_per_s"]]
    return {
        "steps": last["step"],
        "wall time": f"{float(last['elapsed_s']) / 60:.1f} min on {_cpu()}",
        "throughput": f"{sorted(rates)[len(rates) // 2]:.1f} pairs/s (median)",
    }


def _cpu() -> str:
    import os

    return f"{os.cpu_count()} CPU cores"


def heldout_metrics(model: str | Path, data: Path, out_dir: Path, n_boot: int) -> tuple[dict[str, str], dict]:
    """The held-out figures of the card: zero-shot AUROC (names, prompts, knowledge) and retrieval on fold 8."""
    cfg = EvaluateConfig(
        model=str(model),
        label_sets=["ptbxl_super"],
        data_roots=[f"ptbxl={data / 'ptbxl-sample'}"],
        split_root=data / "merl" / "data_split",
        part="all",
        folds=HELD_OUT_FOLDS,
        sources=["names", "prompts", "knowledge"],
        retrieval=True,
        retrieval_folds=HELD_OUT_FOLDS,
        n_boot=n_boot,
        device="cpu",
    )
    written = write_outputs(run_evaluation(cfg), out_dir)
    tree = json.loads(Path(written["results_json"]).read_text(encoding="utf-8"))
    sources = tree["label_sets"]["ptbxl_super"]["sources"]
    ret = tree["retrieval"]
    metrics: dict[str, str] = {}
    for name in ("names", "prompts", "knowledge"):
        metrics[f"zero-shot macro AUROC, PTB-XL superclass, {name} (in-distribution)"] = (
            f"{_ci(sources[name]['model']['macro_auroc'])}; random encoder "
            f"{_ci(sources[name]['random']['macro_auroc'])}"
        )
    for direction in ("ecg_to_report", "report_to_ecg"):
        for k in (1, 5):
            m, r = ret["model"][direction][f"recall@{k}"], ret["random"][direction][f"recall@{k}"]
            pretty = {"ecg_to_report": "ECG→report", "report_to_ecg": "report→ECG"}[direction]
            metrics[f"held-out retrieval {pretty} recall@{k}"] = (
                f"{m:.3f} (random encoder {r:.3f}; chance@1 {ret['chance_recall@1']:.3f})"
            )
    return metrics, tree


def refresh(folder: Path, data: Path, n_boot: int) -> int:
    """Recompute a bundled checkpoint's held-out figures with the current code (e.g. after the knowledge
    retrieval changed) and rewrite its card; the training figures are kept and the weights stay byte for byte."""
    old = json.loads((folder / "heldout_eval.json").read_text(encoding="utf-8"))["metrics"]
    with tempfile.TemporaryDirectory() as tmp:
        metrics, _ = heldout_metrics(folder, data, Path(tmp), n_boot)
    metrics.update({k: v for k, v in old.items() if k.startswith("training ")})
    (folder / "heldout_eval.json").write_text(json.dumps({"metrics": metrics}, indent=2) + "\n", encoding="utf-8")
    weights = ["model.safetensors", "text_adapter/adapter_model.safetensors"]
    before = {name: sha256_file(folder / name) for name in weights if (folder / name).is_file()}
    model = EcgLangModel.from_pretrained(folder)
    card = {**CARD_METADATA, "protocol": PROTOCOL, "metrics": metrics, "eval_results": eval_results(metrics)}
    model.save_pretrained(folder, card=card)
    if {name: sha256_file(folder / name) for name in before} != before:
        print("error: the weights changed on re-save", file=sys.stderr)
        return 1
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, help="output folder of `ecglang pretrain`")
    p.add_argument("--data", type=Path, help="folder holding ptbxl-sample/ and merl/data_split/")
    p.add_argument("--out", type=Path, help="where to write the checkpoint")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--resave", type=Path, help="rewrite this checkpoint's metadata only (see above)")
    p.add_argument("--refresh", type=Path, help="recompute this bundled checkpoint's held-out figures (needs --data)")
    args = p.parse_args(argv)
    if args.resave is not None:
        return resave(args.resave)
    if args.refresh is not None:
        if args.data is None:
            p.error("--refresh needs --data")
        return refresh(args.refresh, args.data, args.n_boot)
    if args.run is None or args.data is None or args.out is None:
        p.error("--run, --data and --out are required (or --resave FOLDER)")

    check_run(args.run)
    best = args.run / "best"
    model = load_model(best, device="cpu")
    check_size(model, best)  # before the held-out evaluation: a refused bundle costs seconds and leaves no --out
    metrics, tree = heldout_metrics(best, args.data, args.run / "heldout-eval", args.n_boot)
    ret = tree["retrieval"]
    n_records = tree["label_sets"]["ptbxl_super"]["sources"]["prompts"]["model"]["n_records"]
    summary = _training_summary(args.run)
    metrics.update({f"training {k}": v for k, v in summary.items()})

    training_data = (
        f"The 353 real PTB-XL v1.0.3 ECG–report pairs of the development sample (first 500 ecg_ids, strat_folds "
        f"1–8; reports translated to English by `ecglang.text.reports.normalize_report`). Folds 1–7 trained the model; "
        f"fold {HELD_OUT_FOLDS[0]} ({n_records} records with superclass labels; {ret['pairs']} retrieval pairs "
        f"after dropping {ret['dropped_duplicate_reports']} repeated reports) was held out for checkpoint "
        "selection (retrieval recall and report-derived labels only) and for the figures below. PTB-XL is "
        "CC BY 4.0 (Wagner et al., PhysioNet)."
    )
    notes = "\n".join(
        [
            "### How this checkpoint was made",
            "",
            "```bash",
            "ecglang pretrain --config configs/pretrain/ptbxl-mini.yaml --output runs/ptbxl-mini",
            f"python scripts/bundle_checkpoint.py --run runs/ptbxl-mini --data ../shared/data --out {args.out}",
            "```",
            "",
            "The held-out figures are *in-distribution* (same source and devices as training) and come from only "
            f"{n_records} records, hence the wide CIs; the random encoder (same architecture, untrained ECG tower and "
            "projections, same text tower and prompts) is shown beside every figure. This is a small demonstration "
            "model trained on CPU in under an hour, not a clinical tool and not a substitute for a model pretrained "
            "on MIMIC-IV-ECG (see configs/pretrain/mimic-base.yaml).",
        ]
    )
    card = {**CARD_METADATA, "training_data": training_data, "protocol": PROTOCOL, "metrics": metrics, "notes": notes}
    model.save_pretrained(args.out, card={**card, "eval_results": eval_results(metrics)})
    (args.out / "heldout_eval.json").write_text(json.dumps({"metrics": metrics}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"checkpoint written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cross-fitted zero-shot evaluation: every PTB-XL sample fold held out in turn, so that prompt sources are
compared on all the sample's records instead of fold 8 alone (13 records carry a form label there).

For each fold k of 1-8 the ablation recipe (configs/ablation.yaml, one variant, one seed) trains on the other
seven folds and selects its checkpoint on fold k's *pairs* (retrieval and report-derived labels, never
downstream labels); `ecglang evaluate --save-scores` then scores fold k's records with every prompt source. Each
record is scored once, by the one model that never trained on it. No label chooses anything here: this measures.

Pooling. The eight models' cosine scores need not share a scale, so every (fold, source, side, label) column is
standardised over its fold's records (z-score; it reads scores only, no labels) before the folds are joined.
Macro AUROC then has a 95 % bootstrap CI over the pooled records, and sources are compared by the paired
bootstrap (`ecglang.evaluation.compare`), beside the random encoder of each fold's model.

    python scripts/crossfit.py --data ../shared/data                      # train + score the 8 folds, resumable
    python scripts/crossfit.py --report-only                              # pool and rewrite docs/CROSSFIT.md

About 4 minutes per fold on 2 cores (100 steps).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from ablation import (
    LABEL_SETS,
    RECIPE,
    VARIANTS,
    RunFolderError,
    check_data,
    check_run_folder,
    fmt_ci,
    pretrain,
    run_cli,
    settings_text,
    zero_shot_args,
)

from ecglang.evaluation.compare import paired_difference
from ecglang.evaluation.metrics import evaluate_scores

FOLDS = tuple(range(1, 9))
CKEPE = "external:CKEPE_prompt"
SOURCES = ("names", "prompts", "knowledge", CKEPE)
# "A − B" comparisons of the report: the issue-14 checks first, then what the prompt sets add to the names.
COMPARISONS = (("knowledge", "names"), ("knowledge", CKEPE), ("knowledge", "prompts"), ("prompts", "names"))
BASELINES = ("ecglang-mini", "resnet-baseline")  # issue 17's two references


def fold_dir(args: argparse.Namespace, fold: int, variant: str | None = None) -> Path:
    return run_dir(args.runs, args.seed, variant or args.variant, fold)


def run_dir(runs: Path, seed: int, variant: str, fold: int) -> Path:
    return runs / f"{variant}-s{seed}-f{fold}"


def check_fold(args: argparse.Namespace, fold: int, variant: str | None = None) -> None:
    """`RunFolderError` when the fold's run was trained with another schedule, seed or recipe than --max-steps etc.
    (the folder name carries variant, seed and fold, not the schedule)."""
    check_run_folder(fold_dir(args, fold, variant) / "train", variant or args.variant, args.seed, args.data,
                     args.max_steps, fold)  # fmt: skip


def scored_variants(args: argparse.Namespace) -> list[str]:
    """The variants (recipe order) whose eight folds are all scored in --runs with this schedule; a variant
    scored at another schedule is left out (said on stdout): its differences would mix two schedules."""
    done = lambda v: all((fold_dir(args, f, v) / "eval" / "results.json").is_file() for f in FOLDS)  # noqa: E731
    out = []
    for v in (v for v in VARIANTS if done(v)):
        try:
            for fold in FOLDS:
                check_fold(args, fold, v)
        except RunFolderError as exc:
            print(f"{v}: left out of the variant tables: {exc}", flush=True)
            continue
        out.append(v)
    return out


def train_and_score(args: argparse.Namespace, fold: int) -> None:
    """Train the variant with `fold` held out (unless finished), then score that fold's records once."""
    out = fold_dir(args, fold)
    out.mkdir(parents=True, exist_ok=True)
    check_fold(args, fold)  # a finished run of another schedule is not this one: never reuse it or its scores
    if not (out / "train" / "final").is_dir():
        print(f"fold {fold}: training {args.variant} (seed {args.seed}, {args.max_steps} steps) ...", flush=True)
        seconds = pretrain(args.variant, args.seed, args.data, args.max_steps, out, fold)
        print(f"fold {fold}: trained in {seconds:.0f} s", flush=True)
    if (out / "eval" / "results.json").is_file():
        print(f"fold {fold}: trained and scored, skipped", flush=True)
        return
    print(f"fold {fold}: scoring ...", flush=True)
    sources = ["names", "prompts", "knowledge", f"external:{args.data / 'merl' / 'CKEPE_prompt.json'}"]
    flags = ["--n-boot", "100", "--no-progress", "--save-scores"]
    run_cli([*zero_shot_args(out, args, sources, "eval", fold), *flags], out / "ablation.log")


def pooled_scores(args: argparse.Namespace, label_set: str, variant: str | None = None) -> pd.DataFrame:
    """Every fold's scores of one label set, each (source, side, label) column z-scored within its fold (read
    once per variant and set: the sources table and both variant tables share it; callers only filter it)."""
    return _pooled_scores(args.runs, args.seed, variant or args.variant, label_set)


@functools.cache
def _pooled_scores(runs: Path, seed: int, variant: str, label_set: str) -> pd.DataFrame:
    parts = []
    for fold in FOLDS:
        path = run_dir(runs, seed, variant, fold) / "eval" / f"scores_{label_set}.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run without --report-only to score fold {fold}")
        df = pd.read_csv(path, dtype={"record_id": str, "label": str})
        z = df.groupby(["source", "side", "label"])["score"].transform(lambda s: (s - s.mean()) / (s.std() or 1.0))
        parts.append(df.assign(score=z, fold=fold))
    return pd.concat(parts, ignore_index=True)


def matrices(df: pd.DataFrame, side: str, source: str, codes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`(y, scores)`, both `[records, codes]`, of one source and side; records in one fixed order."""
    part = df[(df["side"] == side) & (df["source"] == source)]
    wide = part.pivot_table(index=["fold", "record_id"], columns="label", values=["truth", "score"])
    return wide["truth"][codes].to_numpy().astype(int), wide["score"][codes].to_numpy()


def compare_variants(args: argparse.Namespace, variants: list[str], label_set: str, source: str) -> dict:
    """Each variant's pooled macro AUROC on one source, and its paired difference from the two baselines: the
    same records (every fold), scored by models trained on the same folds with the same recipe."""
    frames = {v: pooled_scores(args, label_set, v) for v in variants}
    codes = sorted(set.intersection(*(set(f.loc[f["source"] == source, "label"]) for f in frames.values())))
    scored = {v: matrices(f, "model", source, codes) for v, f in frames.items()}
    y = scored[variants[0]][0]
    out: dict = {}
    for v, (yv, s) in scored.items():
        if yv.shape != y.shape or (yv != y).any():
            raise SystemExit(f"{label_set}: {v} was scored on other records than {variants[0]}")
        out[v] = {"model": evaluate_scores(y, s, codes, n_boot=args.n_boot, seed=0).macro_auroc.to_dict()}
        _, rnd = matrices(frames[v], "random", source, codes)
        out[v]["random"] = evaluate_scores(y, rnd, codes, n_boot=0).macro_auroc.point
        for base in BASELINES:
            if base in scored and base != v:
                res = paired_difference(y, s, scored[base][1], n_resamples=args.n_boot, seed=0)
                out[v][f"− {base}"] = res["difference"]
    return out


def pool_label_set(args: argparse.Namespace, label_set: str) -> dict:
    df = pooled_scores(args, label_set)
    codes = sorted(set.intersection(*(set(df.loc[df["source"] == s, "label"]) for s in SOURCES)))
    out: dict = {"records": int(df[["fold", "record_id"]].drop_duplicates().shape[0]), "labels": len(codes)}
    out["per_fold_records"] = {int(f): int(g["record_id"].nunique()) for f, g in df.groupby("fold")}
    wide = {(source, side): matrices(df, side, source, codes) for source in SOURCES for side in ("model", "random")}
    y = wide[(SOURCES[0], "model")][0]
    out["labels_with_both_classes"] = int(((y.sum(0) > 0) & (y.sum(0) < len(y))).sum())
    out["sources"] = {}
    for source in SOURCES:
        out["sources"][source] = {}
        for side in ("model", "random"):
            ys, s = wide[(source, side)]
            assert (ys == y).all()  # one truth for every source and side
            res = evaluate_scores(ys, s, codes, n_boot=args.n_boot, seed=0)
            out["sources"][source][side] = res.macro_auroc.to_dict()
    out["paired"] = {}
    for a, b in COMPARISONS:
        res = paired_difference(y, wide[(a, "model")][1], wide[(b, "model")][1], n_resamples=args.n_boot, seed=0)
        out["paired"][f"{a} − {b}"] = {"difference": res["difference"], "verdict": res["verdict"]}
    return out


def scoring_settings(args: argparse.Namespace) -> str:
    """What every fold was scored with, as its `results.json` says (knowledge k and weight)."""
    seen = set()
    for fold in FOLDS:
        path = fold_dir(args, fold) / "eval" / "results.json"
        protocol = json.loads(path.read_text(encoding="utf-8")).get("protocol", {}) if path.is_file() else {}
        know = protocol.get("knowledge") or {}
        seen.add(settings_text(know))
    return "; ".join(sorted(seen)) if len(seen) == 1 else "mixed settings: " + "; ".join(sorted(seen))


def fmt_diff(ci: dict) -> str:
    return f"{ci['point']:+.3f} ({ci['low']:+.3f}..{ci['high']:+.3f})"


def write_report(pooled: dict, variants: dict, args: argparse.Namespace) -> str:
    lines = [
        "# Cross-fitted zero-shot evaluation: every sample fold held out in turn",
        "",
        f"Written by `scripts/crossfit.py` (see its docstring). Variant `{args.variant}`, seed {args.seed}, "
        f"{args.max_steps} steps of the ablation recipe (`configs/ablation.yaml`), trained eight times: each PTB-XL "
        "sample fold held out once for checkpoint selection (its pairs only) and scored once, by the model that "
        "never trained on it. Scores are z-scored within each fold's column before pooling (score-only, no labels). "
        f"Macro AUROC with a 95 % bootstrap CI over the pooled records ({args.n_boot} resamples); each fold's "
        "random encoder beside it. These figures read downstream labels, so no default was chosen from them (they "
        "suggested the opt-in ambiguity check, `--drop-ambiguous-prompts`; see the README). "
        f"Scored with {scoring_settings(args)}.",
        "",
        "| label set | records | labels (both classes) | "
        + " | ".join(f"{s} · model | {s} · random" for s in SOURCES)
        + " |",
        "|---|---|---|" + "---|---|" * len(SOURCES),
    ]
    for name, r in pooled.items():
        cells = [f"{fmt_ci(r['sources'][s]['model'])} | {r['sources'][s]['random']['point']:.3f}" for s in SOURCES]
        lines.append(f"| {name} | {r['records']} | {r['labels']} ({r['labels_with_both_classes']}) | "
                     + " | ".join(cells) + " |")  # fmt: skip
    lines += ["", "Paired differences of the model's macro AUROC (same records, same resamples), with the verdict "
              "of `ecglang.evaluation.compare`, which follows the CI alone (`better`: CI wholly above 0; `worse`: "
              "CI wholly below 0; `not distinguishable`: the CI holds 0, whatever the sign of the point):",
              ""]  # fmt: skip
    lines += ["| label set | " + " | ".join(f"{a} − {b}" for a, b in COMPARISONS) + " |",
              "|---|" + "---|" * len(COMPARISONS)]  # fmt: skip
    for name, r in pooled.items():
        cells = [f"{fmt_diff(r['paired'][f'{a} − {b}']['difference'])} {r['paired'][f'{a} − {b}']['verdict']}"
                 for a, b in COMPARISONS]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    per_fold = next(iter(pooled.values()))["per_fold_records"]
    lines += ["", "Records per fold (" + next(iter(pooled)) + "): "
              + ", ".join(f"{f}: {n}" for f, n in per_fold.items()) + "."]  # fmt: skip
    for source, table in variants.items():
        lines += variants_section(source, table, args)
    return "\n".join(lines) + "\n"


def variants_section(source: str, table: dict, args: argparse.Namespace) -> list[str]:
    """Variants side by side on one source (supplementary to docs/ABLATION.md, whose rule decides)."""
    names = list(next(iter(table.values())))
    lines = [
        "",
        f"## Variants, `{source}` source (supplementary to docs/ABLATION.md)",
        "",
        f"Each variant trained eight times (seed {args.seed}, one per held-out fold), so each row averages eight "
        "trainings; docs/ABLATION.md's rule (fold 8, three seeds, margin over the seed spread) decides the default, "
        "this table does not. Pooled macro AUROC (95 % CI), random encoder after the slash; then the paired "
        "difference from each baseline over the same records.",
        "",
        "| variant | " + " | ".join(LABEL_SETS) + " | mean of the four |",
        "|---|" + "---|" * (len(LABEL_SETS) + 1),
    ]
    for v in names:
        cells = [f"{fmt_ci(table[n][v]['model'])} / {table[n][v]['random']:.3f}" for n in LABEL_SETS]
        mean = np.mean([table[n][v]["model"]["point"] for n in LABEL_SETS])
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {mean:.3f} |")
    lines += ["", "| variant | " + " | ".join(f"{n}: − {b}" for b in BASELINES for n in LABEL_SETS) + " |",
              "|---|" + "---|" * (len(LABEL_SETS) * len(BASELINES))]  # fmt: skip
    for v in names:
        cells = [
            fmt_diff(table[n][v][f"− {b}"]) if f"− {b}" in table[n][v] else "–" for b in BASELINES for n in LABEL_SETS
        ]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with ptbxl-sample/ and merl/")
    p.add_argument("--runs", type=Path, default=Path("runs/crossfit"))
    p.add_argument("--variant", default="ecglang-mini", choices=sorted(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--report", type=Path, default=Path("docs/CROSSFIT.md"))
    p.add_argument("--results", type=Path, default=Path("docs/crossfit_results.json"), help="the pooled figures")
    p.add_argument("--report-only", action="store_true", help="pool the scored folds; train and score nothing")
    p.add_argument("--folds", nargs="+", type=int, choices=FOLDS, default=list(FOLDS),
                   help="train and score only these held-out folds (default: all; the report pools all 8)")  # fmt: skip
    args = p.parse_args(argv)
    if not args.report_only:
        check_data(args.data)
        for fold in args.folds:
            train_and_score(args, fold)
    missing = [f for f in FOLDS if not (fold_dir(args, f) / "eval" / "results.json").is_file()]
    if missing and not args.report_only:
        print(f"folds {', '.join(map(str, missing))} not scored yet: no report (it pools all eight)")
        return 0
    for fold in FOLDS:  # the report says --max-steps: every fold must have been trained with it
        check_fold(args, fold)
    pooled = {name: pool_label_set(args, name) for name in LABEL_SETS}
    scored = scored_variants(args)
    variants = {}
    if len(scored) > 1:  # source → label set → variant → figures
        variants = {
            src: {n: compare_variants(args, scored, n, src) for n in LABEL_SETS} for src in ("prompts", "knowledge")
        }
    payload = {"variant": args.variant, "seed": args.seed, "max_steps": args.max_steps, "recipe": RECIPE,
               "label_sets": pooled, "variants": variants}  # fmt: skip
    args.results.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    args.report.write_text(write_report(pooled, variants, args), encoding="utf-8")
    print(f"{args.report}, {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

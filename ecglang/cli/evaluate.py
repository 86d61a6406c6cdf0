"""`ecglang evaluate`: the published zero-shot protocol (label splits, prompt sources side by side,
random-encoder baseline, bootstrap CIs, optional linear probe and retrieval). See docs/EVALUATION.md."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="zero-shot evaluation on published label splits, with a random-encoder baseline",
        description="Evaluate a checkpoint with the published zero-shot protocol: every prompt source on the same "
        "ECG embeddings, beside a random-encoder baseline, with bootstrap CIs. Writes results.json, results.md, "
        "roc_<label set>.png, failures.csv and missing.csv into --out. Records missing from disk are counted and "
        "reported; records that cannot be read or processed are listed and make the exit status 1, but the "
        "evaluation goes on without them. See docs/EVALUATION.md.",
    )
    p.add_argument("--model", required=True, metavar="DIR|HUB_ID", help="checkpoint folder or Hugging Face Hub id")
    data = p.add_argument_group("data")
    data.add_argument(
        "--label-sets", nargs="+", default=[], metavar="NAME",
        help="published label sets: ptbxl_super ptbxl_sub ptbxl_form ptbxl_rhythm cpsc2018 (alias icbeb) chapman",
    )  # fmt: skip
    data.add_argument("--split-root", metavar="DIR", help="the MERL data_split folder (label split CSVs)")
    data.add_argument(
        "--data-root", nargs="+", default=[], metavar="DIR|DATASET=DIR",
        help="record roots: one DIR for every dataset and/or ptbxl=DIR cpsc2018=DIR chapman=DIR",
    )  # fmt: skip
    data.add_argument("--part", default="test", choices=["train", "val", "test", "all"],
                      help="split part to evaluate (default test)")  # fmt: skip
    data.add_argument("--labels-csv", metavar="FILE", help="any labels CSV: a record-id column + 0/1 label columns")
    data.add_argument("--records", metavar="DIR", help="folder of the records named in --labels-csv")
    data.add_argument("--id-column", metavar="COL", help="record-id column of --labels-csv (default: guessed)")
    data.add_argument("--prompt-set", metavar="NAME|FILE", help="prompt set for --labels-csv (default: column names)")
    data.add_argument("--folds", nargs="+", type=int, metavar="FOLD",
                      help="PTB-XL strat_folds to keep, e.g. 8 for the pairs held out from pretraining")  # fmt: skip
    data.add_argument("--limit", type=int, metavar="N", help="at most N records per label set (seeded sample)")
    zs = p.add_argument_group("zero-shot")
    zs.add_argument(
        "--sources", nargs="+", default=["names", "prompts", "knowledge"], metavar="SOURCE",
        help="prompt sources compared side by side: names prompts knowledge external:PATH (default: the first three)",
    )  # fmt: skip
    zs.add_argument("--preprocess", default="default", choices=["default", "merl_compat"],
                    help="the model's preprocessing, or MERL's (min-max, no filter; CPSC: 2500 samples)")  # fmt: skip
    zs.add_argument("--knowledge", default="default", metavar="DIR|default", help="knowledge base for 'knowledge'")
    zs.add_argument("-k", type=int, default=3, help="snippets retrieved per label (default 3)")
    zs.add_argument("--knowledge-weight", type=float, default=0.5, help="weight of knowledge prompts (default 0.5)")
    stats = p.add_argument_group("statistics")
    stats.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs (default 1000)")
    stats.add_argument("--seed", type=int, default=0, help="seed of the bootstrap, --limit samples and the probe")
    stats.add_argument("--random-seed", type=int, help="seed of the random-encoder baseline (default --seed)")
    probe = p.add_argument_group("linear probe")
    probe.add_argument("--probe", action="store_true", help="also run the linear probe (1 %%, 10 %%, 100 %% labels)")
    probe.add_argument("--probe-train", default="train", choices=["train", "val", "test", "all"])
    probe.add_argument("--probe-test", default="val", choices=["train", "val", "test", "all"])
    probe.add_argument("--probe-train-folds", nargs="+", type=int, metavar="FOLD", help="restrict the train part")
    probe.add_argument("--probe-test-folds", nargs="+", type=int, metavar="FOLD", help="restrict the test part")
    probe.add_argument("--probe-fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0], metavar="F")
    probe.add_argument("--probe-epochs", type=int, default=300)
    probe.add_argument("--probe-limit", type=int, metavar="N", help="records per probe part (default --limit)")
    ret = p.add_argument_group("retrieval")
    ret.add_argument("--retrieval", action="store_true", help="also run ECG<->report retrieval on PTB-XL")
    ret.add_argument("--retrieval-folds", nargs="+", type=int, default=[10], metavar="FOLD",
                     help="PTB-XL strat_folds held out from pretraining (default 10)")  # fmt: skip
    ret.add_argument("--retrieval-limit", type=int, metavar="N", help="at most N pairs (seeded sample)")
    run = p.add_argument_group("run")
    run.add_argument("--out", default="eval_results", metavar="DIR", help="output folder (default eval_results)")
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ecglang.evaluation.protocol import EvaluateConfig, run_evaluation, write_outputs

    cfg = EvaluateConfig(
        model=args.model, label_sets=list(args.label_sets), data_roots=list(args.data_root),
        split_root=args.split_root, part=args.part, folds=args.folds, sources=list(args.sources),
        labels_csv=args.labels_csv, records=args.records, id_column=args.id_column, prompt_set=args.prompt_set,
        preprocess=args.preprocess,
        n_boot=args.n_boot, seed=args.seed, random_seed=args.random_seed, limit=args.limit,
        batch_size=args.batch_size, knowledge=args.knowledge, k=args.k, knowledge_weight=args.knowledge_weight,
        device=args.device, probe=args.probe, probe_train=args.probe_train, probe_test=args.probe_test,
        probe_train_folds=args.probe_train_folds, probe_test_folds=args.probe_test_folds,
        probe_fractions=list(args.probe_fractions), probe_epochs=args.probe_epochs, probe_limit=args.probe_limit,
        retrieval=args.retrieval, retrieval_folds=list(args.retrieval_folds), retrieval_limit=args.retrieval_limit,
        progress=not args.no_progress,
    )  # fmt: skip
    result = run_evaluation(cfg)
    written = write_outputs(result, args.out)
    out = Path(args.out)
    print(f"\n{(out / 'results.md').read_text(encoding='utf-8')}")
    print(f"outputs in {out}: " + ", ".join(sorted(p.name for p in written.values())))
    if result.failures:
        print(f"\n{len(result.failures)} record(s) failed (listed in {out / 'failures.csv'}):", file=sys.stderr)
        for f in result.failures[:10]:
            print(f"  [{f.stage}] {f.record}: {f.error}", file=sys.stderr)
        return 1
    if not result.evaluated_any:
        print("\nno label set had records to evaluate (see the Records table and missing.csv)", file=sys.stderr)
        return 1
    return 0

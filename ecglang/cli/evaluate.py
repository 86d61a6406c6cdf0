"""`ecglang evaluate`: the published zero-shot protocol (label splits, prompt sources side by side,
random-encoder baseline, bootstrap CIs, optional linear probe and retrieval). See docs/EVALUATION.md."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ecglang.core.outputs import output_folder
from ecglang.errors import ConfigError, UsageError
from ecglang.evaluation.config import add_arguments, from_args

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="zero-shot evaluation on published label splits, with a random-encoder baseline",
        description="Evaluate a checkpoint with the published zero-shot protocol: every prompt source on the same "
        "ECG embeddings, beside a random-encoder baseline, with bootstrap CIs. Writes results.json, results.md, "
        "roc_<label set>.png, failures.csv and missing.csv into --out. Records missing from disk are counted and "
        "reported; records that cannot be read or processed are listed and make the exit status 1, but the "
        "evaluation goes on without them; a run that computed no figure exits 1 too. Re-using --out removes the "
        "files the earlier run there wrote (named in a warning). See docs/EVALUATION.md.",
    )
    # Every flag but --out comes from EvaluateConfig's fields (ecglang.evaluation.config).
    groups = add_arguments(p)
    groups["run"].add_argument(
        "--out", default="eval_results", metavar="DIR", type=output_folder, help="output folder (default eval_results)"
    )
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    try:
        cfg = from_args(args)
        cfg.validate()  # the flags alone decide these (`--labels-csv` without `--records`, ...): before torch loads
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    # Here, not at the top: `ecglang --help` must not wait for torch, scipy and matplotlib.
    from ecglang.evaluation.protocol import run_evaluation
    from ecglang.evaluation.writers import cut_prompts_text, left_out_columns, missing_rows, write_outputs

    result = run_evaluation(cfg)
    written = write_outputs(result, args.out)
    out = Path(args.out)
    print(f"\n{(out / 'results.md').read_text(encoding='utf-8')}")
    print(f"outputs in {out}: " + ", ".join(sorted(p.name for p in written.values())))
    # what the tables leave out, said where a script's log shows it (results.md has it too); the exit status is kept
    for name, entry in result.tree["label_sets"].items():
        texts = (left_out_columns(name, entry), missing_rows(name, entry, written["missing"]))
        for text in (*texts, *cut_prompts_text(name, entry)):
            if text:
                print(f"warning: {text}", file=sys.stderr)
    status = 0
    if result.failures:
        print(f"\n{len(result.failures)} record(s) failed (listed in {out / 'failures.csv'}):", file=sys.stderr)
        for f in result.failures[:10]:
            print(f"  {f}", file=sys.stderr)
        status = 1
    if not result.evaluated_any:
        print("\nno label set had records to evaluate (see the Records table and missing.csv)", file=sys.stderr)
        for name, entry in result.tree["label_sets"].items():
            if entry.get("status"):
                print(f"  {name}: {entry['status']}", file=sys.stderr)
        return 1
    unmeasured = result.unmeasured
    if unmeasured:
        # a run that measured nothing must not pass for a success in a pipeline
        kind = "warning" if result.measured_any else "error"
        print(f"\n{kind}: no macro AUROC for {', '.join(unmeasured)}: no class has both values (0 and 1) among the "
              "evaluated records (see results.md)", file=sys.stderr)  # fmt: skip
    if not result.measured_any:
        return 1
    return status

"""`ecglang prototypes build`: the FAISS index of reference beats that zero-shot's `--prototypes` reads."""

from __future__ import annotations

import argparse

from ecglang.cli import count, print_failures, show_help, workers
from ecglang.core.outputs import output_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prototypes",
        help="case-based explanations: index the beats of a reference set",
        description="Embed every beat of a reference set of records (e.g. the pretraining pairs) with a model and "
        "write a prototype index; `ecglang zero-shot --prototypes DIR` then shows the reference beats nearest to "
        "the beat behind each score, with their reports.",
    )
    actions = parser.add_subparsers(dest="prototypes_action", metavar="ACTION")
    build = actions.add_parser("build", help="build a prototype index from a folder of records")
    build.add_argument("--records", nargs="+", required=True, metavar="PATH", help="record files and/or folders")
    build.add_argument("--out", required=True, type=output_folder, metavar="DIR", help="index folder to write")
    build.add_argument(
        "--model", default=None, metavar="DIR|HUB_ID", help="checkpoint (default: the bundled ecglang-mini)"
    )
    build.add_argument(
        "--reports",
        metavar="CSV",
        help="reports: PTB-XL's ptbxl_database.csv, or a CSV with report and id (or path: the record's file, "
        "relative to the CSV's folder) columns (default: a ptbxl_database.csv in the first records folder or up to "
        "two folders above it, if any)",
    )
    build.add_argument(
        "--beats-per-record", type=count, metavar="N", help="keep at most N beats a record (default: all)"
    )
    build.add_argument("--no-windows", action="store_true", help="do not store beat windows (figures show no trace)")
    build.add_argument("--batch-size", type=count, default=32, help="records per batch (default 32)")
    build.add_argument(
        "--num-workers", "--workers", type=workers, default=None, help="preparing processes (default: automatic)"
    )
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=_build)
    parser.set_defaults(func=show_help(parser))


def _build(args: argparse.Namespace) -> int:
    # Here, not at the top: `ecglang --help` must not wait for torch and FAISS.
    from ecglang.embeddings.prototypes import build_prototypes, find_reports, read_reports
    from ecglang.encoders.modeling import load_model

    reports_path = args.reports or find_reports(args.records[0])
    reports = read_reports(reports_path) if reports_path else {}
    model = load_model(args.model)
    index, failures = build_prototypes(
        model, args.records, args.out, reports=reports, beats_per_record=args.beats_per_record,
        keep_windows=not args.no_windows, batch_size=args.batch_size, num_workers=args.num_workers,
        progress=not args.no_progress,
    )  # fmt: skip
    meta = index.meta
    print(f"prototypes: {meta['n_beats']} beats of {meta['n_records']} records ({meta['n_with_report']} with a "
          f"report{f', from {reports_path}' if reports_path else ''}) -> {args.out}")  # fmt: skip
    if failures:  # as zero-shot: the others are indexed, and the exit status says some were not
        print_failures(failures)
        return 1
    return 0

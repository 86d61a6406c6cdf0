"""`ecglang data`: download PTB-XL, build datasets (metadata + normalised reports) and signal caches.

    ecglang data download ptbxl DEST [--rates 500]
    ecglang data build ptbxl ROOT --out DIR [--sampling-rate 500] [--folds 1-8] [--no-cache]
    ecglang data build mimic ROOT --out DIR [--min-words 4]
    ecglang data build physionet ROOT --out DIR
    ecglang data build cpsc2018 ROOT --reference REFERENCE.csv --out DIR

`build` writes `DIR/dataset/` (`datasets.Dataset.save_to_disk`), `DIR/build_failures.csv` (records
left out and why), and unless `--no-cache` the signal cache `DIR/cache/` with `DIR/cache_failures.csv`.
Bad records do not stop a build; the exit status is 1 when any record was left out of the dataset or
failed in the cache (both lists are printed and written), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ecglang.data.registry import buildable_datasets, get_dataset
from ecglang.errors import ConfigError


def _folds(text: str) -> list[int]:
    """'1-8' or '9' or '1,2,5' → list of ints."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out += list(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    if not out:
        raise argparse.ArgumentTypeError(f"no folds in {text!r}")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download PTB-XL; build datasets and signal caches")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    d = data_sub.add_parser("download", help="download a dataset from PhysioNet (resumable)")
    d.add_argument("dataset", choices=["ptbxl"])
    d.add_argument("dest", help="destination folder")
    d.add_argument("--rates", default="100,500", help="record folders to fetch: 100, 500 or 100,500 (default)")
    d.add_argument("--base-url", default=None, help="mirror URL (default: PhysioNet PTB-XL 1.0.3)")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    d.set_defaults(func=run_download)

    b = data_sub.add_parser("build", help="build a dataset (metadata + English reports) and its signal cache")
    b.add_argument("dataset", choices=buildable_datasets())
    b.add_argument("root", help="dataset folder")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--sampling-rate", type=int, default=500, choices=[100, 500], help="PTB-XL records100/500")
    b.add_argument("--folds", type=_folds, default=None, help="PTB-XL strat_fold(s) to keep, e.g. 1-8")
    b.add_argument("--min-words", type=int, default=4, help="MIMIC: drop reports shorter than this")
    b.add_argument("--reference", help="CPSC 2018 REFERENCE.csv")
    b.add_argument("--no-cache", action="store_true", help="build the dataset only, no signal cache")
    b.add_argument("--preprocess", metavar="JSON", help="PreprocessConfig as a JSON file (default settings)")
    b.add_argument("--merl-compat", action="store_true", help="use PreprocessConfig.merl_compat() for the cache")
    b.add_argument("--batch-size", type=int, default=64, help="cache rows per flush (default 64)")
    b.add_argument("--workers", type=int, default=0, help="cache worker processes (default 0)")
    b.set_defaults(func=run_build)


def run_download(args: argparse.Namespace) -> int:
    from ecglang.data.download import PTBXL_BASE_URL, download_ptbxl  # here: `ecglang --help` skips it

    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    report = download_ptbxl(args.dest, base_url=args.base_url or PTBXL_BASE_URL, rates=rates, timeout=args.timeout)
    print(report.summary())
    return 1 if report.failures else 0


def run_build(args: argparse.Namespace) -> int:
    # Here, not at the top: `ecglang --help` must not wait for scipy.
    from ecglang.signal.preprocess import PreprocessConfig

    spec = get_dataset(args.dataset)
    for option, value in spec.required_options.items():
        if not getattr(args, option):
            raise ConfigError(f"{args.dataset} needs --{option.replace('_', '-')} {value}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds, report = spec.build(args.root, **{kw: getattr(args, opt) for opt, kw in spec.cli_options.items()})
    ds.save_to_disk(str(out / "dataset"))
    failures_csv = report.write_csv(out / "build_failures.csv")
    print(report.summary())
    print(f"dataset   {out / 'dataset'} ({len(ds)} records)")
    print(f"failures  {failures_csv} ({len(report.failures)} rows)")
    _list_failures("left out of the dataset", [(f.record_id, f.reason) for f in report.failures], failures_csv)
    # A batch goes on past bad records but its exit status says that some were left out (listed above).
    status = 1 if report.failures else 0
    if args.no_cache or len(ds) == 0:
        return status

    from ecglang.data.cache import SignalCache  # here: pandas and datasets load only for a cache build

    if args.preprocess:
        cfg = PreprocessConfig.from_dict(json.loads(Path(args.preprocess).read_text(encoding="utf-8")))
    elif args.merl_compat:
        cfg = PreprocessConfig.merl_compat()
        cfg.keep_samples = spec.merl_keep_samples  # MERL's per-dataset rule (CPSC 2018: the first 2500 samples)
    else:
        cfg = PreprocessConfig()
    cache = SignalCache.build(ds, out / "cache", cfg, batch_size=args.batch_size, num_workers=args.workers)
    cache.failures.to_csv(out / "cache_failures.csv", index=False)
    stats = cache.build_stats
    listed = out / "cache_failures.csv"
    print(f"cache     {cache.directory}: {stats.n_ok} ok, {stats.n_failed} failed (listed in {listed})")
    for note in stats.repaired:
        print(f"          repaired: {note}")
    failed = cache.failures
    _list_failures("failed in the cache", list(zip(failed["id"], failed["reason"], strict=True)), listed)
    return 1 if stats.n_failed else status


def _list_failures(what: str, rows: list[tuple[str, str]], csv_path: Path, limit: int = 10) -> None:
    """The first failures on stderr (all of them are in `csv_path`)."""
    if not rows:
        return
    print(f"\n{len(rows)} record(s) {what} (all listed in {csv_path}):", file=sys.stderr)
    for record_id, reason in rows[:limit]:
        print(f"  {record_id}: {reason}", file=sys.stderr)
    if len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more", file=sys.stderr)

"""`ecglang data`: download PTB-XL, build datasets (metadata + normalised reports) and signal caches.

    ecglang data download ptbxl DEST [--rates 500] [--base-url https://MIRROR/ptb-xl/1.0.3/]
    ecglang data build ptbxl ROOT --out DIR [--sampling-rate 500] [--folds 1-8] [--no-cache]
                       [--workers N] [--shard i/N] [--shard-size 50000]
    ecglang data build mimic ROOT --out DIR [--min-words 4]
    ecglang data build physionet ROOT --out DIR
    ecglang data build cpsc2018 ROOT --reference REFERENCE.csv --out DIR

`build` prepares a dataset for training (`ecglang.data.prepared`; training reads it with `data.prepared=DIR`):
`DIR/dataset/` (`datasets.Dataset.save_to_disk`, built once and reused), `DIR/build_failures.csv` (records
left out and why), and unless `--no-cache` the signal cache in shards of `--shard-size` records
(`DIR/cache/` when there is one shard, `DIR/shards/shard-*` otherwise) with `DIR/manifest.json` and
`DIR/cache_failures.csv`. Builds resume; several builders (nodes: `--shard i/N`) share one folder, each shard
under a lock file. A call whose input changed since the folder's table was built (`DIR/table.json` keeps its
fingerprint), or whose preprocessing differs from the folder's, is refused with what differs: build into a new
`--out` (a folder is never rebuilt in place; others may be reading it).
Bad records do not stop a build; the exit status is 1 when any record was left out of the dataset or
failed in the cache (both lists are written, and printed at the end, after the cache step, with a closing line
that counts both), 0 otherwise. A builder that leaves shards to others
lists the cache failures of its own shards (`DIR/shards/<shard>.cache_failures.csv`), and its exit status counts
those. SIGTERM stops a build as Ctrl-C does (the worker pool shut down, the locks removed), with exit status 143.
An option the source does not read, more than one of --preprocess, --model and --merl-compat, a missing option
the source needs (cpsc2018: --reference) and a malformed --shard are usage errors: exit status 2, before anything
is read or written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ecglang.cli import count, seconds, workers
from ecglang.core.jsonio import JsonInputError, parse_json
from ecglang.core.outputs import output_folder
from ecglang.data.registry import buildable_datasets, get_dataset
from ecglang.errors import ConfigError, UsageError


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


# Options that only some sources read, with their defaults: one given for another source was ignored silently.
SOURCE_OPTIONS = {"sampling_rate": 500, "folds": None, "min_words": 4, "reference": None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download PTB-XL; build datasets and signal caches")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    d = data_sub.add_parser("download", help="download a dataset from PhysioNet (resumable)")
    d.add_argument("dataset", choices=["ptbxl"])
    d.add_argument("dest", type=output_folder, help="destination folder")
    d.add_argument(
        "--rates", default="100,500", type=ptbxl_rates, help="record folders to fetch: 100, 500 or 100,500 (default)"
    )
    d.add_argument(
        "--base-url", default=None, type=base_url, help="http(s) mirror URL (default: PhysioNet PTB-XL 1.0.3)"
    )
    d.add_argument("--timeout", type=seconds, default=30.0, help="seconds per HTTP request (default 30)")
    d.set_defaults(func=run_download)

    b = data_sub.add_parser("build", help="build a dataset (metadata + English reports) and its signal cache")
    b.add_argument("dataset", choices=buildable_datasets())
    b.add_argument("root", help="dataset folder")
    b.add_argument("--out", required=True, type=output_folder, help="output folder")
    b.add_argument("--sampling-rate", type=int, default=SOURCE_OPTIONS["sampling_rate"], choices=[100, 500],
                   help="PTB-XL records100/500")  # fmt: skip
    b.add_argument(
        "--folds", type=_folds, default=SOURCE_OPTIONS["folds"], help="PTB-XL strat_fold(s) to keep, e.g. 1-8"
    )
    b.add_argument(
        "--min-words", type=int, default=SOURCE_OPTIONS["min_words"], help="MIMIC: drop reports shorter than this"
    )
    b.add_argument("--reference", default=SOURCE_OPTIONS["reference"], help="CPSC 2018 REFERENCE.csv")
    b.add_argument("--no-cache", action="store_true", help="build the dataset only, no signal cache")
    b.add_argument("--preprocess", metavar="JSON", help="PreprocessConfig as a JSON file (default settings)")
    b.add_argument(
        "--model",
        help="use the preprocessing of this model: a checkpoint (folder, Hub id, or the bundled ecglang-mini), "
        "so that `ecglang zero-shot OUT --model` can score the cache; or a model config (configs/model name or .json)",
    )
    b.add_argument("--merl-compat", action="store_true", help="use PreprocessConfig.merl_compat() for the cache")
    b.add_argument("--batch-size", type=count, default=256, help="cache rows per flush (default 256)")
    b.add_argument(
        "--workers", "--num-workers", type=workers, default=0, help="cache worker processes (default 0: this process)"
    )
    b.add_argument("--shard", default=None, metavar="i/N", help="build only shards i, i+N, ... (node i of N)")
    b.add_argument(
        "--shard-size",
        type=count,
        default=50_000,
        help="records per cache shard (default 50000; fixed by the first build)",
    )
    b.add_argument(
        "--stale-after", type=seconds, default=3600.0, help="seconds before another host's lock is stale (default 3600)"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.add_argument("--break-locks", action="store_true", help="remove all locks first (only when no builder runs)")
    b.set_defaults(func=run_build)


def ptbxl_rates(text: str) -> list[int]:
    """argparse `type=` of `--rates`: PTB-XL keeps records at 100 and 500 Hz only (`--rates 250` fetched the
    metadata, no record, and reported success)."""
    rates = [r.strip() for r in text.split(",") if r.strip()]
    if not rates or any(r not in ("100", "500") for r in rates):
        raise argparse.ArgumentTypeError(f"expected 100, 500 or 100,500 (PTB-XL's record folders), got {text!r}")
    return sorted({int(r) for r in rates})


def base_url(text: str) -> str:
    """argparse `type=` of `--base-url`: an http(s) URL (a bad one is a usage error naming it, not "no network")."""
    from ecglang.data.download import check_base_url  # here: `ecglang --help` skips it

    try:
        return check_base_url(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--base-url ")) from None


def run_download(args: argparse.Namespace) -> int:
    from ecglang.data.download import PTBXL_BASE_URL, download_ptbxl  # here: `ecglang --help` skips it

    report = download_ptbxl(args.dest, base_url=args.base_url or PTBXL_BASE_URL, rates=args.rates, timeout=args.timeout)
    print(report.summary())
    return 1 if report.failures else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM during `ecglang data build`: raised wherever the build is, so that it unwinds as after a Ctrl-C
    (a KeyboardInterrupt, so that no `except Exception` of the build takes it for a record's failure)."""


def run_build(args: argparse.Namespace) -> int:
    """`ecglang data build`. SIGTERM (`kill`, `timeout`, a batch system's stop) stops it as Ctrl-C does: the
    worker pool is shut down and the locks removed. Its default action left the workers running for good."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    # signal handlers can be set from the main thread only (a build run from another thread keeps the default)
    own = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, terminate) if own else None
    try:
        return _build(args)
    except Terminated:
        print("\nterminated", file=sys.stderr)
        return 128 + signal.SIGTERM  # what a shell reports for a tool stopped by SIGTERM
    finally:
        if own:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def _build(args: argparse.Namespace) -> int:
    # Here, not at the top: `ecglang --help` must not wait for pandas, datasets and scipy.
    from ecglang.data.prepared import build_shards, parse_shard_spec, prepare_table, update_manifest

    spec = get_dataset(args.dataset)
    for option, value in spec.required_options.items():
        if not getattr(args, option):
            raise UsageError(f"{args.dataset} needs --{option.replace('_', '-')} {value}")
    _check_build_options(args, spec)
    try:
        shard = parse_shard_spec(args.shard)
    except ConfigError as exc:  # the command line alone is wrong: a usage error, as the checks above
        raise UsageError(str(exc)) from None
    # Settings first: a bad --preprocess file is an error before a long dataset build, not after it.
    cfg = None if args.no_cache else _preprocess_config(args, spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.break_locks:
        for lock in [*out.glob("*.lock"), *out.glob("shards/*.lock")]:
            lock.unlink(missing_ok=True)
            print(f"removed lock {lock}")
    builder_args = {kw: getattr(args, opt) for opt, kw in spec.cli_options.items()}
    table = prepare_table(
        out, spec.name, args.root, builder_args, progress=not args.no_progress, stale_after=args.stale_after
    )
    ds = table.dataset
    failures_csv = out / "build_failures.csv"
    if table.built:
        print(table.summary)
    else:
        print(f"dataset   reused: {out / 'dataset'} was built by an earlier call")
        if not table.input_checked:
            print(
                "          (by an older ecglang, which kept no fingerprint of its input: a change to the input since "
                "then is not seen; if it changed, build into a new --out)"
            )
    print(f"dataset   {out / 'dataset'} ({len(ds)} records)")
    print(f"failures  {failures_csv} ({table.n_failures} rows)")
    import pandas as pd  # slow to import; only `build` needs it

    build_failed = pd.read_csv(failures_csv, dtype=str, keep_default_na=False)
    left_out = list(zip(build_failed["record_id"], build_failed["reason"], strict=True))
    # A batch goes on past bad records but its exit status says that some were left out (listed at the end).
    status = 1 if table.n_failures else 0
    if cfg is None or len(ds) == 0:
        _list_last(left_out, failures_csv)
        return status
    results = build_shards(
        out, ds, cfg, shard=shard, shard_size=args.shard_size, workers=args.workers, batch_size=args.batch_size,
        stale_after=args.stale_after, progress=not args.no_progress,
    )  # fmt: skip
    for r in results:
        # the rate of the rows computed now: a resumed shard's earlier rows took no time in this call
        rate = f", {r.n_processed / r.seconds:.1f} records/s" if r.seconds else ""
        done = f" ({r.n_processed} of {r.n_ok + r.n_failed} rows computed now)" if r.status == "resumed" else ""
        print(f"shard     {r.name}: {r.status}{done}{rate}")
    manifest = update_manifest(out)
    done = [e for e in manifest["shards"] if e.get("complete")]
    n_ok, n_failed = sum(e["n_ok"] for e in done), sum(e["n_failed"] for e in done)
    listed = out / "cache_failures.csv"
    if not manifest["complete"]:
        left = [e["name"] for e in manifest["shards"] if not e.get("complete")]
        print(
            f"cache     {len(done)} of {len(manifest['shards'])} shard(s) complete; still to build: {', '.join(left)}"
        )
        print(f"          (other builders hold them, or run `ecglang data build ... --out {out}` again)")
        own, own_listed = _own_cache_failures(out, manifest, results)
        _list_last(left_out, failures_csv, own, own_listed, "failed in the cache (this call's shards)")
        return 1 if own else status
    where = out / manifest["shards"][0]["dir"] if len(manifest["shards"]) == 1 else out / "shards"
    print(f"cache     {where}: {n_ok} ok, {n_failed} failed (listed in {listed})")
    failed = pd.read_csv(listed, dtype=str, keep_default_na=False)
    _list_last(left_out, failures_csv, list(zip(failed["id"], failed["reason"], strict=True)), listed)
    return 1 if n_failed else status


def _list_last(
    left_out: list[tuple[str, str]],
    failures_csv: Path,
    cache_failed: list[tuple[str, str]] | None = None,
    cache_csv: Path | str = "",
    cache_what: str = "failed in the cache",
) -> None:
    """List the records left out of the dataset and those that failed in the cache (None: no cache step), then
    close with both counts: the reason for exit status 1 is the last thing printed, not hours of bars up."""
    sys.stdout.flush()  # the summary lines above come first where stdout and stderr go to one file
    _list_failures("left out of the dataset", left_out, failures_csv)
    _list_failures(cache_what, cache_failed or [], cache_csv)
    if not left_out and not cache_failed:
        return
    closing = f"failed    {len(left_out)} record(s) left out of the dataset ({failures_csv})"
    if cache_failed is not None:
        closing += f", {len(cache_failed)} {cache_what} ({cache_csv or 'none listed'})"
    print(f"\n{closing}: exit status 1", file=sys.stderr)


def _own_cache_failures(out: Path, manifest: dict[str, Any], results: list[Any]) -> tuple[list[tuple[str, str]], str]:
    """Count the cache failures of the shards this call built or found complete, when others are still to build
    (`cache_failures.csv` waits for every shard); each shard's are written beside it. Returns them (id, reason)
    and the files that list them, for `_list_last`."""
    from ecglang.data.prepared import write_shard_failures  # here: `ecglang --help` must not wait for pandas

    mine = {r.name for r in results if r.status != "locked"}
    entries = [e for e in manifest["shards"] if e["name"] in mine and e.get("complete")]
    if not entries:
        return [], ""
    rows, listed = [], []
    for entry in entries:
        frame, path = write_shard_failures(out, entry)
        rows += list(zip(frame["id"].astype(str), frame["reason"].astype(str), strict=True))
        if len(frame):
            listed.append(str(path))
    n_ok = sum(e["n_ok"] for e in entries)
    print(f"cache     this call's {len(entries)} shard(s): {n_ok} ok, {len(rows)} failed")
    return rows, ", ".join(listed)


def _preprocess_file(path: Path, config_class: Any) -> Any:
    """`--preprocess JSON` as a config; any problem (missing, not JSON, bad settings) names the file."""
    try:
        return config_class.from_dict(parse_json(path.read_text(encoding="utf-8")), where=str(path))
    except (OSError, UnicodeDecodeError, JsonInputError) as exc:
        raise ConfigError(f"{path}: cannot read --preprocess JSON: {exc}") from exc
    except ConfigError as exc:
        if str(path) in str(exc):  # `where` named it already (unknown keys)
            raise
        raise ConfigError(f"{path}: {exc}") from exc


def _check_build_options(args: argparse.Namespace, spec: Any) -> None:
    """Refuse options the source does not read, and more than one way of choosing the cache's preprocessing
    (`--model` used to win over `--merl-compat` without a word). The command line alone shows both: a
    `UsageError` (exit 2, the command's usage and one `error:` line), as every other command's flag conflicts."""
    ignored = [
        f"--{opt.replace('_', '-')}"
        for opt, default in SOURCE_OPTIONS.items()
        if getattr(args, opt) != default and opt not in spec.cli_options
    ]
    if ignored:
        them = "them" if len(ignored) > 1 else "it"
        raise UsageError(f"{args.dataset} does not read {', '.join(ignored)}; leave {them} out")
    chosen = [flag for flag, given in (("--preprocess", args.preprocess), ("--model", args.model),
                                       ("--merl-compat", args.merl_compat)) if given]  # fmt: skip
    if len(chosen) > 1:
        named = f"{', '.join(chosen[:-1])} and {chosen[-1]}"
        raise UsageError(f"{named} each choose the cache's preprocessing; give one")


def _model_preprocess(name: str) -> Any:
    """The preprocessing of a trained checkpoint (folder, Hub id or bundled name: its processor_config.json, so
    that the cache is scored and fine-tuned as that model prepares its inputs) or of a model config (configs/model
    name or .json file)."""
    from ecglang.encoders.checkpoint import list_checkpoints, resolve_checkpoint, resolve_model_name
    from ecglang.encoders.checkpoint_files import is_hub_id
    from ecglang.encoders.ecg_processing import EcgProcessor
    from ecglang.encoders.registry import load_model_config  # slow to import; only --model needs it
    from ecglang.signal.preprocess import PreprocessConfig

    path = Path(name).expanduser()
    if path.is_dir() or name in list_checkpoints() or (is_hub_id(name) and path.suffix != ".json"):
        folder = resolve_checkpoint(resolve_model_name(name))
        return EcgProcessor.from_pretrained(folder).preprocess_config
    return PreprocessConfig.from_dict(load_model_config(name).processor["preprocess"])


def _preprocess_config(args: argparse.Namespace, spec: Any) -> Any:
    """The cache's `PreprocessConfig`: --preprocess JSON, --merl-compat, or the defaults."""
    from ecglang.signal.preprocess import PreprocessConfig  # here: `ecglang --help` must not wait for scipy

    if args.preprocess:
        return _preprocess_file(Path(args.preprocess), PreprocessConfig)
    if args.model:
        return _model_preprocess(args.model)
    if args.merl_compat:
        cfg = PreprocessConfig.merl_compat()
        cfg.keep_samples = spec.merl_keep_samples  # MERL's per-dataset rule (CPSC 2018: the first 2500 samples)
        return cfg
    return PreprocessConfig()


def _list_failures(what: str, rows: list[tuple[str, str]], csv_path: Path | str, limit: int = 10) -> None:
    """The first failures on stderr (all of them are in `csv_path`: one file, or several named)."""
    if not rows:
        return
    print(f"\n{len(rows)} record(s) {what} (all listed in {csv_path}):", file=sys.stderr)
    from ecglang.data.tables import failure_text  # here: `ecglang --help` must not wait for pandas and datasets

    for record_id, reason in rows[:limit]:
        print(f"  {failure_text(record_id, reason)}", file=sys.stderr)
    if len(rows) > limit:
        print(f"  ... and {len(rows) - limit} more", file=sys.stderr)

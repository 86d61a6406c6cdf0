"""Benchmark harness: `python benchmarks/run.py [--only NAME] [--quick]`.

Benchmarks live in `benchmarks/bench_*.py`; each module defines

    BENCHMARKS = {"name": function}   # function(ctx: BenchContext) -> list[dict]

and every returned row (a dict of column → value) becomes one line of its benchmark's results table.
Comparisons are ratios measured side by side in the same process (`BenchContext.compare`): one warm-up
call each, then repeats interleaved so that a load change on the machine hits both sides alike, and the
median. A row that checks a target carries the columns `target` (what is required), `measured` (the
figure compared with it) and `met` (`yes`, `no`, or `limit` where a physical limit stops it, explained in
the row's note); these rows are also collected in the targets table at the top of the results.

The tables are printed and written to `benchmarks/RESULTS.md` together with the machine (cores, CPU
model, torch threads, load average before and after), the command and the date. A `--quick` run (small
inputs, for smoke tests) only writes a file when `--output` is given, so it never overwrites the full
results. Generated inputs (tiled real records, caches, checkpoints) go to `--work-dir` (default
`benchmarks/_generated/`, git-ignored) and are reused by later runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"
DEFAULT_WORK_DIR = HERE / "_generated"
TARGET_COLUMNS = ("target", "measured", "met")

Row = dict[str, Any]
BenchFn = Callable[["BenchContext"], list[Row]]


@dataclass(frozen=True)
class Timing:
    """Median wall-clock and CPU time (s) of one function over the repeats.

    CPU time (`time.process_time`, this process only) is reported beside wall time because a shared
    machine's load inflates wall time; for single-threaded code it is the cost of the work itself.
    """

    wall: float
    cpu: float


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


@dataclass(frozen=True)
class ProcessStats:
    """What `BenchContext.run_process` saw of a child process (memory in bytes).

    `peak_rss` is the child's own peak resident set as the kernel keeps it (`VmHWM` of /proc/PID/status,
    read until it exits; not `wait4`'s `ru_maxrss`, which also counts the parent's pages copied by the fork
    before `exec`). The `tree_*` peaks are sampled sums over the child and its descendants (e.g. DataLoader
    workers): RSS (shared pages counted in every process), PSS (shared pages split between the processes
    that map them: the tree's real footprint) and anonymous RSS (private allocations, no file-backed pages
    such as libraries; copy-on-write pages shared with a forked worker count twice). Tree peaks are 0 when
    psutil is not installed."""

    returncode: int
    wall: float
    cpu: float  # user + system CPU seconds of the child and the descendants it waited for
    peak_rss: int
    tree_rss: int
    tree_pss: int
    tree_anon: int
    output: str  # the tail of stdout + stderr


def _proc_status(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status in bytes (0 when unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_process(cmd: list[str], env: dict[str, str] | None = None, interval: float = 0.1) -> ProcessStats:
    """Run `cmd`, sampling the memory of its process tree every `interval` s; see `ProcessStats`.

    Reading PSS walks the page tables of every mapping of a process, which for a big process takes tens of
    milliseconds: the wait between samples grows to 10x the last sample's cost, so that the sampling never
    takes more than ~10 % of a core away from what it measures."""
    import subprocess
    import tempfile

    try:
        import psutil
    except ImportError:  # only the exact peak of the child itself is then reported
        psutil = None
    peaks = {"rss": 0, "pss": 0, "anon": 0, "hwm": 0}
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        root = psutil.Process(proc.pid) if psutil else None
        while True:
            peaks["hwm"] = max(peaks["hwm"], _proc_status(proc.pid, "VmHWM"))  # monotonic while it runs
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaps like Popen.wait, but keeps the rusage
            if pid:
                break
            wait = interval
            if root is not None:
                t_sample = time.perf_counter()
                total = {"rss": 0, "pss": 0, "anon": 0}
                try:
                    members = [root, *root.children(recursive=True)]
                except psutil.Error:
                    members = []
                for member in members:
                    try:
                        full = member.memory_full_info()
                        total["rss"] += full.rss
                        total["pss"] += full.pss
                        total["anon"] += _proc_status(member.pid, "RssAnon")
                    except psutil.Error:  # it ended between listing and reading
                        continue
                for key, value in total.items():
                    peaks[key] = max(peaks[key], value)
                wait = max(interval, 10 * (time.perf_counter() - t_sample))
            time.sleep(wait)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-4000:]
    return ProcessStats(proc.returncode, wall, usage.ru_utime + usage.ru_stime, peaks["hwm"],
                        peaks["rss"], peaks["pss"], peaks["anon"], output)  # fmt: skip


def _median_timing(samples: list[tuple[float, float]]) -> Timing:
    return Timing(statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))


@dataclass
class BenchContext:
    """What a benchmark function gets: the mode, the data and work folders, timing helpers and the shared
    inputs (real records tiled and jittered to volume, models), built once per run."""

    quick: bool
    data_dir: Path
    repeats: int
    notes: list[str] = field(default_factory=list)
    work_dir: Path = DEFAULT_WORK_DIR
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def work(self, name: str) -> Path:
        """A folder for generated inputs, `work_dir/name` (created)."""
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def note(self, text: str) -> None:
        self.notes.append(text)

    @staticmethod
    @contextlib.contextmanager
    def threads(n: int) -> Iterator[None]:
        """Run torch on `n` threads inside the block, restoring the setting afterwards."""
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    run_process = staticmethod(run_process)

    def matmul_peak(self, size: int = 2048, dtype: Any = None) -> float:
        """Measured GFLOP/s of a `size`×`size` `torch.mm` (fp32, or `dtype`) at the current torch threads
        (median)."""
        import torch

        dtype = dtype or torch.float32
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        return 2 * size**3 / self.time(lambda: torch.mm(a, b)).wall / 1e9

    def base_records(self) -> list[np.ndarray]:
        """Real 12-lead PTB-XL records (`[12, 5000]` float32 mV at 500 Hz) from the data folder, or 12-lead
        simulations (`ecglang.signal.simulate`, neurokit2) where that folder is absent. Memoised."""
        if "base" not in self._memo:
            self._memo["base"] = _base_records(self.data_dir, 24 if self.quick else 120, self)
        return self._memo["base"]

    def ecg_arrays(self, n: int, seed: int = 0) -> np.ndarray:
        """`[n, 12, 5000]` float32: the base records tiled to `n` and jittered (per-lead gain ±15 %, a
        circular time shift, baseline offset, 20 µV noise), so that no two rows are the same signal."""
        base = self.base_records()
        rng = np.random.default_rng(seed)
        out = np.empty((n, *base[0].shape), dtype=np.float32)
        for i in range(n):
            x = np.roll(base[i % len(base)], int(rng.integers(0, base[0].shape[1])), axis=1)
            gain = rng.uniform(0.85, 1.15, (x.shape[0], 1))
            out[i] = x * gain + rng.normal(0, 0.1, (x.shape[0], 1)) + rng.normal(0, 0.02, x.shape)
        return out

    def record_files(self, n: int) -> list[Path]:
        """`n` jittered records written as `.npz` (`signal`, `fs`, `leads`: a format `ecglang.record.io` reads) under
        `work_dir/records-<n>/`; kept for later runs (a `complete` marker says the set is whole)."""
        folder = self.work(f"records-{n}")
        paths = [folder / f"rec{i:06d}.npz" for i in range(n)]
        if not (folder / "complete").is_file():
            from ecglang.record.leads import CANONICAL_LEADS

            leads = np.array(CANONICAL_LEADS)
            for start in range(0, n, 256):  # a block at a time: memory stays small for any n
                block = self.ecg_arrays(min(256, n - start), seed=10_000 + start)
                for i, signal in enumerate(block):
                    np.savez(paths[start + i], signal=signal, fs=np.float64(500.0), leads=leads)
            (folder / "complete").write_text(f"{n}\n", encoding="utf-8")
        return paths

    def checkpoint(self, name: str = "ecglang-small") -> Path:
        """A complete checkpoint folder of `model(name)` under `work_dir` (written once, then reused)."""
        folder = self.work_dir / f"checkpoint-{name}"
        if not (folder / "config.json").is_file():
            from ecglang.encoders.ecg_processing import EcgProcessor

            model = self.model(name)
            model.save_pretrained(folder, processor=EcgProcessor(return_signal=not model.config.is_beat_model))
        return folder

    def reports(self, n: int) -> list[str]:
        """`n` English report texts: PTB-XL reports (normalised as in pretraining), cycled; prompt-set
        prompts where the data folder is absent."""
        if "reports" not in self._memo:
            csv = self.data_dir / "ptbxl-sample" / "ptbxl_database.csv"
            if csv.is_file():
                import pandas as pd

                from ecglang.text.reports import normalize_report

                texts = [normalize_report(r, "ptbxl") for r in pd.read_csv(csv)["report"]]
            else:
                from ecglang.scores.prompts import load_prompt_set

                texts = [p for lp in load_prompt_set("ptbxl_sub").labels.values() for p in lp.prompts]
            self._memo["reports"] = [t for t in texts if t.strip()]
        pool = self._memo["reports"]
        return [pool[i % len(pool)] for i in range(n)]

    def model(self, name: str = "ecglang-small") -> Any:
        """A freshly initialised model from a bundled config (seed 0, eval mode), memoised per name."""
        key = ("model", name)
        if key not in self._memo:
            import torch

            from ecglang.encoders.registry import create_model

            torch.manual_seed(0)
            self._memo[key] = create_model(name).eval()
        return self._memo[key]

    def time(self, fn: Callable[[], Any], repeats: int | None = None) -> Timing:
        """Median times of `fn()` over `repeats` calls after one warm-up call."""
        fn()
        return _median_timing([_timed(fn) for _ in range(repeats or self.repeats)])

    def compare(
        self, ours: Callable[[], Any], baseline: Callable[[], Any], repeats: int | None = None
    ) -> tuple[Timing, Timing]:
        """Median times of `ours()` and `baseline()`: each warmed up once, then repeats interleaved."""
        ours()
        baseline()
        t_ours: list[tuple[float, float]] = []
        t_base: list[tuple[float, float]] = []
        for _ in range(repeats or self.repeats):
            t_ours.append(_timed(ours))
            t_base.append(_timed(baseline))
        return _median_timing(t_ours), _median_timing(t_base)

    @staticmethod
    def ratio_columns(ours: Timing, baseline: Timing) -> dict[str, float]:
        """The standard columns of a side-by-side comparison (wall and CPU speed-up of ours)."""
        return {
            "ours s": ours.wall,
            "baseline s": baseline.wall,
            "speedup": baseline.wall / ours.wall,
            "speedup (CPU)": baseline.cpu / ours.cpu if ours.cpu > 0 else float("nan"),
        }

    @staticmethod
    def cli_command() -> list[str]:
        """The installed `ecglang` console script beside this interpreter, else `python -m ecglang.cli.main`."""
        script = shutil.which("ecglang", path=str(Path(sys.executable).parent))
        return [script] if script else [sys.executable, "-m", "ecglang.cli.main"]

    def cli_env(self) -> dict[str, str]:
        """The environment of a benchmarked command: offline, and the harness's own cache (knowledge index)."""
        env = dict(os.environ)
        offline = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
        env.update(dict.fromkeys(offline, "1"), TOKENIZERS_PARALLELISM="false")
        env.setdefault("ECGLANG_CACHE", str(self.work("cache")))
        return env

    @staticmethod
    def target_columns(target: str, measured: str, met: bool | str) -> dict[str, str]:
        """The three target columns of a row: `met` is `yes`/`no` from a bool, or a given word (`limit`)."""
        word = met if isinstance(met, str) else ("yes" if met else "no")
        return {"target": target, "measured": measured, "met": word}


def _base_records(data_dir: Path, n: int, ctx: BenchContext) -> list[np.ndarray]:
    from ecglang.record.leads import to_canonical

    folder = data_dir / "ptbxl-sample" / "records500"
    headers = sorted(folder.glob("*/*.hea"))[:n]
    out = []
    if headers:
        import wfdb

        for h in headers:
            rec = wfdb.rdrecord(str(h.with_suffix("")))
            signal, mask, _ = to_canonical(rec.p_signal.T, rec.sig_name, path=str(h))
            if rec.fs == 500 and signal.shape[1] == 5000 and mask.all() and np.isfinite(signal).all():
                out.append(signal.astype(np.float32))
        return out
    from ecglang.signal.simulate import simulate_ecg

    ctx.note(f"{folder} not found: volume is built from neurokit2 12-lead simulations instead of PTB-XL records")
    rates = np.linspace(50, 150, n)
    return [simulate_ecg(float(r), seed=i).signal for i, r in enumerate(rates)]


def _load_module(path: Path) -> ModuleType:
    # Loaded by file path: the benchmarks folder is not a package on sys.path when run as a script.
    spec = importlib.util.spec_from_file_location(f"ecglang_benchmarks.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load benchmark module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def discover(folder: Path = HERE) -> dict[str, BenchFn]:
    """All benchmarks of `folder/bench_*.py`, by name, in file order."""
    registry: dict[str, BenchFn] = {}
    for path in sorted(folder.glob("bench_*.py")):
        for name, fn in getattr(_load_module(path), "BENCHMARKS", {}).items():
            if name in registry:
                raise ValueError(f"benchmark {name!r} defined twice (second time in {path.name})")
            registry[name] = fn
    return registry


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_info(load_at_start: str | None = None) -> dict[str, str]:
    import numpy
    import scipy
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "torch threads": f"{torch.get_num_threads()} by default (benchmarks that set their own say so)",
        "python": platform.python_version(),
        "numpy / scipy / torch": f"{numpy.__version__} / {scipy.__version__} / {torch.__version__}",
        "platform": platform.platform(),
    }
    if load_at_start is not None:
        info["load average (1/5/15 min) at the start"] = load_at_start
    info["load average (1/5/15 min) at the end"] = _loadavg()
    return info


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _columns(rows: list[Row]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def format_text(rows: list[Row]) -> str:
    cols = _columns(rows)
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def format_markdown(rows: list[Row]) -> str:
    cols = _columns(rows)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c, "")).replace("|", "/") for c in cols) + " |" for r in rows]
    return "\n".join(out)


def by_benchmark(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped by their `benchmark` column (without it), in first-seen order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(str(row.get("benchmark", "")), []).append({k: v for k, v in row.items() if k != "benchmark"})
    return groups


def describe(row: Row, n: int = 3) -> str:
    """A case for a row that names none: its first `n` other columns ("loss token, global_batch 32, world 8")."""
    skip = {"benchmark", *TARGET_COLUMNS}
    return ", ".join([f"{k} {v}" for k, v in row.items() if k not in skip][:n])


def target_rows(rows: list[Row]) -> list[Row]:
    """The rows that check a target, reduced to benchmark, case and the target columns."""
    out = []
    for row in rows:
        if "target" in row:
            case = " — ".join(str(row[k]) for k in ("case", "ours") if row.get(k)) or describe(row)
            columns = {k: row.get(k, "") for k in TARGET_COLUMNS}
            out.append({"benchmark": row.get("benchmark", ""), "case": case, **columns})
    return out


def write_results(path: Path, rows: list[Row], info: dict[str, str], command: str, notes: list[str]) -> None:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# ecglang benchmarks",
        "",
        f"Command: `{command}`  ",
        f"Date: {date}",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in info.items()),
        "",
    ]
    targets = target_rows(rows)
    if targets:
        parts += ["## Targets", "", format_markdown(targets), ""]
    parts += [
        "## Results",
        "",
        "Times are medians over repeats after a warm-up; a ratio compares two sides measured in the same",
        "process with their repeats interleaved. `speedup` is from wall-clock time, `speedup (CPU)` from",
        "this process's CPU time, which a busy shared machine distorts less.",
        "",
    ]
    for name, group in by_benchmark(rows).items():
        parts += [f"### {name}", "", format_markdown(group), ""]
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="benchmarks/run.py")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument(
        "--quick", action="store_true", help="small inputs and few repeats (a smoke run: minutes, ~2.5 on 2 busy cores)"
    )
    parser.add_argument("--repeats", type=int, help="timing repeats (default 5, or 3 with --quick)")
    parser.add_argument("--data", type=Path, help="data folder (default: ../shared/data beside the repo)")
    parser.add_argument("--output", type=Path, help=f"results file (default {DEFAULT_OUTPUT}; none with --quick)")
    parser.add_argument(
        "--work-dir", type=Path, default=DEFAULT_WORK_DIR, help=f"generated inputs (default {DEFAULT_WORK_DIR})"
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    # Before any Hugging Face import (the benchmark modules import ecglang): offline, as the tests run.
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The bundled knowledge index is built once into the work folder, not into the user's cache.
    os.environ.setdefault("ECGLANG_CACHE", str(args.work_dir.resolve() / "cache"))

    registry = discover()
    if args.list:
        print("\n".join(registry))
        return 0
    names = args.only or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {list(registry)}")
    if args.data is None:
        from ecglang.core.paths import shared_data_dir

        args.data = shared_data_dir()
    ctx = BenchContext(
        quick=args.quick, data_dir=args.data, repeats=args.repeats or (3 if args.quick else 5), work_dir=args.work_dir
    )
    load_at_start = _loadavg()

    rows: list[Row] = []
    for name in names:
        t0 = time.perf_counter()
        bench_rows = registry[name](ctx)
        rows += [{"benchmark": name, **row} for row in bench_rows]
        print(f"[{name}] {len(bench_rows)} row(s) in {time.perf_counter() - t0:.1f} s", flush=True)

    info = machine_info(load_at_start)
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print("\n".join(f"{k}: {v}" for k, v in info.items()))
    for name, group in by_benchmark(rows).items():
        print(f"\n[{name}]")
        print(format_text(group))
    targets = target_rows(rows)
    if targets:
        print("\n[targets]")
        print(format_text(targets))
    for note in ctx.notes:
        print(f"note: {note}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        write_results(output, rows, info, command.strip(), ctx.notes)
        print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

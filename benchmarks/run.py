"""Benchmark harness: `python benchmarks/run.py [--only NAME] [--quick]`.

Benchmarks live in `benchmarks/bench_*.py`; each module defines

    BENCHMARKS = {"name": function}   # function(ctx: BenchContext) -> list[dict]

and every returned row (a dict of column → value) becomes one line of the results table. Comparisons
are ratios measured side by side in the same process (`BenchContext.compare`): one warm-up call each,
then repeats interleaved so that a load change on the machine hits both sides alike, and the median.

The table is printed and written to `benchmarks/RESULTS.md` together with the machine (cores, CPU
model, torch threads), the command and the date. A `--quick` run (a few seconds, for smoke tests)
only writes a file when `--output` is given, so it never overwrites the full results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"

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


def _median_timing(samples: list[tuple[float, float]]) -> Timing:
    return Timing(statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))


@dataclass
class BenchContext:
    """What a benchmark function gets: the mode, the data folder and timing helpers."""

    quick: bool
    data_dir: Path
    repeats: int
    notes: list[str] = field(default_factory=list)

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


def machine_info() -> dict[str, str]:
    import numpy
    import scipy
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "numpy / scipy / torch": f"{numpy.__version__} / {scipy.__version__} / {torch.__version__}",
        "platform": platform.platform(),
        "load average (1/5/15 min) at the end": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


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
        "## Results",
        "",
        "Times are medians over repeats after a warm-up; a ratio compares two sides measured in the same",
        "process with their repeats interleaved. `speedup` is from wall-clock time, `speedup (CPU)` from",
        "this process's CPU time, which a busy shared machine distorts less.",
        "",
        format_markdown(rows),
        "",
    ]
    if notes:
        parts += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    path.write_text("\n".join(parts), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="benchmarks/run.py")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="small inputs and few repeats (a few seconds)")
    parser.add_argument("--repeats", type=int, help="timing repeats (default 5, or 3 with --quick)")
    parser.add_argument("--data", type=Path, help="data folder (default: ../shared/data beside the repo)")
    parser.add_argument("--output", type=Path, help=f"results file (default {DEFAULT_OUTPUT}; none with --quick)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    registry = discover()
    if args.list:
        print("\n".join(registry))
        return 0
    names = args.only or list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {list(registry)}")
    if args.data is None:
        from ecglang.paths import shared_data_dir

        args.data = shared_data_dir()
    ctx = BenchContext(quick=args.quick, data_dir=args.data, repeats=args.repeats or (3 if args.quick else 5))

    rows: list[Row] = []
    for name in names:
        t0 = time.perf_counter()
        bench_rows = registry[name](ctx)
        rows += [{"benchmark": name, **row} for row in bench_rows]
        print(f"[{name}] {len(bench_rows)} row(s) in {time.perf_counter() - t0:.1f} s", flush=True)

    info = machine_info()
    command = "python benchmarks/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print("\n".join(f"{k}: {v}" for k, v in info.items()))
    print()
    print(format_text(rows))
    for note in ctx.notes:
        print(f"note: {note}")
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if output is not None:
        write_results(output, rows, info, command.strip(), ctx.notes)
        print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

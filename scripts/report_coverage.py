"""Measure how much of PTB-XL's report text the phrase table turns into known English words.

    python scripts/report_coverage.py --ptbxl ../shared/data/ptbxl-sample [--top 30] [--min 0.95]

Prints the coverage (fraction of word tokens that are known English words or numbers after
`ecglang.text.reports.normalize_report`) and the most frequent unknown words; exits 1 below `--min`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ecglang.text.reports import translation_coverage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ptbxl", required=True, type=Path, help="PTB-XL folder (with ptbxl_database.csv)")
    parser.add_argument("--top", type=int, default=30, help="unknown words to list (default 30)")
    parser.add_argument("--min", type=float, default=None, help="exit 1 when coverage is below this")
    args = parser.parse_args(argv)
    csv = args.ptbxl / "ptbxl_database.csv"
    if not csv.is_file():
        parser.error(f"{csv} not found")
    reports = pd.read_csv(csv, usecols=["report"])["report"].tolist()
    coverage = translation_coverage(reports, source="ptbxl")
    print(coverage.summary(top=args.top))
    print(f"coverage {coverage.coverage:.4f}")
    return 1 if args.min is not None and coverage.coverage < args.min else 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's main command: simulated ECGs with a known answer, run through ecglang.

`make demo` runs it from a checkout; an installed package runs it as `ecglang demo` (or `python -m
ecglang.cli.demo`), which needs the `demo` extra (neurokit2 simulates the records).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

from ecglang.errors import ConfigError
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.signal.simulate import simulate_ecg

# Rates chosen well inside each class, so the right answer is unambiguous.
DEMO_CASES = (("sinus bradycardia", 45.0), ("normal sinus rhythm", 75.0), ("sinus tachycardia", 130.0))


def write_demo_records(out_dir: str | Path) -> list[tuple[Path, str]]:
    """Simulate the demo ECGs and save them as `.npz` records; returns (path, true label) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for seed, (label, rate) in enumerate(DEMO_CASES):
        ecg = simulate_ecg(rate, seed=seed)
        path = out_dir / f"{ecg.record_id}.npz"
        np.savez(path, signal=ecg.signal, fs=ecg.fs, leads=np.array(CANONICAL_LEADS))
        written.append((path, label))
    return written


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="zero-shot demo on simulated 12-lead ECGs with the bundled checkpoint (needs neurokit2, the demo extra)",
        description="Simulate three ECGs at known rates, score them zero-shot and draw an explanation figure.",
    )
    p.add_argument("--out-dir", default="outputs/demo", help="folder for the records and the figure")
    p.add_argument("--model", default=None, help="checkpoint folder, Hub id or bundled name (default: ecglang-mini)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return main(args.out_dir, args.model)


def _console_command() -> str:
    """How to call the console script that sits beside this interpreter (`.venv/bin/ecglang` after `make demo`)."""
    script = Path(sys.executable).parent / "ecglang"
    if not script.is_file():
        return "ecglang"
    try:
        return os.path.relpath(script)
    except ValueError:  # another drive (Windows)
        return str(script)


def main(out_dir: str | Path = "outputs/demo", model: str | None = None) -> int:
    """Zero-shot on the simulated records with the bundled checkpoint; prints, plots, says if it got them right."""
    # checked first: a pip install without the `demo` extra stopped on a traceback after loading torch
    if importlib.util.find_spec("neurokit2") is None:
        raise ConfigError("the demo simulates its ECGs with neurokit2: pip install neurokit2 (the 'demo' extra)")
    # Here, not at the top: importing this module (scripts/demo.py, tests) must not wait for torch and
    # transformers (the simulation is printed before they load), and cli.main lists the subcommands.
    from ecglang.cli.main import main as cli
    from ecglang.cli.main import quiet_libraries
    from ecglang.encoders.modeling import load_model
    from ecglang.scores.classifier import ZeroShotClassifier

    quiet_libraries()
    out_dir = Path(out_dir)
    records = write_demo_records(out_dir)
    print("Demo records: 12-lead ECGs simulated with neurokit2 (ecg_simulate, method='multileads'),")
    print(f"10 s at 500 Hz, at {', '.join(f'{r:g}' for _, r in DEMO_CASES)} bpm; written to {out_dir}/\n")
    labels = [label for label, _ in DEMO_CASES]
    clf = ZeroShotClassifier(load_model(model), knowledge="default")
    result = clf([p for p, _ in records], labels=labels, mode="softmax", explain=True, progress=False)
    correct = 0
    for (path, truth), rid in zip(records, result.scores.index, strict=True):
        ranked = result.ranked(rid)
        top = ranked["label"].iloc[0]
        correct += top == truth
        print(f"== {path.name}  (simulated as: {truth})")
        print(ranked[["label", "score", "snippets"]].to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"   ranked first: {top}  ->  {'RIGHT' if top == truth else 'WRONG'}\n")
    print(f"{correct} of {len(records)} ranked the right label first.")
    print("Snippets behind each label (ids above) come from the bundled knowledge base in knowledge/.")
    argv = ["zero-shot", str(records[-1][0]), "--labels", *labels, "--mode", "softmax", "--quiet"]
    status = cli([*argv, "--plot", str(out_dir / "explanation.png"), *(["--model", str(model)] if model else [])])
    ecglang = _console_command()  # was always `.venv/bin/ecglang`, which a pip install does not have
    print("\nRun it on your own records (files or folders; WFDB, CinC .mat, CPSC .mat, .npy/.npz):")
    print(f'  {ecglang} zero-shot path/to/records --labels "atrial fibrillation" "sinus rhythm" --plot ecg.png')
    print(f"  {ecglang} zero-shot path/to/records --prompt-set ptbxl_super --out scores.csv")
    return status


if __name__ == "__main__":  # `python -m ecglang.cli.demo` ran nothing and exited 0
    from ecglang.cli.main import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))

"""The README's main command: simulated ECGs with a known answer, run through ecglang."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecglang.leads import CANONICAL_LEADS
from ecglang.simulate import simulate_ecg

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


def main(out_dir: str | Path = "outputs/demo") -> int:
    from ecglang.cli import main as cli

    print("Demo records: 12-lead ECGs simulated with neurokit2 (multileads) at 45, 75 and 130 bpm.\n")
    status = 0
    for path, label in write_demo_records(out_dir):
        print(f"== {path.name}  (simulated as: {label})")
        status |= cli(["inspect", str(path), "--plot", str(path.with_suffix(".png"))])
        print()
    print("Run it on your own record:  ecglang inspect path/to/record.hea --plot ecg.png")
    return status

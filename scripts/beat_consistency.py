"""How alike the beats of real records and of noise are: the figures behind `BeatConfig.min_consistency`.

For every record it prints nothing; at the end, per set, the distribution of `beat_consistency` (the mean
correlation of each beat window with the mean of the other beats, median over leads) of the beats the
tokenizer cuts with the check turned off:

- the PTB-XL sample (every record), the CinC/CPSC format samples, MIT-BIH 100 in 10 s pieces, 2.8 s PTB-XL pieces;
- the first 30 PTB-XL records with white noise added at 0, -3 and -6 dB SNR;
- 20 signals each of white, brown and neurokit2 noise, which the detector still cuts into "beats".

    python scripts/beat_consistency.py --data ../shared/data
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd

from ecglang.beats.tokenize import BeatConfig, tokenize_beats
from ecglang.errors import EcgLangError
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.signal.preprocess import preprocess

NO_CHECK = BeatConfig(min_consistency=0.0)


def records(data: Path, rng: np.random.Generator) -> Iterator[tuple[str, Ecg]]:
    """(set name, record) for every set in the module docstring."""
    ptbxl = data / "ptbxl-sample"
    files = [ptbxl / f for f in pd.read_csv(ptbxl / "ptbxl_database.csv")["filename_hr"]]
    for path in files:
        yield "ptbxl", load_ecg(path)
    formats = [*sorted((data / "formats").rglob("*.hea")), *sorted((data / "formats" / "cpsc2018").glob("*.mat"))]
    for path in formats:
        yield "cinc/cpsc", load_ecg(path)
    mitbih = load_ecg(data / "mitbih" / "100")
    for start in range(0, mitbih.n_samples - 3600, 5 * 3600):
        yield "mitbih 10 s", mitbih.replace(signal=mitbih.signal[:, start : start + 3600])
    for path in files[:30]:
        ecg = load_ecg(path)
        yield "ptbxl 2.8 s", ecg.replace(signal=ecg.signal[:, :1400])
        power = float(np.mean(ecg.signal**2))
        for snr in (0, -3, -6):
            noise = rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), ecg.signal.shape).astype(np.float32)
            yield f"ptbxl + noise {snr} dB", ecg.replace(signal=ecg.signal + noise)
    for _ in range(20):
        yield "white noise", Ecg(rng.normal(0, 0.3, (12, 5000)).astype(np.float32), 500)
        yield "brown noise", Ecg(np.cumsum(rng.normal(0, 0.05, (12, 5000)), axis=1).astype(np.float32), 500)
        seeds = rng.integers(1_000_000, size=12)
        leads = [nk.signal_noise(duration=10, sampling_rate=500, beta=b, random_state=int(s))
                 for b, s in zip(np.linspace(0.5, 1.5, 12), seeds, strict=True)]  # fmt: skip
        yield "neurokit2 noise", Ecg(np.stack(leads).astype(np.float32), 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (see its README)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name, ecg in records(args.data, np.random.default_rng(args.seed)):
        try:
            rows.append((name, tokenize_beats(preprocess(ecg), NO_CHECK).consistency))
        except EcgLangError:
            rows.append((name, float("nan")))  # too few beats: nothing to compare
    table = pd.DataFrame(rows, columns=["set", "consistency"])
    summary = table.groupby("set", sort=False)["consistency"].describe(percentiles=[0.05, 0.5, 0.95])
    print(summary.round(3).to_string())
    print(f"threshold (BeatConfig.min_consistency): {BeatConfig().min_consistency}")


if __name__ == "__main__":
    main()

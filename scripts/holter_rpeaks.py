"""24-hour 2-lead R-peak detection in bounded memory: wall time, beats found, F1 and peak RSS.

    python scripts/holter_rpeaks.py [--hours 24] [--mode fast|robust] [--snr DB] [--data ../shared/data]

The record is MIT-BIH 100 (both leads, 360 Hz, 30 min) tiled end to end to `--hours` hours, written
chunk by chunk as a float32 `[2, n]` file in a temporary folder (about 250 MB for 24 h), with the tiled
reference beats. `--snr` adds realistic noise (`ecglang.beats.evaluation.add_noise`) at that SNR, one
realisation per 30-minute tile (slow: a few seconds per tile).

Detection runs in a child process that only opens the file as a `numpy.memmap` and calls
`detect_rpeaks_long`, so its peak RSS (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is the detection's
own: the baseline after imports (`import ecglang` loads torch, a few hundred MiB) plus one chunk at a
time (`detect_rpeaks_long` reads a file-backed memmap with file I/O, so the record's pages never enter
the RSS). The child also reports its RSS before detection: the difference is what detection added.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ecglang.beats.detect import DETECT_MODES, detect_rpeaks_long
from ecglang.beats.evaluation import BEAT_SYMBOLS, add_noise, beat_f1, f1

FS = 360.0
TILE_S = 1800.0  # MIT-BIH records are 30 min


def _rss_mb() -> float:
    """Peak RSS of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    """Current RSS (MiB) from /proc (Linux); nan elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def write_record(data: Path, hours: float, snr: float | None, path: Path) -> tuple[int, np.ndarray]:
    """Write the tiled record to `path` (float32 `[2, n]`, C order); return (n, reference beats)."""
    import wfdb  # a dependency of the package; only the writer needs it

    rec = wfdb.rdrecord(str(data / "mitbih" / "100"))
    ann = wfdb.rdann(str(data / "mitbih" / "100"), "atr")
    tile = np.ascontiguousarray(rec.p_signal.T, dtype=np.float32)  # [2, 650000]
    ref_tile = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in BEAT_SYMBOLS])
    per_tile = tile.shape[1]
    n_tiles = int(np.ceil(hours * 3600 / (per_tile / FS)))
    n = round(hours * 3600 * FS)
    rng = np.random.default_rng(0)
    tiles = []
    for t in range(n_tiles):
        part = tile if snr is None else add_noise(tile, FS, snr, rng)
        tiles.append(part[:, : min(per_tile, n - t * per_tile)])
    # Lead-major layout: lead 0 for the whole record, then lead 1 (what `[2, n]` C order means).
    with open(path, "wb") as f:
        for lead in range(2):
            for part in tiles:
                f.write(np.ascontiguousarray(part[lead]).tobytes())
    ref = np.concatenate([ref_tile + t * per_tile for t in range(n_tiles)])
    return n, ref[ref < n].astype(np.int64)


def detect_child(path: Path, n: int, mode: str, chunk_s: float, overlap_s: float, out: Path) -> None:
    """Run in the child: memmap the record, detect, save the peaks, print the figures as JSON."""
    rss_before, now_before = _rss_mb(), _current_rss_mb()
    x = np.memmap(path, dtype=np.float32, mode="r", shape=(2, n))
    t0, c0 = time.perf_counter(), time.process_time()
    peaks = detect_rpeaks_long(x, FS, mode=mode, chunk_s=chunk_s, overlap_s=overlap_s)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = {
        "wall_s": wall,
        "cpu_s": cpu,
        "beats": int(peaks.size),
        "rss_before_mb": rss_before,
        "peak_rss_mb": _rss_mb(),
        "rss_now_before_mb": now_before,
        "rss_now_after_mb": _current_rss_mb(),
    }
    np.save(out, peaks)
    print(json.dumps(stats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--mode", choices=DETECT_MODES, default="fast")
    parser.add_argument("--snr", type=float, default=None, help="add noise at this SNR (dB); default: none")
    parser.add_argument("--chunk-s", type=float, default=60.0)
    parser.add_argument("--overlap-s", type=float, default=10.0)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, n, out = args.child
        detect_child(Path(path), int(n), args.mode, args.chunk_s, args.overlap_s, Path(out))
        return 0
    if not (args.data / "mitbih" / "100.hea").is_file():
        print(f"MIT-BIH 100 not found under {args.data}; pass --data", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="holter_") as tmp:
        path, out = Path(tmp) / "record.f32", Path(tmp) / "peaks.npy"
        t0 = time.perf_counter()
        n, ref = write_record(args.data, args.hours, args.snr, path)
        print(f"record: {args.hours:g} h, 2 leads @ {FS:g} Hz, {n} samples/lead, {path.stat().st_size / 2**20:.0f} MiB "
              f"float32 memmap (written in {time.perf_counter() - t0:.1f} s); noise: "
              f"{'none' if args.snr is None else f'{args.snr:g} dB SNR'}")  # fmt: skip
        cmd = [sys.executable, __file__, "--mode", args.mode, "--chunk-s", str(args.chunk_s),
               "--overlap-s", str(args.overlap_s), "--child", str(path), str(n), str(out)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return result.returncode
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        peaks = np.load(out)
    score = f1(*beat_f1(ref, peaks, 0.05 * FS))
    print(f"detect_rpeaks_long(mode={args.mode!r}, chunk_s={args.chunk_s:g}, overlap_s={args.overlap_s:g}): "
          f"{stats['wall_s']:.1f} s wall, {stats['cpu_s']:.1f} s CPU ({args.hours * 3600 / stats['wall_s']:.0f}x "
          "real time), "
          f"{stats['beats']} beats (reference {ref.size}, F1 {score:.4f} within 50 ms)")  # fmt: skip
    print(f"detection process peak RSS: {stats['peak_rss_mb']:.0f} MiB (after imports, before detection: "
          f"{stats['rss_before_mb']:.0f} MiB); current RSS before/after detection: "
          f"{stats['rss_now_before_mb']:.0f} / {stats['rss_now_after_mb']:.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

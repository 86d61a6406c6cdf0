"""Memory bounded by what is used (issue 13, item 6): preprocessing crops before resampling, and `load_ecg`
reads only the window that preprocessing uses. The long records are built here, in tmp_path."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from ecglang.record.io import load_ecg
from ecglang.record.leads import CANONICAL_LEADS
from ecglang.record.window import ReadWindow
from ecglang.signal.preprocess import PreprocessConfig, edge_padlen, preprocess, preprocess_array

REPO = Path(__file__).resolve().parents[2]
GAIN = 200.0  # ADC units per mV in the WFDB files written here


def _wave(n: int, fs: float, seed: int = 0) -> np.ndarray:
    """[12, n] float32: a 1.2 Hz 'beat', slow baseline wander, noise and a DC offset (mV). For preprocessing
    only: its spikes alternate in sign, so the beat-consistency check refuses it as no ECG (`_ecg_wave`)."""
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    beat = np.sin(2 * np.pi * 1.2 * t) ** 15  # narrow peaks
    x = beat + 0.3 * np.sin(2 * np.pi * 0.1 * t) + 0.05 * rng.standard_normal((12, n)) + 0.5
    return x.astype(np.float32)


@functools.cache
def _heartbeats(fs: float) -> np.ndarray:
    """10 s of a simulated 12-lead ECG at 72 bpm (12 beats: it tiles without a gap in the rhythm)."""
    from ecglang.signal.simulate import simulate_ecg

    return simulate_ecg(72.0, duration=10.0, fs=round(fs), seed=0, noise=0.0).signal


def _ecg_wave(n: int, fs: float, seed: int = 0) -> np.ndarray:
    """[12, n] float32: heartbeats (a simulated ECG, tiled), slow baseline wander, noise and a DC offset (mV):
    what zero-shot scores."""
    t = np.arange(n) / fs
    rng = np.random.default_rng(seed)
    beats = _heartbeats(fs)
    beats = np.tile(beats, -(-n // beats.shape[1]))[:, :n]
    x = beats + 0.3 * np.sin(2 * np.pi * 0.1 * t) + 0.05 * rng.standard_normal((12, n)) + 0.5
    return x.astype(np.float32)


def _reference(x: np.ndarray, fs: float, crop: str, seed: int) -> np.ndarray:
    """The contract computed on the whole record: resample, band-pass, then crop 5000 samples at 500 Hz."""
    ratio = (Fraction(500).limit_denominator(100_000) / Fraction(fs).limit_denominator(100_000)).limit_denominator(
        10_000
    )
    y = x.astype(np.float64)
    if fs != 500:
        y = sps.resample_poly(y, ratio.numerator, ratio.denominator, axis=1, padtype="line")
    sos = sps.butter(2, [0.5, 40], btype="bandpass", fs=500, output="sos")
    y = sps.sosfiltfilt(sos, y, axis=1, padtype="even", padlen=edge_padlen(0.5, 500.0, y.shape[1]))  # edge_pad="even"
    n = y.shape[1]
    offset = {"start": 0, "center": (n - 5000) // 2}.get(crop)
    if offset is None:
        offset = int(np.random.default_rng(seed).integers(0, n - 5000 + 1))
    return y[:, offset : offset + 5000]


@pytest.mark.parametrize("fs", [1000.0, 257.0, 360.0, 500.0])
@pytest.mark.parametrize("crop", ["start", "center", "random"])
def test_crop_before_resample_matches_the_whole_record(fs: float, crop: str) -> None:
    """Cutting the used part (plus the margin) first gives the whole-record result within 1e-4 of its scale."""
    x = _wave(int(180 * fs), fs)
    cfg = PreprocessConfig(normalize="none", crop=crop)
    out, _, _ = preprocess_array(x, fs, cfg=cfg, rng=7)
    ref = _reference(x, fs, crop, seed=7)
    assert out.shape == ref.shape == (12, 5000)
    assert np.abs(out - ref).max() < 1e-4 * ref.std()


def test_preprocess_memory_does_not_grow_with_record_length() -> None:
    """A 2-hour 12-lead 1000 Hz array (346 MB): preprocessing used to copy and resample all of it."""
    long = np.zeros((12, 2 * 3600 * 1000), dtype=np.float32)
    long[:, : 60 * 1000] = _wave(60 * 1000, 1000.0)
    tracemalloc.start()
    try:
        out, mask, _ = preprocess_array(long, 1000.0, cfg=PreprocessConfig())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (12, 5000) and mask.all()
    assert peak < 30e6, f"preprocess allocated {peak / 1e6:.0f} MB for 10 s of a 2-hour record"


def test_metadata_describes_the_whole_record() -> None:
    from ecglang.record.ecg import Ecg

    ecg = Ecg(_wave(600 * 360, 360.0), 360.0, record_id="long")
    out = preprocess(ecg, PreprocessConfig(crop="center"))
    assert out.metadata["original_n_samples"] == 600 * 360
    assert out.metadata["resampled_n_samples"] == 600 * 500
    assert out.metadata["crop_offset"] == (600 * 500 - 5000) // 2


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (PreprocessConfig(), ReadWindow(10.0, "start", 5.0)),
        (PreprocessConfig(crop="center", target_samples=2500, target_fs=250.0), ReadWindow(10.0, "center", 5.0)),
        (PreprocessConfig.merl_compat("cpsc2018"), ReadWindow(5.0, "start", 5.0)),
        (PreprocessConfig(crop="random"), None),
        (PreprocessConfig(target_samples=None), None),
        (PreprocessConfig(target_fs=None, bandpass=None), None),
    ],
)
def test_read_window_follows_the_config(cfg: PreprocessConfig, expected: ReadWindow | None) -> None:
    assert cfg.read_window() == expected


def _write_wfdb(folder: Path, name: str, fs: float, seconds: float, written: list[tuple[int, int]]) -> Path:
    """A 12-lead format-16 WFDB record of `seconds`; only the sample ranges in `written` hold signal (the rest
    of the file is a hole of zeros, so that a 24-hour record costs no disk time)."""
    n = round(seconds * fs)
    lines = [f"{name} 12 {fs:g} {n}"]
    lines += [f"{name}.dat 16 {GAIN:g}(0)/mV 16 0 0 0 0 {lead}" for lead in CANONICAL_LEADS]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    with open(folder / f"{name}.dat", "wb") as f:
        f.truncate(n * 12 * 2)
        for start, stop in written:
            f.seek(start * 12 * 2)
            f.write(np.round(_ecg_wave(stop - start, fs, seed=start).T * GAIN).astype("<i2").tobytes())
    return folder / f"{name}.hea"


@pytest.mark.parametrize("crop", ["start", "center"])
def test_windowed_read_matches_the_full_read(tmp_path: Path, crop: str) -> None:
    fs, seconds = 1000.0, 300.0
    n = round(fs * seconds)
    hea = _write_wfdb(tmp_path, "rec", fs, seconds, [(0, n)])
    cfg = PreprocessConfig(crop=crop)
    window = cfg.read_window()
    part = load_ecg(hea, window=window)
    assert part.n_samples == (15_000 if crop == "start" else 20_000)  # 10 s + 5 s margin at the cut side(s)
    assert part.metadata["n_samples_in_file"] == n
    assert part.metadata["read_offset"] == (0 if crop == "start" else (n - 20_000) // 2)
    whole = preprocess(load_ecg(hea), cfg).signal
    windowed = preprocess(part, cfg).signal
    if crop == "start":  # the same samples, the same output (within the band-pass edge transient)
        assert np.abs(whole - windowed).max() < 1e-3
    else:  # the centre of the part is the centre of the record, up to a sub-sample shift of the output grid
        assert np.corrcoef(whole.ravel(), windowed.ravel())[0, 1] > 0.999
        assert np.abs(whole - windowed).max() < 0.05 * np.abs(whole).max()


@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_windowed_read_of_numpy_files(tmp_path: Path, fmt: str) -> None:
    x = _wave(120 * 500, 500.0)
    path = tmp_path / f"rec.{fmt}"
    if fmt == "npy":
        np.save(path, x.T)  # [samples, leads]: transposed on reading
        kwargs = {"fs": 500.0, "leads": list(CANONICAL_LEADS)}
    else:
        np.savez(path, signal=x, fs=500.0, leads=np.array(CANONICAL_LEADS))
        kwargs = {}
    part = load_ecg(path, window=ReadWindow(10.0, "center", 5.0), **kwargs)
    start = (120 * 500 - 10_000) // 2
    np.testing.assert_array_equal(part.signal, x[:, start : start + 10_000])
    assert part.metadata["read_offset"] == start


_MEASURE = textwrap.dedent(
    """
    import gc, json, resource, sys, time, traceback
    cases, leads = json.loads(sys.argv[1]), sys.argv[2].split(",")
    # Address-space cap of each case: the memory map of its .npy plus 6 GB (torch reserves some). The old
    # whole-record read needs 10+ GB here: it must fail with MemoryError, not take the machine's memory. The hard
    # limit is the largest cap; the soft one is set per case (the first case's cap while loading the model).
    limits = [c["mapped"] + 6 * 1024**3 for c in cases]
    resource.setrlimit(resource.RLIMIT_AS, (limits[0], max(limits)))
    from ecglang.encoders.modeling import load_model
    from ecglang.record.io import load_ecg
    from ecglang.scores.classifier import ZeroShotClassifier
    from ecglang.scores.labels import clear_prompt_cache

    def hwm_mb():
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest) across exec, and
        # VmHWM can be reset between cases
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))

    clf = ZeroShotClassifier(load_model(device="cpu"))
    cfg = clf.processor.preprocess_config
    load_mb = hwm_mb()  # the peak of import + model load: part of every case's peak, as in a process of its own
    for case, limit in zip(cases, limits):
        resource.setrlimit(resource.RLIMIT_AS, (limit, max(limits)))
        clear_prompt_cache(clf.model)  # each case embeds its labels, as in a process of its own
        gc.collect()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # VmHWM := VmRSS
        cfg.crop = case["crop"]
        out = {"case": case["name"], "error": None, "read_samples": None, "scores": None, "failures": None}
        t = time.perf_counter()
        try:
            npy = case["path"].endswith(".npy")
            if case["via"] == "path":  # the path, as `ecglang zero-shot` passes it: the pipeline reads the window
                result = clf([case["path"]], labels=["normal ECG", "atrial fibrillation"], progress=False)
            else:
                ecg = load_ecg(case["path"], fs=1000.0 if npy else None, leads=leads if npy else None,
                               window=cfg.read_window())
                out["read_samples"] = ecg.n_samples
                result = clf([ecg], labels=["normal ECG", "atrial fibrillation"], progress=False)
                del ecg
            out.update(scores=list(result.scores.shape), failures=len(result.failures))
            del result
        except Exception as e:  # MemoryError included: reported for this case, the next ones still run
            out["error"] = "".join(traceback.format_exception(e))[-2000:]
        case_mb = hwm_mb()
        out.update(peak_rss_mb=max(load_mb, case_mb), case_peak_rss_mb=case_mb, load_peak_rss_mb=load_mb,
                   seconds=time.perf_counter() - t)
        print("CASE " + json.dumps(out), flush=True)
    """
)
_HOLTER_CASES = [("wfdb", "start", "record"), ("wfdb", "center", "record"), ("npy", "center", "record"),
                 ("wfdb", "start", "path")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is reset through Linux's /proc")
def test_24_hour_holter_record_runs_zero_shot_in_bounded_memory(tmp_path: Path) -> None:
    """24 hours, 12 leads, 1000 Hz: 2.1 GB as WFDB format 16, 4.1 GB as float32 .npy (holes on disk except
    where signal is written). Zero-shot with the bundled model must peak under 1.5 GB RSS in every case
    (format, crop, an `Ecg` read with the window or the path): one process for all of them, its peak RSS reset
    before each case and the peak of loading the model counted in each, as if each case had a process of its own."""
    fs, n = 1000.0, 24 * 3600 * 1000
    centre = n // 2
    used = [(0, 30_000), (centre - 30_000, centre + 30_000)]  # signal where start/center windows read
    wfdb = _write_wfdb(tmp_path, "holter", fs, n / fs, used)
    npy = tmp_path / "holter.npy"
    arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(12, n))
    for start, stop in used:
        arr[:, start:stop] = _ecg_wave(stop - start, fs, seed=start)
    arr.flush()
    del arr
    assert (tmp_path / "holter.dat").stat().st_size > 2e9 and npy.stat().st_size > 2e9
    cases = [
        {"name": f"{fmt}-{crop}-{via}", "path": str(npy if fmt == "npy" else wfdb), "crop": crop, "via": via,
         "mapped": npy.stat().st_size if fmt == "npy" else 0}
        for fmt, crop, via in _HOLTER_CASES
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(cases), ",".join(CANONICAL_LEADS)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    results = {r["case"]: r for r in (json.loads(x[5:]) for x in proc.stdout.splitlines() if x.startswith("CASE "))}
    print(f"24 h holter, {len(results)} cases (subprocess {time.perf_counter() - started:.1f} s)")
    problems = []
    for case in cases:
        name, result = case["name"], results.get(case["name"])
        print(f"24 h {name}: {result}")
        if result is None:
            problems.append(f"{name}: no result (child exit code {proc.returncode}): {proc.stderr[-2000:]}")
        elif result["error"] is not None:
            problems.append(f"{name}: {result['error']}")
        elif not (result["scores"] == [1, 2] and result["failures"] == 0):
            problems.append(f"{name}: scores {result['scores']}, {result['failures']} failures")
        elif not result["peak_rss_mb"] < 1536:
            problems.append(f"{name}: peak RSS {result['peak_rss_mb']:.0f} MB >= 1536 MB ({result})")
    assert not problems, "\n".join(problems)
    assert proc.returncode == 0, proc.stderr[-2000:]

"""The preprocessing contract: one function turns any `Ecg` into the model's clean, fixed-size input.

Steps, in this order (each setting is a field of `PreprocessConfig`):

| # | step | settings (default) | what happens |
|---|---|---|---|
| 1 | missing leads | `lead_mask` | rows with mask False are zeroed |
| 2 | NaN / inf | `max_gap_s=0.2`, `on_long_gap="mask"` | short gaps interpolated; long gap: lead masked or raise |
| 3 | flat lead | `flat_ptp_mv=0.02`, `flat_std_mv=0.005` | ptp or std below threshold (mV) → zeroed, masked |
| 3b | mostly flat | `flat_block_ptp_mv=0.01`, `flat_block_fraction=0.4` | 1 s blocks, after step 8 (below) → masked |
| 4 | saturated lead | `saturation_fraction=0.1` | that fraction stuck at its min/max rail → zeroed, masked |
| 0 | window | `target_samples`, `crop`, `keep_samples` | only the part used (plus 5 s each side) is kept, see below |
| 5 | resample | `target_fs=500` | `resample_poly`, rational up/down (257→500: 500/257); `None` keeps fs |
| 6 | band-pass | `bandpass=(0.5, 40)`, `filter_order=2`, `edge_pad` | Butterworth, zero-phase `sosfiltfilt` |
| 7 | keep | `keep_samples=None` | keep only the first samples (CPSC rule of `merl_compat`) |
| 8 | crop | `target_samples=5000`, `crop="start"` | longer records cropped at `start`, `center` or `random` offset |
| 9 | normalise | `normalize="zscore"`, `robust=True` | per lead `zscore`, `minmax`; `record_minmax`, `mm`, `none` |
| 10 | pad | `pad="zero"`, `pad_then_normalize=False` | shorter records padded at the end: `zero`, `edge` or `repeat` |

Details:

- Settings are checked when the config is built (`ConfigError` naming the field): `target_fs` within
  50-20000 Hz (`MIN_FS_HZ`-`MAX_FS_HZ`, the range of real electrocardiographs), `target_samples` and
  `keep_samples` at most `MAX_SAMPLES` (2**22: 2.3 h at 500 Hz, a [12, n] float32 output of at most 192 MiB),
  `filter_order` at most `MAX_FILTER_ORDER` (16); numbers must be numbers and `robust`/`pad_then_normalize`
  true or false (a JSON string such as "no" is refused, not read as true).
- Memory is bounded by what is used (step 0): before anything else, the record is cut to the samples that
  keep/crop (steps 7-8) will use, plus `EDGE_MARGIN_S` (5 s) on each side for the resampler and band-pass
  edges, so a 24-hour Holter record costs what 20 s cost. The cut is aligned to the resampling ratio, so the
  output differs from processing the whole record only by the band-pass edge transient left after 5 s
  (below 1e-4 of the signal scale). Quality checks (2-4) then look at that part, not the whole record.
  `crop="random"` draws its offset first (same draw as before). `PreprocessConfig.read_window()` gives the
  same part to `load_ecg(..., window=...)`, so that long files are not even read whole.
- Units: the flat/saturation thresholds are in mV. A signal in volts has every lead flat (the error says to
  convert it); a signal in µV passes, and its flat leads are missed (a disconnected lead of 3 µV noise reads as
  3 mV and is kept): readers must convert to mV. Its robust z-scores equal those of the mV signal, but `mm`/`none`
  keep its scale, so a median lead peak-to-peak (of the used part, after the band-pass) over `MICROVOLT_PTP_MV`
  (20 mV; the 362 records of ../shared/data: 0.43-3.3 mV) sets `metadata["unit_warning"]` ("looks like µV:
  divide by 1000"), which `ecglang inspect` prints; the output is unchanged.
- Flags in `metadata["quality"]`: `missing` (1), `nan_interpolated` / `nan_gap` (2), `flat` (3, 3b),
  `saturated` (4).
- Mostly flat lead (3b): an electrode off for part of the record leaves ADC noise there, which passes step 3 (the
  whole lead's ptp/std), and the robust z-score's scale then comes from that part: the live part reached 100-1300
  z-units (PTB-XL 00001, V1/V2 of 2 µV noise for 5-8 s; normal at most 28). So the used part (after the band-pass
  and crop, before normalising, in mV) is cut into 1 s blocks, and a lead with at least `flat_block_fraction` of
  them below `flat_block_ptp_mv` peak-to-peak is masked and flagged `flat`. On the 353 PTB-XL sample records no
  lead has any such block (smallest 1 s-block ptp 0.022 mV); a lead of 2 µV noise for 5 / 7 s of 10 has 0.4 / 0.6
  of its blocks flat (the band-pass rings into the blocks after the live part); 4 s: 0.3, kept, its live part at
  up to 62 z-units. ADC noise of 5 µV rms is at the threshold (1 of 2 such leads caught at 5-7 s), 10 µV is not
  flat. `flat_block_ptp_mv=0` turns the rule off; processor files of format < 3 and caches saved without it read
  as 0 (`from_saved`).
- Quality checks (2-4) run on the raw signal at its own rate, before any filtering. "Stuck at a rail"
  means runs of at least 10 ms (and 3 samples) within 0.1 % of the lead's range from its min or max:
  a waveform merely touching its peak does not count.
- `on_long_gap="raise"` raises `EcgQualityError` naming the lead and the gap length.
- The band-pass is `sosfiltfilt`'s output, computed by blocks of samples (`ecglang.signal.zero_phase`: the
  same to ~1e-10 of the signal scale, far below float32 resolution, at about half the cost).
- `bandpass=None` skips the band-pass.
- Record edges: with `edge_pad="even"` (default) the band-pass runs over a mirror image of the record's first and
  last `0.75 / low_hz` seconds (1.5 s at 0.5 Hz, at most the record's length). scipy's default (`edge_pad="odd"`,
  3 x (2 x sections + 1) samples: 30 ms) sets the 0.5 Hz high-pass's baseline to the edge sample, so a record
  starting or ending on a QRS or T wave got a baseline swing decaying over ~1 s: against the same samples
  filtered inside a longer record, up to 1.3 mV at the start and 2.3 mV at the end, still 0.09 / 0.35 mV 1 s in
  (MIT-BIH 100, 10 s pieces); even padding: 0.23 / 0.31 mV on the first/last sample, <= 0.045 mV from 0.2 s in.
  `"odd"` reproduces inputs prepared before this option existed (the bundled ecglang-mini checkpoint's training).
- Resampling uses `padtype="line"` so that a DC offset does not ring at the record edges.
- A record not longer than the band-pass filter's `padlen` raises `EcgQualityError` (too short to filter).
- `crop="random"` draws the offset from `rng` (a numpy Generator or a seed), for training augmentation.
- `zscore` is robust by default: median and 1.4826·MAD, estimated on at most 2500 evenly spaced
  samples per lead (the same estimate within sampling error, 3-4x cheaper); `robust=False` uses mean and
  std. `minmax` maps each lead to [0, 1]; `record_minmax` maps all valid leads together to [0, 1]; `mm` keeps
  absolute voltage: each lead minus its median, in mm at standard gain (10 mm/mV, ECG paper's unit), which puts
  a QRS (median peak-to-peak 1.1 mV, 28 robust z-score units) at the scale networks are initialised for.
- Statistics come from the real samples only, before padding, so zero padding stays 0 in the normalised
  space; `pad_then_normalize=True` swaps steps 9 and 10 (MERL's order: the padding enters the statistics).
- Masked leads are zero in the output whatever the normalisation.

If no lead is usable after steps 1–4 (or 3b), `EcgQualityError` names the record. `metadata` gains `quality`
(lead name → list of flags, only for leads with a flag), `original_fs`, `original_n_samples`,
`resampled_n_samples` (length at `target_fs` before crop/pad), `crop_offset` and `pad_samples`, and
`unit_warning` where the amplitude looks like µV (see Units).

`PreprocessConfig.merl_compat()` reproduces the MERL (ICML 2024) input: 500 Hz, 5000 samples, no
filter, whole-record min-max to [0, 1]; for CPSC 2018 (`dataset="cpsc2018"`/`"icbeb"`) only the first
2500 samples are kept and zero-padded to 5000 before the min-max (as MERL's zero-shot code does). One
deliberate difference: flat/saturated leads are masked (zeroed after normalisation) and do not enter
the min-max, where MERL normalises all 12 rows as they are.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import signal as sps

from ecglang.core.config import DictConfig
from ecglang.errors import ConfigError, EcgQualityError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import CANONICAL_LEADS, N_LEADS
from ecglang.record.window import MAX_FS_HZ, MIN_FS_HZ, ReadWindow
from ecglang.signal.zero_phase import PAD_TYPES, PadType, zero_phase

CropPolicy = Literal["start", "center", "random"]
PadPolicy = Literal["zero", "edge", "repeat"]
NormPolicy = Literal["zscore", "minmax", "record_minmax", "mm", "none"]

_CROPS = ("start", "center", "random")
_PADS = ("zero", "edge", "repeat")
_NORMS = ("zscore", "minmax", "record_minmax", "mm", "none")
MM_PER_MV = 10.0  # standard ECG gain: 10 mm of paper per mV
_MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its standard deviation
_EPS = 1e-6
_ROBUST_POINTS = 2500
_MAX_ABS = 1e9  # far beyond any ECG in mV or raw ADC units; keeps float32 arithmetic away from overflow
# A median lead peak-to-peak above this (mV) is a signal in µV (or ADC counts): 6x the largest of the real records
# of ../shared/data (3.3 mV), 20x below the smallest read as µV (0.43 mV: 430).
MICROVOLT_PTP_MV = 20.0
# Signal kept on each side of the used part (step 0): the 0.5 Hz band-pass edge transient decays to < 1e-4
# of the signal within it, and it covers resample_poly's filter (10 * max(up, down) samples at the up rate).
EDGE_MARGIN_S = 5.0
# Upper bounds of the settings, so that a config (a checkpoint's processor_config.json included) cannot make
# every record allocate absurd memory. A fixed length of 2**22 samples is 2.3 h at 500 Hz (3.5 min at the
# 20 kHz maximum rate): the [12, n] float32 output is then at most 192 MiB. Butterworth band-passes of ECGs use
# orders 1-4; no ECG use needs more than 16 (and huge orders overflow scipy's filter design).
MAX_SAMPLES = 2**22
EDGE_PAD_CYCLES = 0.75  # periods of the band-pass's low edge mirrored at each record edge (`edge_padlen`)
MAX_FILTER_ORDER = 16


@dataclass
class PreprocessConfig(DictConfig):
    """Settings of `preprocess`; the module docstring is the contract (order and meaning of each step)."""

    # `from_saved`: settings saved without `edge_pad` were filtered with scipy's 30 ms odd extension ("odd"; new
    # settings: "even", a 1.5 s mirror image, which changes the first and last second of a record); without
    # `flat_block_ptp_mv`, no mostly flat lead was masked (0).
    SAVED_BEFORE: ClassVar[dict[str, tuple[Any, int]]] = {"edge_pad": ("odd", 2), "flat_block_ptp_mv": (0.0, 3)}

    target_fs: float | None = 500.0
    target_samples: int | None = 5000
    bandpass: tuple[float, float] | None = (0.5, 40.0)
    filter_order: int = 2
    edge_pad: PadType = "even"
    max_gap_s: float = 0.2
    on_long_gap: Literal["mask", "raise"] = "mask"
    flat_ptp_mv: float = 0.02
    flat_std_mv: float = 0.005
    flat_block_ptp_mv: float = 0.01
    flat_block_fraction: float = 0.4
    saturation_fraction: float = 0.1
    keep_samples: int | None = None
    crop: CropPolicy = "start"
    pad: PadPolicy = "zero"
    normalize: NormPolicy = "zscore"
    robust: bool = True
    pad_then_normalize: bool = False

    def __post_init__(self) -> None:
        self.validate()
        # JSON gives lists and numpy gives its own scalars: store plain Python values of each field's type.
        if self.target_fs is not None:
            self.target_fs = float(self.target_fs)
        if self.bandpass is not None:
            self.bandpass = (float(self.bandpass[0]), float(self.bandpass[1]))
        for name in ("target_samples", "keep_samples"):
            if getattr(self, name) is not None:
                setattr(self, name, int(getattr(self, name)))
        self.filter_order = int(self.filter_order)
        for name in ("max_gap_s", "flat_ptp_mv", "flat_std_mv", "flat_block_ptp_mv", "flat_block_fraction",
                     "saturation_fraction"):  # fmt: skip
            setattr(self, name, float(getattr(self, name)))
        self.robust = bool(self.robust)
        self.pad_then_normalize = bool(self.pad_then_normalize)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid field (wrong type, or a value out of its range)."""
        if self.target_fs is not None:
            _check_number("target_fs", self.target_fs, "a sampling rate in Hz or None")
            if not MIN_FS_HZ <= self.target_fs <= MAX_FS_HZ:
                raise ConfigError(
                    f"PreprocessConfig.target_fs must be within {MIN_FS_HZ:g}-{MAX_FS_HZ:g} Hz (the range of real "
                    f"electrocardiographs) or None, got {self.target_fs!r}"
                )
        for name in ("target_samples", "keep_samples"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 1, MAX_SAMPLES, "or None")
        if self.bandpass is not None:
            if not isinstance(self.bandpass, (tuple, list, np.ndarray)) or len(self.bandpass) != 2:
                raise ConfigError(f"PreprocessConfig.bandpass must be (low_hz, high_hz) or None, got {self.bandpass!r}")
            for edge in self.bandpass:
                _check_number("bandpass", edge, "(low_hz, high_hz) of finite numbers or None")
            lo, hi = self.bandpass
            if not (0 < lo < hi):
                raise ConfigError(f"PreprocessConfig.bandpass needs 0 < low < high, got {self.bandpass}")
            if self.target_fs is not None and hi >= self.target_fs / 2:
                raise ConfigError(
                    f"PreprocessConfig.bandpass high edge {hi} Hz must be below Nyquist ({self.target_fs / 2} Hz)"
                )
        _check_int("filter_order", self.filter_order, 1, MAX_FILTER_ORDER)
        _check_number("max_gap_s", self.max_gap_s, "a number of seconds >= 0")
        if not (self.max_gap_s >= 0):
            raise ConfigError(f"PreprocessConfig.max_gap_s must be >= 0, got {self.max_gap_s}")
        for name in ("flat_ptp_mv", "flat_std_mv", "flat_block_ptp_mv"):
            _check_number(name, getattr(self, name), "a number of mV >= 0")
            if not getattr(self, name) >= 0:
                raise ConfigError(f"PreprocessConfig.{name} must be a number of mV >= 0, got {getattr(self, name)}")
        _check_number("flat_block_fraction", self.flat_block_fraction, "a fraction in (0, 1]")
        if not (0 < self.flat_block_fraction <= 1):
            raise ConfigError(f"PreprocessConfig.flat_block_fraction must be in (0, 1], got {self.flat_block_fraction}")
        _check_number("saturation_fraction", self.saturation_fraction, "a fraction in (0, 1]")
        if not (0 < self.saturation_fraction <= 1):
            raise ConfigError(f"PreprocessConfig.saturation_fraction must be in (0, 1], got {self.saturation_fraction}")
        self.check_choices(
            {"on_long_gap": ("mask", "raise"), "edge_pad": PAD_TYPES, "crop": _CROPS, "pad": _PADS, "normalize": _NORMS}
        )
        for name in ("robust", "pad_then_normalize"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):  # a string such as "no" is truthy: never guess
                raise ConfigError(
                    f"PreprocessConfig.{name} must be true or false, got {value!r} ({type(value).__name__})"
                )

    def read_window(self) -> ReadWindow | None:
        """The part of a record that `preprocess` uses, for ``load_ecg(path, window=cfg.read_window())``.

        None when the whole record may be used: no `target_fs` (the length in seconds depends on the
        record's rate), no `target_samples`, or ``crop="random"`` (the offset is drawn per call).
        """
        if self.target_fs is None:
            return None
        if self.keep_samples is not None:  # crop and pad act on the first keep_samples only
            return ReadWindow(self.keep_samples / self.target_fs, "start", EDGE_MARGIN_S)
        if self.target_samples is None or self.crop == "random":
            return None
        return ReadWindow(self.target_samples / self.target_fs, self.crop, EDGE_MARGIN_S)

    @classmethod
    def merl_compat(cls, dataset: str | None = None) -> PreprocessConfig:
        """The MERL (ICML 2024) input: 500 Hz, 5000 samples, no filter, whole-record min-max to [0, 1].

        For CPSC 2018 (`"cpsc2018"` or `"icbeb"`) only the first 2500 samples are kept, then zero-padded
        to 5000, as in MERL's zero-shot evaluation.
        """
        cfg = cls(target_fs=500.0, target_samples=5000, bandpass=None, normalize="record_minmax",
                  crop="start", pad="zero", pad_then_normalize=True)  # fmt: skip
        if dataset is not None and dataset.lower() in ("cpsc2018", "cpsc", "icbeb"):
            cfg.keep_samples = 2500
        return cfg


def _check_number(name: str, value: object, what: str) -> None:
    """`value` must be a finite real number: not a bool, not a string (JSON "500" or "no" are not numbers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"PreprocessConfig.{name} must be {what}, got {value!r} ({type(value).__name__})")


def _check_int(name: str, value: object, low: int, high: int, extra: str = "") -> None:
    """`value` must be an int (not a bool, not a float such as 5000.0) in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ConfigError(
            f"PreprocessConfig.{name} must be an int in [{low}, {high}]{' ' + extra if extra else ''}, "
            f"got {value!r} ({type(value).__name__})"
        )


@lru_cache(maxsize=64)
def _bandpass_sos(order: int, lo: float, hi: float, fs: float) -> np.ndarray:
    return sps.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")


@lru_cache(maxsize=64)
def _sosfilt_zi(order: int, lo: float, hi: float, fs: float) -> np.ndarray:
    """`sosfilt_zi` of the band-pass, shaped `[sections, 1, 2]` to broadcast over leads (cached: it solves
    a linear system per section, which costs as much as filtering a few leads)."""
    zi = sps.sosfilt_zi(_bandpass_sos(order, lo, hi, fs))[:, None, :]
    zi.flags.writeable = False
    return zi


def edge_padlen(low_hz: float, fs: float, n: int) -> int:
    """Samples mirrored at each edge for `edge_pad="even"`: 0.75 / `low_hz` seconds (about 3.3 time constants of
    the 2nd-order high-pass, whose edge transient has then decayed below 4 %), at most `n - 1`."""
    return max(1, min(n - 1, math.ceil(EDGE_PAD_CYCLES / low_hz * fs)))


def _sosfiltfilt_padlen(sos: np.ndarray) -> int:
    # scipy's default for sosfiltfilt (see its docstring): 3 * (2 * n_sections + 1 - trailing zeros)
    n_zeros = min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return 3 * (2 * len(sos) + 1 - n_zeros)


@lru_cache(maxsize=64)
def _resample_ratio(fs: float, target_fs: float) -> tuple[int, int]:
    ratio = (
        Fraction(target_fs).limit_denominator(100_000) / Fraction(fs).limit_denominator(100_000)
    ).limit_denominator(10_000)
    return ratio.numerator, ratio.denominator


@dataclass(frozen=True)
class _CropPlan:
    """Step 0: input samples [in_start, in_stop) are kept; their resampled first sample is `out_start` of the
    whole record's resampled signal (length `n_res`), whose used part is [offset, offset + length)."""

    in_start: int
    in_stop: int
    out_start: int
    offset: int
    length: int
    n_res: int


def _plan_crop(
    n_in: int, fs: float, out_fs: float, cfg: PreprocessConfig, rng: np.random.Generator | int | None
) -> _CropPlan:
    """Where keep/crop (steps 7-8) will cut, computed on lengths alone, and the input samples that feeds."""
    up, down = (1, 1) if out_fs == fs else _resample_ratio(fs, out_fs)
    n_res = -(-n_in * up // down)  # resample_poly's output length
    n = min(n_res, cfg.keep_samples) if cfg.keep_samples is not None else n_res
    target = cfg.target_samples
    offset, length = 0, n
    if target is not None and n > target:
        if cfg.crop == "center":
            offset = (n - target) // 2
        elif cfg.crop == "random":
            offset = int(_rng(rng).integers(0, n - target + 1))
        length = target
    margin = math.ceil(EDGE_MARGIN_S * out_fs)
    first, last = max(0, offset - margin), min(n_res, offset + length + margin)
    half = 0 if up == down else 10 * max(up, down) // up + 1  # resample_poly's filter half-length, input samples
    # Start on a multiple of `down`: the kept part then resamples onto the whole record's output grid.
    in_start = max(0, first * down // up - half) // down * down
    in_stop = min(n_in, -(-last * down // up) + half)
    return _CropPlan(in_start, in_stop, in_start * up // down, offset, length, n_res)


def _runs(bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) indices of the True runs of a 1-D boolean array."""
    edges = np.diff(np.concatenate(([0], bad.view(np.int8), [0])))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _fix_nonfinite(
    x: np.ndarray, mask: np.ndarray, fs: float, cfg: PreprocessConfig, flags: list[list[str]], record: str | None
) -> None:
    """Interpolate short NaN/inf gaps in place; mask leads with a gap longer than `max_gap_s`."""
    finite = np.isfinite(x)
    bad_leads = np.flatnonzero(mask & ~finite.all(axis=1))
    max_gap = int(np.floor(cfg.max_gap_s * fs + 1e-9))
    idx = np.arange(x.shape[1])
    for lead in bad_leads:  # at most 12 leads; the work inside is vectorised
        bad = ~finite[lead]
        starts, ends = _runs(bad)
        longest = int((ends - starts).max())
        if longest > max_gap or bad.all():
            if cfg.on_long_gap == "raise":
                raise EcgQualityError(
                    record,
                    f"lead {CANONICAL_LEADS[lead]} has a {longest / fs:.3f} s gap of NaN/inf samples "
                    f"(max_gap_s={cfg.max_gap_s})",
                )
            mask[lead] = False
            x[lead] = 0.0
            flags[lead].append("nan_gap")
        else:
            x[lead, bad] = np.interp(idx[bad], idx[~bad], x[lead, ~bad])
            flags[lead].append("nan_interpolated")
    # Masked leads may hold anything (NaN included): they are zeroed below, so never inspected.


def _flat_and_saturated(
    x: np.ndarray, mask: np.ndarray, fs: float, cfg: PreprocessConfig, flags: list[list[str]]
) -> None:
    """Mask flat leads (tiny ptp/std) and saturated leads (many samples stuck at their min/max rail)."""
    valid = np.flatnonzero(mask)
    if valid.size == 0:
        return
    v = x[valid]
    lo = v.min(axis=1, keepdims=True)
    hi = v.max(axis=1, keepdims=True)
    ptp = (hi - lo)[:, 0]
    std = v.std(axis=1)
    flat = (ptp < cfg.flat_ptp_mv) | (std < cfg.flat_std_mv)
    # Clipping leaves plateaus at the lead's extreme values: count windows of `run` consecutive samples
    # (10 ms, at least 3) that all sit within 0.1 % of the range of the min or the max rail. A waveform
    # merely touching its peak, even for two equal samples, does not count.
    tol = 1e-3 * (hi - lo)
    run = max(3, round(0.01 * fs))
    n = v.shape[1]
    stuck = np.zeros(len(valid), dtype=np.int64)
    need = cfg.saturation_fraction * n
    if n >= run:
        for at in (v <= lo + tol, v >= hi - tol):
            # A stuck window starts at a sample on the rail, so a lead with fewer rail samples than the
            # saturation count cannot be saturated on that side: only the others need the window count.
            rows = np.flatnonzero(np.count_nonzero(at, axis=1) >= need - stuck)
            if rows.size == 0:
                continue
            c = np.zeros((rows.size, n + 1), dtype=np.int32)
            np.cumsum(at[rows], axis=1, out=c[:, 1:])
            stuck[rows] += ((c[:, run:] - c[:, :-run]) == run).sum(axis=1)
    saturated = ~flat & (stuck >= need)
    for lead, is_flat, is_sat in zip(valid, flat, saturated, strict=True):
        if is_flat or is_sat:
            mask[lead] = False
            flags[lead].append("flat" if is_flat else "saturated")


def _mostly_flat(x: np.ndarray, mask: np.ndarray, fs: float, cfg: PreprocessConfig, flags: list[list[str]]) -> None:
    """Step 3b: mask leads of `x` (the used part, in mV) with at least `flat_block_fraction` of their whole 1 s
    blocks under `flat_block_ptp_mv` peak-to-peak (an electrode off for part of the record)."""
    size = max(1, round(fs))
    n_blocks = x.shape[1] // size
    valid = np.flatnonzero(mask)
    if cfg.flat_block_ptp_mv <= 0 or n_blocks == 0 or valid.size == 0:
        return
    blocks = x[valid, : n_blocks * size].reshape(valid.size, n_blocks, size)
    ptp = blocks.max(axis=2) - blocks.min(axis=2)
    flat = np.count_nonzero(ptp < cfg.flat_block_ptp_mv, axis=1) >= cfg.flat_block_fraction * n_blocks - 1e-9
    for lead in valid[flat]:
        mask[lead] = False
        flags[lead].append("flat")


def _check_usable(mask: np.ndarray, flags: list[list[str]], record: str | None, whole: bool) -> None:
    """`EcgQualityError` naming the record and each lead's flags when no lead is left (`whole`: after steps 1-4,
    where every lead flat means a signal in volts)."""
    if mask.any():
        return
    problems = {CANONICAL_LEADS[i]: f for i, f in enumerate(flags) if f}
    hint = ""
    if whole and all("flat" in f for f in flags if f != ["missing"]):
        hint = " (every lead is flat: a signal in volts must be converted to mV)"
    raise EcgQualityError(record, f"no usable lead left after quality checks: {problems}{hint}")


def _microvolt_warning(x: np.ndarray, mask: np.ndarray) -> str | None:
    """A note when the leads of `x` (the used part, in what should be mV) are too large for mV: a µV signal
    passes every other check (the volts one is its mirror: every lead flat), and plots and `mm` inputs mislead."""
    if not mask.any() or x.shape[1] == 0:
        return None
    ptp = float(np.median(np.ptp(x[mask], axis=1)))
    if not ptp > MICROVOLT_PTP_MV:
        return None
    return (
        f"median lead peak-to-peak {ptp:.0f} 'mV' where ECGs have about 0.4-3.3 mV: looks like µV, divide by 1000 "
        "(or ADC counts: apply the gain)"
    )


def _median_rows(v: np.ndarray) -> np.ndarray:
    """`np.median(v, axis=1, keepdims=True)` of finite `v [L, n]`, partitioning `v` in place.

    The same values as np.median (the same order statistics, averaged the same way); one partition and
    no NaN check, ~4x faster on 12 x 2500 samples.
    """
    n = v.shape[1]
    h = n // 2
    v.partition(h, axis=1)
    if n % 2:
        return v[:, h : h + 1].copy()
    # Even n: order statistic h - 1 is the largest of the h values partitioned below h (one max pass,
    # about half the cost of asking `partition` for both order statistics).
    return (v[:, :h].max(axis=1, keepdims=True) + v[:, h : h + 1]) / 2


def _normalise(x: np.ndarray, mask: np.ndarray, how: str, robust: bool) -> None:
    """Normalise valid leads of `x` in place (statistics over the real samples only)."""
    valid = np.flatnonzero(mask)
    if how == "none" or valid.size == 0 or x.shape[1] == 0:
        return
    every = valid.size == x.shape[0]  # the usual case: work on `x` itself, no gathered copy of the leads
    if how == "zscore" and robust:
        # Median and MAD from at most ~_ROBUST_POINTS evenly spaced samples per lead: the same
        # estimate within sampling error, and 3-4x cheaper than on every sample of a 10 s record.
        step = max(1, -(-x.shape[1] // _ROBUST_POINTS))
        sub = x[:, ::step].copy() if every else x[valid, ::step]  # a copy: partitioned in place
        center = _median_rows(sub)
        np.abs(np.subtract(sub, center, out=sub), out=sub)  # the same values in any order
        scale = _MAD_TO_STD * _median_rows(sub)
        if (scale <= _EPS).any():  # MAD 0 (mostly constant with rare spikes): fall back to the std
            scale = np.where(scale > _EPS, scale, x[valid].std(axis=1, keepdims=True))
        _shift_scale(x, valid, every, center, np.maximum(scale, _EPS))
        return
    v = x[valid]
    if how == "zscore":
        center = v.mean(axis=1, keepdims=True)
        scale = v.std(axis=1, keepdims=True)
        x[valid] = (v - center) / np.maximum(scale, _EPS)
    elif how == "minmax":
        lo = v.min(axis=1, keepdims=True)
        hi = v.max(axis=1, keepdims=True)
        x[valid] = (v - lo) / np.maximum(hi - lo, _EPS)
    elif how == "record_minmax":
        lo, hi = v.min(), v.max()
        x[valid] = (v - lo) / max(float(hi - lo), _EPS)
    elif how == "mm":
        x[valid] = (v - np.median(v, axis=1, keepdims=True)) * MM_PER_MV


def _shift_scale(x: np.ndarray, valid: np.ndarray, every: bool, center: np.ndarray, scale: np.ndarray) -> None:
    """`x[valid] = (x[valid] - center) / scale`, in place when every lead is valid (the same values)."""
    if every:
        np.divide(np.subtract(x, center, out=x), scale, out=x)
    else:
        x[valid] = (x[valid] - center) / scale


def _preprocess_core(
    signal12: np.ndarray,
    fs: float,
    lead_mask: np.ndarray | None,
    cfg: PreprocessConfig,
    rng: np.random.Generator | int | None,
    record: str | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]], dict[str, Any]]:
    src = np.asarray(signal12)
    if src.ndim != 2 or src.shape[0] != N_LEADS:
        raise EcgQualityError(record, f"signal must be [12, n_samples] in canonical lead order, got {src.shape}")
    if not (np.isfinite(fs) and fs > 0):
        raise EcgQualityError(record, f"sampling frequency must be a positive number, got {fs}")
    n_in = src.shape[1]
    if n_in < 2:
        raise EcgQualityError(record, f"record has {n_in} sample(s); nothing to preprocess")
    out_fs = float(fs if cfg.target_fs is None else cfg.target_fs)
    plan = _plan_crop(n_in, float(fs), out_fs, cfg, rng)
    # Step 0: copy only the part that is used (never modify the caller's array)
    x = np.array(src[:, plan.in_start : plan.in_stop], dtype=np.float32, copy=True)
    mask = np.ones(N_LEADS, dtype=bool) if lead_mask is None else np.array(lead_mask, dtype=bool, copy=True)
    if mask.shape != (N_LEADS,):
        raise EcgQualityError(record, f"lead_mask must have shape (12,), got {mask.shape}")
    flags: list[list[str]] = [[] if m else ["missing"] for m in mask]

    _fix_nonfinite(x, mask, fs, cfg, flags, record)
    too_big = np.flatnonzero(mask)[np.abs(x[mask]).max(axis=1) > _MAX_ABS] if mask.any() else []
    if len(too_big):
        leads = [CANONICAL_LEADS[i] for i in too_big]
        raise EcgQualityError(record, f"lead(s) {leads} exceed ±{_MAX_ABS:g}: not a voltage (mV or ADC units)")
    _flat_and_saturated(x, mask, fs, cfg, flags)
    x[~mask] = 0.0
    _check_usable(mask, flags, record, whole=True)

    if out_fs != fs:
        up, down = _resample_ratio(float(fs), out_fs)
        x = sps.resample_poly(x, up, down, axis=1, padtype="line").astype(np.float32, copy=False)
    n_res = x.shape[1]

    if cfg.bandpass is not None:
        lo, hi = cfg.bandpass
        if hi >= out_fs / 2:
            raise ConfigError(f"band-pass high edge {hi} Hz must be below Nyquist of {out_fs} Hz")
        sos = _bandpass_sos(cfg.filter_order, lo, hi, out_fs)
        padlen = _sosfiltfilt_padlen(sos)
        if n_res <= padlen:
            raise EcgQualityError(
                record,
                f"record too short to band-pass: {n_res} samples at {out_fs:g} Hz, the zero-phase filter needs "
                f"more than {padlen}; use a longer record or bandpass=None",
            )
        if cfg.edge_pad == "even":
            padlen = edge_padlen(lo, out_fs, n_res)
        zi = _sosfilt_zi(cfg.filter_order, lo, hi, out_fs)
        valid = np.flatnonzero(mask)
        x[valid] = zero_phase(sos, zi, x if valid.size == N_LEADS else x[valid], padlen, cfg.edge_pad)

    # Steps 7-8, planned in step 0: the used part, in the coordinates of the kept part
    offset, target = plan.offset, cfg.target_samples
    x = x[:, offset - plan.out_start : offset - plan.out_start + plan.length]
    _mostly_flat(x, mask, out_fs, cfg, flags)
    _check_usable(mask, flags, record, whole=False)
    unit_warning = _microvolt_warning(x, mask)

    if not cfg.pad_then_normalize:
        _normalise(x, mask, cfg.normalize, cfg.robust)
    pad = 0
    if target is not None and x.shape[1] < target:
        pad = target - x.shape[1]
        mode = {"zero": "constant", "edge": "edge", "repeat": "wrap"}[cfg.pad]
        x = np.pad(x, ((0, 0), (0, pad)), mode=mode)
    if cfg.pad_then_normalize:
        _normalise(x, mask, cfg.normalize, cfg.robust)
    x[~mask] = 0.0
    quality = {CANONICAL_LEADS[i]: f for i, f in enumerate(flags) if f}
    info = {
        "original_fs": float(fs),
        "original_n_samples": int(n_in),
        "resampled_n_samples": int(plan.n_res),
        "crop_offset": int(offset),
        "pad_samples": int(pad),
    }
    if unit_warning:
        info["unit_warning"] = unit_warning
    return np.ascontiguousarray(x, dtype=np.float32), mask, quality, info


def preprocess_array(
    signal12: np.ndarray,
    fs: float,
    lead_mask: np.ndarray | None = None,
    cfg: PreprocessConfig | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    record: str | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
    """Array-level core of `preprocess`: returns `(signal [12, T] float32, mask [12], quality)` (the signal cache
    calls `preprocess`, whose metadata also says the padding added).

    `rng` drives `crop="random"`; `record` names the record in errors.
    """
    signal, mask, quality, _ = _preprocess_core(signal12, fs, lead_mask, cfg or PreprocessConfig(), rng, record)
    return signal, mask, quality


def preprocess(ecg: Ecg, cfg: PreprocessConfig | None = None, *, rng: np.random.Generator | int | None = None) -> Ecg:
    """Apply the preprocessing contract (module docstring) to `ecg`; returns a new `Ecg`.

    Raises `EcgQualityError` (naming the record) when no lead is usable or a long NaN gap is found with
    `on_long_gap="raise"`.
    """
    cfg = cfg or PreprocessConfig()
    record = str(ecg.metadata.get("source_path") or ecg.record_id or "") or None
    signal, mask, quality, info = _preprocess_core(ecg.signal, ecg.fs, ecg.lead_mask, cfg, rng, record)
    metadata = dict(ecg.metadata)
    metadata.update(info)
    metadata["quality"] = quality
    out_fs = ecg.fs if cfg.target_fs is None else float(cfg.target_fs)
    return Ecg(signal=signal, fs=out_fs, lead_mask=mask, record_id=ecg.record_id, metadata=metadata)

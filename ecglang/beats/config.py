"""Beat detection and window settings (`BeatConfig`), shared by `detect` and `tokenize`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np

from ecglang.core.config import DictConfig
from ecglang.errors import ConfigError

LEAD_WEIGHTINGS = ("qrs_evidence", "equal")
LEAD_COMBINES = ("trimmed", "mean")
EDGE_RULES = ("symmetric", "start")


@dataclass
class BeatConfig(DictConfig):
    """Beat detection and window settings (the algorithm is in `ecglang.beats.detect`)."""

    pre_s: float = 0.25
    post_s: float = 0.45
    beat_len: int = 96
    max_beats: int = 40
    min_beats: int = 2
    refractory_s: float = 0.2  # 220 bpm is an RR of 0.27 s
    qrs_band: tuple[float, float] = (8.0, 25.0)
    detect_fs: float = 100.0
    integration_s: float = 0.08
    threshold: float = 0.3
    level_block_s: float = 2.5
    level_blocks: int = 5
    searchback_rr: float = 1.6
    weak_ratio: float = 0.4
    early_rr: float = 0.6
    refine_s: float = 0.05
    # A record whose beats do not resemble each other is not a heartbeat train: the mean correlation of each beat
    # window with the mean of the others was >= 0.63 on all 353 PTB-XL sample records, the CinC/CPSC samples and
    # MIT-BIH 100 (>= 0.55 for 2.8 s pieces; >= 0.61 with white noise added at 0 dB SNR), and <= 0.03 on white,
    # brown and neurokit2 noise, which the detector still cut into "beats" at 200+ bpm
    # (`python scripts/beat_consistency.py --data ../shared/data`). 0 turns the check off.
    min_consistency: float = 0.25
    # How `detect` combines the leads' QRS energies (audit 18; tests/beats/test_noise_leads.py). Processor files of
    # format < 3 read as "equal" and "mean" (`from_saved`), the detection they were made with.
    # "qrs_evidence": a lead weighs by how peaked its energy is (median block maximum / median energy): weight 1 for
    # 4217 of the 4236 leads of the 353 PTB-XL sample records, 0 for 298 of 300 white-noise or 50/60 Hz hum leads.
    # "equal" (before): the scale-free per-lead normalisation let 3 white-noise leads of 12 add 254 false beats to 226
    # (20 records), 3 hum leads 66-103; now 0. MIT-BIH 100 and the 353 records: the same beats (one R 1 sample off).
    lead_weighting: Literal["qrs_evidence", "equal"] = "qrs_evidence"
    # "trimmed": with 4+ weighted leads the largest lead at each sample is left out, so one lead alone makes no beat:
    # a 2x-QRS deflection in 1 of 12 leads was a beat in 54/54 trials, now 0/54. On the 353 PTB-XL records 6 beat
    # counts change, each toward the count of leads II, V5 and V6 (5 artefact beats gone, 1 beat at 0.06 s gained),
    # and 19 records have R positions moved by 1-5 samples at 500 Hz (one by 37). "mean" (before).
    lead_combine: Literal["trimmed", "mean"] = "trimmed"
    # Beats at the record edges (audit 18, finding 7; tests/beats/test_record_edges.py). "symmetric": a peak at either
    # edge counts only if its R is a peak inside the record (MIT-BIH 100 in 1776 pieces of 10 s: 0 false beats for 30,
    # 41 missed for 168, all with R within 10 ms of an edge). "start" (before; processor format < 3): only the start had
    # a rule (the envelope must rise to the first peak from below half its height inside the record), so a QRS cut by
    # the end was a beat with its "R" up to ~30 ms early, and a beat within ~65 ms of the start was lost.
    edge_rule: Literal["symmetric", "start"] = "symmetric"

    # `from_saved`: processor files of format < 3 keep the detection they were made with.
    SAVED_BEFORE: ClassVar[dict[str, tuple[Any, int]]] = {
        "lead_weighting": ("equal", 3), "lead_combine": ("mean", 3), "edge_rule": ("start", 3),
    }  # fmt: skip

    def __post_init__(self) -> None:
        self.qrs_band = tuple(float(v) for v in self.qrs_band)  # JSON gives lists
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid field."""
        for name in ("pre_s", "post_s", "refine_s", "weak_ratio", "early_rr"):
            if not (getattr(self, name) >= 0):
                raise ConfigError(f"BeatConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.min_consistency < 1.0:
            raise ConfigError(f"BeatConfig.min_consistency must be in [0, 1), got {self.min_consistency}")
        if self.pre_s + self.post_s <= 0:
            raise ConfigError("BeatConfig.pre_s + post_s must be > 0")
        for name, low in (("beat_len", 2), ("max_beats", 1), ("min_beats", 1), ("level_blocks", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"BeatConfig.{name} must be an int >= {low}, got {value!r}")
        if self.min_beats > self.max_beats:
            raise ConfigError(f"BeatConfig.min_beats ({self.min_beats}) exceeds max_beats ({self.max_beats})")
        for name in ("refractory_s", "detect_fs", "integration_s", "threshold", "level_block_s"):
            if not (getattr(self, name) > 0):
                raise ConfigError(f"BeatConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.refractory_s > 1.0:
            raise ConfigError(f"BeatConfig.refractory_s={self.refractory_s} would forbid heart rates above 60 bpm")
        if len(self.qrs_band) != 2 or not (0 < self.qrs_band[0] < self.qrs_band[1]):
            raise ConfigError(f"BeatConfig.qrs_band needs 0 < low < high, got {self.qrs_band}")
        if self.detect_fs < 2 * self.qrs_band[1] / 0.9:
            raise ConfigError(f"BeatConfig.detect_fs ({self.detect_fs}) must be at least 2.2 × qrs_band high edge")
        if not (self.searchback_rr > 1):
            raise ConfigError(f"BeatConfig.searchback_rr must be > 1, got {self.searchback_rr}")
        self.check_choices({"lead_weighting": LEAD_WEIGHTINGS, "lead_combine": LEAD_COMBINES, "edge_rule": EDGE_RULES})

    @property
    def window_s(self) -> float:
        return self.pre_s + self.post_s

    @property
    def r_index(self) -> int:
        """Index of the R peak inside a beat window."""
        return round(self.pre_s / self.window_s * self.beat_len)

    def offsets_s(self) -> np.ndarray:
        """Time of each window sample relative to R, in seconds (R falls exactly on `r_index`)."""
        dt = self.window_s / self.beat_len
        return (np.arange(self.beat_len) - self.r_index) * dt


@lru_cache(maxsize=1)
def default_config() -> BeatConfig:
    """The default `BeatConfig`, built once: validation costs more than a short record's detection steps."""
    return BeatConfig()

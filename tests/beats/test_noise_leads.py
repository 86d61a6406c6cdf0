"""Leads without a QRS and single-lead artefacts in R-peak detection (audit 18, findings 1 and 2).

Each lead's energy is normalised by its own typical QRS energy, which does not depend on scale: a lead of white
noise or mains hum reached the same level as a real lead, and 2-3 such leads of 12 doubled the beat count. A
deflection twice the QRS size in one lead of 12 became a beat. `BeatConfig.lead_weighting="qrs_evidence"` weighs
a lead by how peaked its energy is; `lead_combine="trimmed"` leaves out the largest lead at each sample. Processor
files saved before (format < 3) keep the old detection ("equal", "mean"), so a checkpoint means what it meant.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecglang.beats.config import BeatConfig
from ecglang.beats.detect import detect_rpeaks
from ecglang.beats.evaluation import beat_f1
from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.modeling import EcgLangModel
from ecglang.errors import ConfigError
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.record.leads import LEAD_INDEX
from ecglang.signal.preprocess import preprocess

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "ecglang-mini"
RECORDS = ("00001_hr", "00002_hr", "00003_hr", "00004_hr")
FS = 500.0
BEFORE = BeatConfig(lead_weighting="equal", lead_combine="mean")  # the detection of processor formats 1-2


def _record(ptbxl_dir: Path, name: str) -> Ecg:
    return load_ecg(ptbxl_dir / "records500" / "00000" / name)


def _replace_leads(ecg: Ecg, leads: tuple[str, ...], kind: str, seed: int) -> Ecg:
    """`ecg` (raw, mV) with `leads` holding only white noise or 50/60 Hz hum (a loose electrode)."""
    rng = np.random.default_rng(seed)
    sig = ecg.signal.copy()
    t = np.arange(sig.shape[1]) / ecg.fs
    for name in leads:
        if kind == "white":
            sig[LEAD_INDEX[name]] = 0.05 * rng.standard_normal(t.size)
        else:  # "hum50" / "hum60": hum plus amplifier noise
            hum = 0.05 * np.sin(2 * np.pi * float(kind[3:]) * t + rng.uniform(0, 2 * np.pi))
            sig[LEAD_INDEX[name]] = hum + 0.005 * rng.standard_normal(t.size)
    return Ecg(sig, ecg.fs, ecg.lead_mask, record_id=f"{ecg.record_id}+{kind}")


@pytest.mark.parametrize("kind", ["white", "hum50", "hum60"])
@pytest.mark.parametrize("leads", [("I", "aVL", "V1"), ("V2", "V5")])
def test_leads_without_a_qrs_add_no_beats(ptbxl_dir: Path, kind: str, leads: tuple[str, ...]) -> None:
    """Before: 3 white-noise leads in 00001 gave 26 beats for 11 (an 'AF' at 163 bpm that passed every gate)."""
    proc = EcgProcessor()
    for i, name in enumerate(RECORDS):
        ecg = _record(ptbxl_dir, name)
        clean = proc.process(ecg)[1].rpeaks
        noisy = proc.process(_replace_leads(ecg, leads, kind, seed=i))[1].rpeaks
        tp, n_ref, n_det = beat_f1(clean, noisy, round(0.05 * FS))
        assert tp == n_ref == n_det, f"{name} with {kind} on {leads}: {n_det} beats for {n_ref}, {tp} matched"


def _derivative_of_gaussian() -> np.ndarray:
    t = np.arange(-100, 101) / FS
    g = -t / 0.02 * np.exp(-0.5 * (t / 0.02) ** 2)
    return g / np.ptp(g)


def test_an_artefact_in_one_lead_is_not_a_beat(ptbxl_dir: Path) -> None:
    """A deflection twice the lead's peak-to-peak size, midway between two beats, in one lead of 12. Before: a beat
    in every trial (54/54 over 20 records in the audit)."""
    spike = _derivative_of_gaussian()
    taken = []
    for name in RECORDS:
        clean = preprocess(_record(ptbxl_dir, name))
        beats = detect_rpeaks(clean.signal, FS, clean.lead_mask)
        for j, lead in zip(range(1, len(beats) - 2, 2), (0, 7, 9, 4, 11), strict=False):
            mid = (beats[j] + beats[j + 1]) // 2
            sig = clean.signal.copy()
            sig[lead, mid - 100 : mid + 101] += 2 * np.ptp(sig[lead]) * spike
            found = detect_rpeaks(sig, FS, clean.lead_mask)
            if np.abs(found - mid).min() < 0.1 * FS:
                taken.append((name, lead, int(mid)))
            assert len(found) >= len(beats) - 1, (name, lead)  # the real beats stay
    assert taken == [], f"artefacts taken as beats: {taken}"


# Peaks of the code before the lead weighting (commit 4977df3's detect.py) for the noisy record of
# `test_a_format_2_processor_detects_as_before`: 26 "beats" where the clean record has 11.
OLD_NOISY_PEAKS = [113, 253, 472, 576, 718, 906, 1040, 1277, 1382, 1502, 1642, 1966, 2108, 2236, 2439, 2577, 2915,
                   3291, 3396, 3537, 3658, 3868, 4077, 4324, 4463, 4805]  # fmt: skip


def test_a_format_2_processor_detects_as_before(ptbxl_dir: Path) -> None:
    """The bundled checkpoint (format 2) was trained with equal weights and a plain mean: it keeps them, peaks
    included, even where the new default differs; re-saved, it says so explicitly in format 3."""
    saved = json.loads((BUNDLED / "processor_config.json").read_text(encoding="utf-8"))
    assert saved["format_version"] == 2 and "lead_weighting" not in saved["beats"]
    proc = EcgProcessor.from_pretrained(BUNDLED)
    assert (proc.beat_config.lead_weighting, proc.beat_config.lead_combine) == ("equal", "mean")
    noisy = _replace_leads(_record(ptbxl_dir, "00001_hr"), ("I", "aVL", "V1"), "white", seed=0)
    assert proc.process(noisy)[1].rpeaks.tolist() == OLD_NOISY_PEAKS
    assert len(EcgProcessor().process(noisy)[1].rpeaks) == 11  # the new default, for contrast
    resaved = proc.to_dict()
    assert resaved["format_version"] == 3
    assert (resaved["beats"]["lead_weighting"], resaved["beats"]["lead_combine"]) == ("equal", "mean")
    assert EcgProcessor.from_dict(resaved).beat_config == proc.beat_config
    model_beats = EcgLangModel.from_pretrained(BUNDLED).get_processor().beat_config  # the model's own contract
    assert (model_beats.lead_weighting, model_beats.lead_combine) == ("equal", "mean")


def test_lead_settings_default_round_trip_and_validate() -> None:
    assert (BeatConfig().lead_weighting, BeatConfig().lead_combine) == ("qrs_evidence", "trimmed")
    # settings without a format (a model config's partial `processor` section) get the new defaults
    assert EcgProcessor.from_dict({"beats": {"max_beats": 30}}).beat_config.lead_weighting == "qrs_evidence"
    old = EcgProcessor().to_dict()
    old["format_version"] = 2
    for key in ("lead_weighting", "lead_combine"):
        del old["beats"][key]
    assert EcgProcessor.from_dict(old).beat_config.lead_combine == "mean"
    old["beats"]["lead_combine"] = "trimmed"  # an explicit value is kept, whatever the format
    assert EcgProcessor.from_dict(old).beat_config.lead_combine == "trimmed"
    assert BeatConfig.from_saved({}).lead_weighting == "equal"
    # a saved file whose "beats" is not an object: the config's own error, not an untyped ValueError of dict()
    for version in (2, 3):
        with pytest.raises(ConfigError, match="BeatConfig: expected a mapping"):
            EcgProcessor.from_dict({"format_version": version, "beats": "x"})
    for field, value in (("lead_weighting", "none"), ("lead_combine", "median"), ("lead_combine", None)):
        with pytest.raises(ConfigError, match=f"BeatConfig.{field}"):
            BeatConfig(**{field: value})
        with pytest.raises(ConfigError, match=field):
            BeatConfig.from_dict({field: value})


def test_every_combination_finds_the_beats_of_a_clean_record(ptbxl_dir: Path) -> None:
    """On a clean 12-lead record all four settings agree; one or two leads (trimming needs 4) and a lead that is
    mostly exact zeros (infinite evidence) work too, without a floating-point warning."""
    clean = preprocess(_record(ptbxl_dir, "00001_hr"))
    reference = detect_rpeaks(clean.signal, FS, clean.lead_mask, BEFORE)
    with np.errstate(all="raise"):
        for weighting in ("qrs_evidence", "equal"):
            for combine in ("trimmed", "mean"):
                cfg = BeatConfig(lead_weighting=weighting, lead_combine=combine)
                np.testing.assert_array_equal(detect_rpeaks(clean.signal, FS, clean.lead_mask, cfg), reference)
                for rows in ([1], [1, 10]):
                    found = detect_rpeaks(clean.signal[rows], FS, None, cfg)
                    assert beat_f1(reference, found, 25)[0] == len(reference) == len(found), (weighting, combine)
        padded = clean.signal.copy()
        padded[:, 2000:] = 0.0  # the first 4 s kept, as a short record zero-padded to 10 s
        before = detect_rpeaks(padded, FS, clean.lead_mask, BEFORE)
        np.testing.assert_array_equal(detect_rpeaks(padded, FS, clean.lead_mask), before)
        assert before.tolist() == [p for p in reference if p < 2000]

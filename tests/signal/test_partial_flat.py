"""A lead flat for part of the record (audit 18 beats, finding 3): an electrode off for the first seconds leaves only
ADC noise there. The whole-lead flat check (step 3) passed such a lead, and the robust z-score's scale (median/MAD)
then came from the flat part: the live part reached 500-860 z-units at 7 s of 10 flat (normal at most 28) and went
into the beat windows. Step 3b masks a lead with at least `flat_block_fraction` of its 1 s blocks under
`flat_block_ptp_mv`. Processor files of format < 3 (the bundled checkpoint) keep the old preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError, EcgQualityError
from ecglang.record.ecg import Ecg
from ecglang.record.io import load_ecg
from ecglang.record.leads import LEAD_INDEX
from ecglang.signal.preprocess import PreprocessConfig, preprocess

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "ecglang-mini"
OFF = ("V1", "V2")


def _disconnected(ecg: Ecg, seconds: float, leads: tuple[str, ...] = OFF, noise_mv: float = 0.002) -> Ecg:
    """`ecg` (raw, mV) with `leads` holding only ADC noise (`noise_mv` rms) for the first `seconds`."""
    sig = ecg.signal.copy()
    n = round(seconds * ecg.fs)
    rows = [LEAD_INDEX[name] for name in leads]
    sig[rows, :n] = noise_mv * np.random.default_rng(0).standard_normal((len(rows), n))
    return Ecg(sig, ecg.fs, ecg.lead_mask, record_id=f"{ecg.record_id}+off{seconds:g}s")


@pytest.fixture(scope="module")
def record_00001(ptbxl_dir: Path) -> Ecg:
    return load_ecg(ptbxl_dir / "records500" / "00000" / "00001_hr")


def test_a_lead_flat_for_most_of_the_record_is_masked_and_flagged(record_00001: Ecg) -> None:
    """Before: V1/V2 valid, at 501 and 857 z-units (the beat windows carried 501)."""
    live = [i for i in range(12) if i not in (LEAD_INDEX["V1"], LEAD_INDEX["V2"])]
    normal = np.abs(preprocess(record_00001).signal[live]).max()
    clean, tokens = EcgProcessor().process(_disconnected(record_00001, 7.0))
    for name in OFF:
        assert not clean.lead_mask[LEAD_INDEX[name]]
        assert clean.metadata["quality"][name] == ["flat"]
        assert not np.any(clean.signal[LEAD_INDEX[name]])
    assert set(clean.metadata["quality"]) == set(OFF)
    assert np.abs(clean.signal[live]).max() == pytest.approx(normal)  # the other leads as without the fault
    assert np.abs(clean.signal).max() < 30 and np.abs(tokens.beats).max() < 30


@pytest.mark.parametrize("seconds", [5.0, 8.0])
def test_half_the_record_flat_is_enough(record_00001: Ecg, seconds: float) -> None:
    """Before: 147 / 1296 z-units; at 8 s detection also gained 12 false beats."""
    clean, tokens = EcgProcessor().process(_disconnected(record_00001, seconds))
    assert not clean.lead_mask[[LEAD_INDEX[n] for n in OFF]].any()
    assert np.abs(clean.signal).max() < 30
    assert tokens.n_beats == EcgProcessor().process(record_00001)[1].n_beats


def test_a_short_flat_stretch_is_kept(record_00001: Ecg) -> None:
    """2 s of 10 flat (0.1-0.2 of the blocks, with the band-pass ringing after the live part) is not a dead lead."""
    clean = preprocess(_disconnected(record_00001, 2.0))
    assert clean.lead_mask.all() and clean.metadata["quality"] == {}


def test_the_rule_looks_at_the_used_part_and_can_be_turned_off(record_00001: Ecg) -> None:
    assert preprocess(_disconnected(record_00001, 7.0), PreprocessConfig(flat_block_ptp_mv=0.0)).lead_mask.all()
    ecg = _disconnected(record_00001, 3.0)
    assert preprocess(ecg).lead_mask.all()  # 3 s of 10: 0.2 of the blocks
    head = preprocess(ecg, PreprocessConfig(target_samples=2000))  # the first 4 s are used: 2 blocks of 4 flat
    assert not head.lead_mask[[LEAD_INDEX[n] for n in OFF]].any()
    assert head.metadata["quality"] == {name: ["flat"] for name in OFF}


def test_every_lead_mostly_flat_names_the_record(record_00001: Ecg) -> None:
    ecg = _disconnected(record_00001, 7.0, leads=tuple(LEAD_INDEX))
    with pytest.raises(EcgQualityError, match="no usable lead") as info:
        preprocess(ecg)
    assert "volts" not in str(info.value)  # that hint is for leads flat as a whole


@pytest.mark.parametrize(
    ("field", "value"),
    [("flat_block_ptp_mv", -0.01), ("flat_block_ptp_mv", "0.01"), ("flat_block_fraction", 0),
     ("flat_block_fraction", 1.5), ("flat_block_fraction", True)],
)  # fmt: skip
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"PreprocessConfig\.{field} must"):
        PreprocessConfig.from_dict({field: value})


def test_the_bundled_format_2_processor_keeps_the_old_preprocessing(record_00001: Ecg) -> None:
    """The bundled checkpoint (format 2, trained without the rule) is fed as before: rule off, edge_pad as saved."""
    proc = EcgProcessor.from_pretrained(BUNDLED)
    assert proc.to_dict()["preprocess"]["flat_block_ptp_mv"] == 0.0
    assert proc.preprocess_config.edge_pad == "odd"
    before = PreprocessConfig(edge_pad="odd", flat_block_ptp_mv=0.0)
    ecg = _disconnected(record_00001, 7.0)
    clean, _ = proc.process(ecg)
    assert clean.lead_mask.all()  # the old behaviour, kept for what the checkpoint was trained on
    np.testing.assert_array_equal(clean.signal, preprocess(ecg, before).signal)
    again = EcgProcessor.from_dict(proc.to_dict())  # re-saved as format 3: the setting is explicit, kept
    assert again.to_dict()["format_version"] == 3 and again.preprocess_config.flat_block_ptp_mv == 0.0


def test_saved_processor_formats_read_as_they_were_written() -> None:
    new = EcgProcessor().to_dict()
    assert new["preprocess"]["flat_block_ptp_mv"] == 0.01 and new["preprocess"]["flat_block_fraction"] == 0.4
    for version, edge_pad, block_ptp in ((1, "odd", 0.0), (2, "even", 0.0), (3, "even", 0.01)):
        old = {**new, "format_version": version}
        old["preprocess"] = {k: v for k, v in new["preprocess"].items() if not k.startswith("flat_block")}
        if version == 1:
            del old["preprocess"]["edge_pad"]
        cfg = EcgProcessor.from_dict(old).preprocess_config
        assert (cfg.edge_pad, cfg.flat_block_ptp_mv) == (edge_pad, block_ptp), version
    cfg = EcgProcessor.from_dict({"format_version": 2, "preprocess": {"edge_pad": "odd"}}).preprocess_config
    assert (cfg.edge_pad, cfg.flat_block_ptp_mv) == ("odd", 0.0)
    assert EcgProcessor.from_dict({"preprocess": {}}).preprocess_config.flat_block_ptp_mv == 0.01  # override: new
    # caches and prepared folders (no format number): whatever the file lacks reads as before
    assert PreprocessConfig.from_saved({"edge_pad": "even"}).flat_block_ptp_mv == 0.0
    assert PreprocessConfig.from_saved(PreprocessConfig().to_dict()) == PreprocessConfig()


def test_no_real_lead_of_the_ptbxl_sample_is_masked(ptbxl_dir: Path) -> None:
    """On the 353 sample records every lead's every 1 s block has ptp >= 0.022 mV after the band-pass (so the rule,
    at 0.01 mV, masks none of 4236 real leads: 0 with even 1 block under it)."""
    cfg = PreprocessConfig()
    heads = sorted((ptbxl_dir / "records500").glob("*/*.hea"))
    assert len(heads) >= 353
    smallest = np.inf
    for head in heads:
        ecg = load_ecg(head.with_suffix(""))
        clean = preprocess(ecg, PreprocessConfig(normalize="none"))
        assert clean.lead_mask.all(), head.name
        blocks = clean.signal.reshape(12, -1, 500)
        smallest = min(smallest, float((blocks.max(axis=2) - blocks.min(axis=2)).min()))
    assert smallest >= 2 * cfg.flat_block_ptp_mv

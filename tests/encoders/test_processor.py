"""EcgProcessor: batch tensors, padding, failure collection, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from ecglang.beats.tokenize import BeatConfig, detect_rpeaks
from ecglang.encoders.ecg_processing import PROCESSOR_CONFIG_NAME, EcgBatch, EcgProcessor
from ecglang.errors import ConfigError, EcgQualityError, ModelLoadError
from ecglang.record.ecg import Ecg
from ecglang.record.leads import LEAD_INDEX, to_canonical
from ecglang.signal.preprocess import PreprocessConfig


def _read_wfdb(path: Path) -> Ecg:
    """Read a WFDB record into an Ecg (until ecglang.record.io.load_ecg is available to the tests)."""
    rec = wfdb.rdrecord(str(path))
    signal, mask, _ = to_canonical(rec.p_signal.T, rec.sig_name, path=str(path))
    return Ecg(signal, rec.fs, mask, record_id=path.name, metadata={"source_path": str(path)})


@pytest.fixture(scope="module")
def records(ptbxl_dir: Path) -> list[Ecg]:
    return [_read_wfdb(ptbxl_dir / "records500" / "00000" / f"{i:05d}_hr") for i in (1, 2, 3)]


def test_batch_shapes_and_padding(records: list[Ecg]) -> None:
    proc = EcgProcessor()
    batch = proc(records)
    assert isinstance(batch, EcgBatch) and set(batch) == {"beats", "beat_mask", "lead_mask", "rr", "times"}
    assert batch["beats"].shape == (3, 40, 12, 96) and batch["beats"].dtype == torch.float32
    assert batch["beat_mask"].shape == (3, 40) and batch["beat_mask"].dtype == torch.bool
    assert batch["lead_mask"].shape == (3, 12) and batch["lead_mask"].all()
    assert batch["rr"].shape == (3, 40, 2) and batch["times"].shape == (3, 40)
    assert batch.indices == [0, 1, 2] and batch.record_ids == ["00001_hr", "00002_hr", "00003_hr"]
    assert batch.failures == []
    for row, tok in enumerate(batch.tokens):
        n = tok.n_beats
        assert 5 <= n < 40  # 10 s records: padded up to max_beats
        assert batch["beat_mask"][row].sum().item() == n
        assert (batch["beats"][row, n:] == 0).all() and (batch["times"][row, n:] == 0).all()
        assert (batch["beats"][row, :n].abs().sum(dim=(1, 2)) > 0).all()
        np.testing.assert_allclose(batch["times"][row, :n].numpy(), tok.rpeaks / 500.0, rtol=1e-6)
    # the same record always gives the same tensors
    again = proc(records[:1])
    assert torch.equal(again["beats"][0], batch["beats"][0])


def test_process_single_record_and_signal_output(records: list[Ecg]) -> None:
    proc = EcgProcessor(beats=BeatConfig(max_beats=8, beat_len=64), return_signal=True)
    clean, tokens = proc.process(records[0])
    assert clean.signal.shape == (12, 5000) and tokens.beats.shape == (8, 12, 64)
    batch = proc(records[:2])
    assert batch["beats"].shape == (2, 8, 12, 64)
    for row, ecg in enumerate(records[:2]):  # at most 8 beats: the first 8
        clean_row, _ = proc.process(ecg)
        found = detect_rpeaks(clean_row.signal, 500.0, clean_row.lead_mask)
        assert batch["beat_mask"][row].sum().item() == min(8, len(found))
        np.testing.assert_array_equal(batch.tokens[row].rpeaks, found[:8])
    assert batch["signal"].shape == (2, 12, 5000) and batch["signal"].dtype == torch.float32
    np.testing.assert_array_equal(batch["signal"][0].numpy(), clean.signal)


def test_reduced_lead_records_carry_their_mask(records: list[Ecg]) -> None:
    ecg = records[0]
    mask = np.zeros(12, dtype=bool)
    mask[[LEAD_INDEX["I"], LEAD_INDEX["II"]]] = True
    reduced = ecg.replace(signal=np.where(mask[:, None], ecg.signal, 0.0), lead_mask=mask)
    batch = EcgProcessor()([reduced, ecg])
    assert batch["lead_mask"][0].tolist() == mask.tolist() and batch["lead_mask"][1].all()
    assert (batch["beats"][0][:, ~torch.from_numpy(mask)] == 0).all()


def test_collect_mode_goes_on_past_a_bad_record(records: list[Ecg]) -> None:
    bad = Ecg(np.zeros((12, 5000), np.float32), 500.0, record_id="flatline", metadata={"source_path": "x/flatline"})
    proc = EcgProcessor()
    batch = proc([records[0], bad, records[1]], errors="collect")
    assert batch["beats"].shape[0] == 2 and batch.indices == [0, 2]
    assert batch.record_ids == ["00001_hr", "00002_hr"]
    assert len(batch.failures) == 1
    failure = batch.failures[0]
    assert batch.failed_indices == [1] and failure.record == "flatline" and failure.stage == "process"
    assert failure.path == "x/flatline" and "flat" in failure.reason and "x/flatline" not in failure.reason
    with pytest.raises(EcgQualityError, match="x/flatline"):
        proc([records[0], bad], errors="raise")
    empty = proc([bad], errors="collect")
    assert empty["beats"].shape == (0, 40, 12, 96) and len(empty.failures) == 1
    with pytest.raises(ConfigError):
        proc(records, errors="ignore")


def test_collate_checks_shapes(records: list[Ecg]) -> None:
    _, tokens = EcgProcessor(beats=BeatConfig(max_beats=50)).process(records[0])
    with pytest.raises(ConfigError, match="do not fit"):
        EcgProcessor().collate([tokens])
    proc = EcgProcessor()
    _, ok = proc.process(records[0])
    out = proc.collate([ok, ok])
    assert out["beats"].shape == (2, 40, 12, 96) and torch.equal(out["beats"][0], out["beats"][1])


def test_save_and_load_roundtrip(tmp_path: Path) -> None:
    proc = EcgProcessor(
        preprocess=PreprocessConfig.merl_compat("cpsc2018"), beats=BeatConfig(beat_len=80), return_signal=True
    )
    path = proc.save_pretrained(tmp_path / "ckpt")
    assert path.name == PROCESSOR_CONFIG_NAME
    data = json.loads(path.read_text())
    assert data["processor_class"] == "EcgProcessor" and data["preprocess"]["keep_samples"] == 2500
    loaded = EcgProcessor.from_pretrained(tmp_path / "ckpt")
    assert loaded.to_dict() == proc.to_dict()
    assert loaded.preprocess_config == proc.preprocess_config and loaded.beat_config == proc.beat_config
    assert EcgProcessor.from_dict(proc.to_dict()).return_signal
    with pytest.raises(ConfigError, match="return_signal must be true or false"):
        EcgProcessor.from_dict({**proc.to_dict(), "return_signal": "no"})  # bool("no") is True


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no processor_config\.json"):
        EcgProcessor.from_pretrained(tmp_path)
    (tmp_path / PROCESSOR_CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read processor config"):
        EcgProcessor.from_pretrained(tmp_path)
    (tmp_path / PROCESSOR_CONFIG_NAME).write_text(json.dumps({"beats": {"beat_len": 1}}))
    with pytest.raises(ConfigError, match="beat_len"):
        EcgProcessor.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="unknown processor config key"):
        EcgProcessor.from_dict({"preprocessing": {}})
    with pytest.raises(ConfigError, match="target_samples"):
        EcgProcessor(preprocess=PreprocessConfig(target_samples=None), return_signal=True)

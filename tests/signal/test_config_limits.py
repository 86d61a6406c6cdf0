"""PreprocessConfig refuses values that would make every record allocate absurd memory or crash (target_fs 2e6:
2.4 GB per 10 s record; target_samples 1e10: 447 GiB; filter_order 1e6: OverflowError), and values of the
wrong type (robust "no" was read as True), with a `ConfigError` naming the field, and the file when the config
comes from a checkpoint's processor_config.json. Every shipped config stays valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.errors import ConfigError
from ecglang.record.window import MAX_FS_HZ, MIN_FS_HZ
from ecglang.signal.preprocess import MAX_FILTER_ORDER, MAX_SAMPLES, PreprocessConfig, preprocess_array

REPO = Path(__file__).resolve().parents[2]

HOSTILE = [
    ("target_fs", 2e6),
    ("target_fs", 1e8),
    ("target_fs", 10.0),
    ("target_fs", float("inf")),
    ("target_fs", "500"),
    ("target_fs", True),
    ("target_samples", 10**10),
    ("target_samples", MAX_SAMPLES + 1),
    ("target_samples", 5000.0),
    ("target_samples", "5000"),
    ("keep_samples", 10**10),
    ("keep_samples", True),
    ("filter_order", 10**6),
    ("filter_order", MAX_FILTER_ORDER + 1),
    ("filter_order", 2.0),
    ("robust", "no"),
    ("robust", "false"),
    ("robust", 0),
    ("pad_then_normalize", "yes"),
    ("bandpass", "0.5-40"),
    ("bandpass", ["0.5", "40"]),
    ("bandpass", [0.5, float("inf")]),
    ("bandpass", [0.5, 40, 60]),
    ("max_gap_s", float("inf")),
    ("max_gap_s", "0.2"),
    ("flat_ptp_mv", "0.02"),
    ("saturation_fraction", None),
    ("crop", ["start"]),
    ("normalize", None),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}={v!r}" for f, v in HOSTILE])
def test_hostile_value_is_a_config_error_naming_the_field(field: str, value: object) -> None:
    for build in (lambda: PreprocessConfig(**{field: value}), lambda: PreprocessConfig.from_dict({field: value})):
        with pytest.raises(ConfigError, match=rf"PreprocessConfig\.{field}\b"):
            build()


def test_the_bounds_themselves_are_accepted_and_run() -> None:
    for fs in (MIN_FS_HZ, MAX_FS_HZ):
        assert PreprocessConfig(target_fs=fs, bandpass=None).target_fs == fs
    cfg = PreprocessConfig(target_samples=MAX_SAMPLES, keep_samples=MAX_SAMPLES, filter_order=MAX_FILTER_ORDER)
    assert cfg.target_samples == cfg.keep_samples == MAX_SAMPLES
    x = np.random.default_rng(0).standard_normal((12, 5000)).astype(np.float32)
    out, _, _ = preprocess_array(x, 500.0, cfg=PreprocessConfig(filter_order=MAX_FILTER_ORDER, normalize="none"))
    assert out.shape == (12, 5000) and np.isfinite(out).all()


def test_numpy_scalars_are_accepted_as_plain_values() -> None:
    cfg = PreprocessConfig(
        target_fs=np.float64(250), target_samples=np.int64(2500), filter_order=np.int32(4), robust=np.bool_(False),
        bandpass=(np.float32(1.0), 30),
    )  # fmt: skip
    assert (cfg.target_fs, cfg.target_samples, cfg.filter_order, cfg.robust) == (250.0, 2500, 4, False)
    assert [type(v) for v in (cfg.target_fs, cfg.target_samples, cfg.filter_order, cfg.robust)] == [
        float, int, int, bool,
    ]  # fmt: skip
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()


def test_every_shipped_processor_config_is_valid() -> None:
    files = sorted((REPO / "checkpoints").rglob("processor_config.json"))
    assert files, "no bundled checkpoint found"
    for path in files:
        EcgProcessor.from_pretrained(path)
    for dataset in (None, "cpsc2018"):
        cfg = PreprocessConfig.merl_compat(dataset)
        assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("field", "value"), [("robust", "no"), ("target_fs", 2e6), ("filter_order", 10**6)])
def test_checkpoint_processor_config_error_names_the_file(tmp_path: Path, field: str, value: object) -> None:
    shipped = REPO / "checkpoints" / "ecglang-mini" / "processor_config.json"
    contract = json.loads(shipped.read_text(encoding="utf-8"))
    contract["preprocess"][field] = value
    path = tmp_path / "processor_config.json"
    path.write_text(json.dumps(contract), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        EcgProcessor.from_pretrained(tmp_path)
    assert str(path) in str(info.value) and f"PreprocessConfig.{field}" in str(info.value)

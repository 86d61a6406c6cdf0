"""Config values are checked against their fields' type hints in `from_dict` (ecglang.core.config), for every
config: YAML and `key=value` overrides give strings for mistyped numbers and words for booleans, which used to
pass into the run and fail far away (`optim.lr=1e-3`, the commonest override, was a TypeError in validation,
because YAML 1.1 reads 1e-3 as a string) or, worse, be taken as true ("maybe" for a bool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from ecglang.beats.config import BeatConfig
from ecglang.core.config import DictConfig
from ecglang.errors import ConfigError
from ecglang.evaluation.config import EvaluateConfig
from ecglang.signal.augment import AugmentConfig
from ecglang.training.config import load_config


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "+1e-3", "0.001", "1.e-3", "1.0e-3", "10e-4"])
def test_a_float_written_without_a_dot_is_a_float(text: str) -> None:
    cfg = load_config("smoke", [f"optim.lr={text}"])
    cfg.validate()
    assert cfg.optim.lr == pytest.approx(0.001) and isinstance(cfg.optim.lr, float)


def test_a_yaml_file_with_1e_minus_4_trains(tmp_path: Path) -> None:
    source = Path(load_config("smoke").source or "").read_text()
    assert "lr: 1.0e-3" in source
    path = tmp_path / "mine.yaml"
    path.write_text(source.replace("lr: 1.0e-3", "lr: 2e-4  # YAML 1.1 reads this as a string", 1))
    cfg = load_config(path)
    cfg.validate()
    assert cfg.optim.lr == pytest.approx(2e-4)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("optim.lr=fast", ["optim.lr", "a number", "'fast'"]),
        ("optim.lr='0.001'", ["optim.lr", "a number", "'0.001'"]),  # a number in quotes is a string
        ("train.deterministic=maybe", ["train.deterministic", "true or false", "'maybe'"]),
        ("logging.progress=3", ["logging.progress", "true or false"]),
        ("optim.weight_decay=[1]", ["optim.weight_decay", "a number", "list"]),
        ("data.limit=abc", ["data.limit", "an integer or null"]),
        ("seed=1.5", ["seed", "an integer", "1.5"]),
        ("train.threads=yes", ["train.threads", "an integer or null", "True"]),
        ("data.val_folds=[a]", ["data.val_folds", "a list of integers"]),
        ("train.batch_size=", ["train.batch_size", "an integer", "None"]),
        ("schedule.max_steps=ten", ["schedule.max_steps", "'ten'"]),
        ("optim.betas=[0.9]", ["optim.betas", "a list of 2 values"]),
        ("optim.lr=.nan", ["optim.lr", "finite numbers > 0", "nan"]),
        ("optim.eps=-1", ["optim.eps", "> 0"]),
        ("optim.betas=[0.9,1.5]", ["optim.betas", "[0, 1)"]),
        ("train.clip_grad_norm=-1", ["train.clip_grad_norm", "> 0 or null"]),
        ("train.threads=0", ["train.threads", ">= 1"]),
    ],
)
def test_a_mistyped_or_out_of_range_override_names_its_key(override: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("smoke", [override]).validate()
    message = str(info.value)
    # the override itself is named: a wrong type is the override's mistake, a value out of range is reported
    # against the file with the overrides that were merged into it
    assert override in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    ("config", "data", "key"),
    [
        (BeatConfig, {"beat_len": "96"}, "beat_len"),
        (BeatConfig, {"qrs_band": [8.0]}, "qrs_band"),
        (AugmentConfig, {"noise_std": "abc"}, "noise_std"),
        (EvaluateConfig, {"n_boot": 1.5}, "n_boot"),
    ],
)
def test_every_config_checks_types(config: type[DictConfig], data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"\.{key} must be"):
        config.from_dict(data)


@dataclass
class _Section(DictConfig):
    ratio: float = 0.5


@dataclass
class _Sample(DictConfig):
    count: int = 1
    rate: float | None = None
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    band: tuple[float, float] = (1.0, 2.0)
    folds: list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    loss: bool | str = "auto"
    section: _Section = field(default_factory=_Section)


def test_good_values_pass_and_lists_become_tuples() -> None:
    cfg = _Sample.from_dict(
        {"count": 3, "rate": 2, "flag": True, "mode": "b", "band": [0.5, 40], "folds": [1, 2], "extra": {"x": 1},
         "loss": True, "section": {"ratio": "1e-1"}}
    )  # fmt: skip
    assert cfg.band == (0.5, 40) and isinstance(cfg.band, tuple)
    assert (cfg.count, cfg.rate, cfg.flag, cfg.mode, cfg.folds, cfg.loss) == (3, 2, True, "b", [1, 2], True)
    assert cfg.section.ratio == pytest.approx(0.1)
    assert _Sample.from_dict({"loss": "auto", "rate": None}).loss == "auto"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"count": True}, ["count must be an integer", "True (bool)"]),
        ({"count": 2.0}, ["count must be an integer"]),
        ({"rate": "fast"}, ["rate must be a number or null"]),
        ({"rate": False}, ["rate must be a number or null"]),
        ({"flag": "no"}, ["flag must be true or false", "'no'"]),
        ({"flag": 1}, ["flag must be true or false"]),
        ({"mode": "c"}, ["mode must be one of 'a', 'b'"]),
        ({"band": [1.0, 2.0, 3.0]}, ["band must be a list of 2 values"]),
        ({"band": 5}, ["band must be a list of 2 values"]),
        ({"folds": [1, "x"]}, ["folds must be a list of integers or null"]),
        ({"extra": [1]}, ["extra must be a mapping"]),
        ({"loss": 3}, ["loss must be true or false or a string"]),
        ({"section": {"ratio": "half"}}, ["section.ratio must be a number"]),
        ({"section": 0.5}, ["section must be a mapping of settings"]),
        ({"count": None}, ["count must be an integer", "None"]),
    ],
)
def test_bad_values_are_refused_naming_the_key(data: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        _Sample.from_dict(data)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_the_bundled_configs_still_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
    paths = sorted(root.glob("*.yaml"))
    # a moved folder must not make this pass by checking nothing
    assert {"mimic-base.yaml", "ptbxl-mini.yaml", "smoke.yaml"} <= {p.name for p in paths}, paths
    for path in paths:
        load_config(path).validate()

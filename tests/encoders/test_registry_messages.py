"""`create_model` errors point the right way: a trained checkpoint's name says to load it with `load_model` (as
`load_model` of a config name points to `create_model`), a published model's name says how to get its weights,
and a bad override is blamed on the override, not on the shipped config file.

Before: `create_model("ecglang-mini")` said only "unknown model", and `create_model("ecglang-small",
text_tower={"finetun": "full"})` reported `configs/model/ecglang-small.json: unknown key(s) ['finetun']`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ecglang
from ecglang.encoders.checkpoint import list_checkpoints
from ecglang.encoders.registry import load_model_config, model_config_path
from ecglang.errors import ConfigError


def test_a_checkpoint_name_says_load_model_loads_it() -> None:
    assert "ecglang-mini" in list_checkpoints()
    with pytest.raises(ConfigError) as raised:
        ecglang.create_model("ecglang-mini")  # refused before any model is built
    message = str(raised.value)
    assert message.startswith(
        "unknown model config 'ecglang-mini'; 'ecglang-mini' is a trained checkpoint: "
        "ecglang.load_model('ecglang-mini') loads it (create_model builds an untrained model from a config)"
    ), message
    assert "known configs: ['ecglang-base', 'ecglang-small'" in message


def test_a_published_name_says_it_is_published_and_how_to_load_it() -> None:
    with pytest.raises(ConfigError, match=r"'merl-vit-tiny' is a published model .*ecglang convert merl.*load_model"):
        load_model_config("merl-vit-tiny")
    with pytest.raises(ConfigError, match=r"^unknown model config 'no-such-model'; known configs: \["):
        load_model_config("no-such-model")


def test_a_bad_override_is_blamed_on_the_override() -> None:
    path = model_config_path("ecglang-small")
    with pytest.raises(ConfigError) as raised:
        ecglang.create_model("ecglang-small", text_tower={"finetun": "full"})
    message = str(raised.value)
    assert message.startswith("override text_tower={'finetun': 'full'} of model config 'ecglang-small': unknown key(s) "
                              "['finetun'] in config section 'text_tower'"), message  # fmt: skip
    assert str(path) not in message
    with pytest.raises(ConfigError, match=r"^override ecg_tower=\{'d_model': 100, 'n_heads': 8\} .*divisible"):
        load_model_config("ecglang-small", ecg_tower={"d_model": 100, "n_heads": 8})
    with pytest.raises(ConfigError, match=r"^unknown override\(s\) \['text_towr'\] of model config 'ecglang-small'"):
        load_model_config("ecglang-small", text_towr={"finetune": "full"})
    # good overrides still merge key by key
    assert load_model_config("ecglang-small", text_tower={"finetune": "full"}).text_tower["finetune"] == "full"


def test_a_bad_file_is_still_blamed_on_the_file(tmp_path: Path) -> None:
    data = json.loads(model_config_path("ecglang-small").read_text(encoding="utf-8"))
    data["text_tower"]["finetun"] = "full"
    bad = tmp_path / "mine.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown key\(s\) \['finetun'\]"):
        load_model_config(bad, ecg_tower={"d_model": 64})
    data.pop("text_tower")
    data["text_towr"] = {}
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown section\(s\) \['text_towr'\]"):
        load_model_config(bad)

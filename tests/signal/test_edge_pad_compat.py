"""Settings saved before `edge_pad` existed keep the edge filtering they were made with ("odd"); new settings
get the 1.5 s mirror image ("even"). Otherwise the bundled checkpoint, a converted MERL checkpoint or a cache
built earlier would be fed differently filtered first and last seconds than they were trained or built with."""

from __future__ import annotations

import json
from pathlib import Path

from ecglang.encoders.ecg_processing import EcgProcessor
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.registry import create_model
from ecglang.signal.preprocess import PreprocessConfig

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "ecglang-mini"


def test_the_bundled_checkpoint_keeps_the_edge_filtering_it_was_trained_with() -> None:
    saved = json.loads((BUNDLED / "processor_config.json").read_text(encoding="utf-8"))
    # written before the setting existed (format 1: none, read as "odd"), or re-saved since with it explicit
    assert saved["preprocess"].get("edge_pad", "odd") == "odd"
    assert saved["format_version"] == 2 or "edge_pad" not in saved["preprocess"]
    assert EcgLangModel.from_pretrained(BUNDLED).get_processor().preprocess_config.edge_pad == "odd"


def test_new_models_and_partial_overrides_get_the_mirror_image() -> None:
    assert PreprocessConfig().edge_pad == "even"
    assert create_model("ecglang-small").get_processor().preprocess_config.edge_pad == "even"
    model = create_model("ecglang-small", processor={"preprocess": {"normalize": "mm"}})
    assert model.get_processor().preprocess_config.edge_pad == "even"


def test_saved_settings_round_trip_and_old_ones_read_as_odd() -> None:
    new = EcgProcessor(preprocess=PreprocessConfig(edge_pad="even"))
    assert EcgProcessor.from_dict(new.to_dict()).preprocess_config.edge_pad == "even"  # format 2 keeps it
    old = new.to_dict()
    old["format_version"] = 1
    del old["preprocess"]["edge_pad"]
    assert EcgProcessor.from_dict(old).preprocess_config.edge_pad == "odd"
    assert PreprocessConfig.from_saved({"normalize": "mm"}).edge_pad == "odd"
    assert PreprocessConfig.from_saved({"edge_pad": "even"}).edge_pad == "even"

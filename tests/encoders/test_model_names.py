"""`merl-resnet18` names two models: the published MERL model (`list_pretrained()`, weights converted by
`ecglang convert merl`) and a model config of this project (`list_models()`, `create_model`), a MERL-style
baseline with another ECG tower and another text tower. `load_model("merl-resnet18")` said only "convert its
weights first", `ecglang models` listed the config beside no word, and nothing said that `create_model` of the
name builds neither MERL's architecture nor its weights. The messages are checked against the real components:
the config that `create_model` builds, the checkpoint that the conversion command writes."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

import ecglang
from ecglang.cli.main import build_parser, main
from ecglang.encoders.convert_merl import convert_merl
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.pretrained import get_pretrained, list_pretrained, same_name_config
from ecglang.encoders.registry import list_models
from ecglang.errors import ModelLoadError

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "merl"
needs_merl = pytest.mark.skipif(not (FIXTURE / "reference.npz").is_file(), reason=f"MERL fixture {FIXTURE} not found")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def baseline() -> EcgLangModel:
    """What `create_model("merl-resnet18")` builds (the real config, the real text tower)."""
    return ecglang.create_model("merl-resnet18")


def test_merl_resnet18_is_both_a_published_model_and_a_config() -> None:
    assert "merl-resnet18" in list_models() and "merl-resnet18" in [m.name for m in list_pretrained()]
    assert same_name_config("merl-vit-tiny") is None and same_name_config("ecglang-small") is not None


def test_load_model_says_it_is_the_published_merl_model_and_how_to_convert_it(baseline) -> None:
    published = get_pretrained("merl-resnet18")
    with pytest.raises(ModelLoadError) as raised:
        ecglang.load_model("merl-resnet18")
    message = str(raised.value)
    assert message.startswith("merl-resnet18: not a folder, Hub id or bundled checkpoint; 'merl-resnet18' is a "
                              "published model (Liu et al., ICML 2024: MERL ResNet1d-18"), message  # fmt: skip
    # the exact command, then the load of the folder it writes
    assert f"convert them once (their files: {published.weights}) with `{published.convert}`, then " in message
    assert "ecglang.load_model('DIR')" in message
    # and what create_model of the same name gives, as the real config builds it
    ecg, text = baseline.config.ecg_tower["type"], baseline.config.text_tower["name_or_path"]
    assert (ecg, text) == ("resnet1d18", "sentence-transformers/all-MiniLM-L6-v2")
    assert (
        f"Another model has this name: ecglang.create_model('merl-resnet18') builds the model config of the same "
        f"name, untrained: ECG tower {ecg} (published: merl_resnet18), text tower {text} (published: "
        "ncbi/MedCPT-Query-Encoder); not the published architecture, and without its weights"
    ) in message
    assert "\n" not in message


def test_the_published_convert_command_is_a_valid_command_line() -> None:
    for model in list_pretrained(convertible_only=True):
        words = shlex.split(model.convert)
        assert words[0] == "ecglang", model.convert
        args = build_parser().parse_args(words[1:])
        assert (args.command, args.source, args.text_model) == ("convert", "merl", model.text_model)


@needs_merl
def test_the_published_tower_is_what_the_conversion_writes(tmp_path: Path) -> None:
    """`ecg_tower` of the published entry (quoted by the message) is the tower of a converted MERL ResNet."""
    out = convert_merl(FIXTURE / "merl_resnet18_tinytext.pth", str(FIXTURE / "text-encoder"), tmp_path / "m")
    assert EcgLangModel.from_pretrained(out).config.ecg_tower["type"] == get_pretrained("merl-resnet18").ecg_tower


def test_other_names_keep_their_messages() -> None:
    with pytest.raises(ModelLoadError, match=r"'merl-vit-tiny' is a published model .*load_model\('DIR'\)$"):
        ecglang.load_model("merl-vit-tiny")  # no config has its name: nothing more is said
    with pytest.raises(ModelLoadError, match=r"; 'ecglang-small' is an architecture config: ecglang.create_model"):
        ecglang.load_model("ecglang-small")
    with pytest.raises(ModelLoadError, match=r"; bundled checkpoints: \['ecglang-mini'"):
        ecglang.load_model("no-such-model")


def test_ecglang_models_says_the_config_is_not_the_published_model(capsys) -> None:
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert lines["merl-resnet18"].endswith("[not the published merl-resnet18: ecglang models --pretrained]")
    assert "[not the published" not in lines["ecglang-small"]
    assert main(["models", "--pretrained"]) == 0
    shown = capsys.readouterr().out
    entry = shown.split("merl-resnet18  [convert:")[1].split("\nmerl-vit-tiny")[0]
    assert f"\n  same name     {same_name_config('merl-resnet18')}" in entry
    assert "same name" not in shown.split("\nmerl-vit-tiny")[1]

"""Hostile checkpoint folders: each test copies the bundled ecglang-mini checkpoint and damages one file the way
a corrupt download, a hand edit or a malicious upload would. Loading must end in a typed error naming the file
and the problem (the CLI prints it as one line), refuse sizes before allocating them, and never return a model
whose weights are garbage."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig

import ecglang
from ecglang.cli.main import main as cli
from ecglang.core.checksums import sha256_file, write_checksums
from ecglang.encoders.checkpoint import resolve_model_name
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.modeling import EcgLangModel
from ecglang.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

REPO = Path(ecglang.__file__).resolve().parent.parent
WEIGHTS = "model.safetensors"
ADAPTER_WEIGHTS = "text_adapter/adapter_model.safetensors"
# The text base of every shipped model (MiniLM-L6) as a transformers config dict, and sizes built from it.
BERT = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
        "num_attention_heads": 12, "intermediate_size": 1536}  # fmt: skip


@pytest.fixture(scope="module")
def bundled() -> Path:
    return Path(resolve_model_name(None))


@pytest.fixture
def folder(bundled, tmp_path) -> Path:
    target = tmp_path / "hostile"
    shutil.copytree(bundled, target)
    return target


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _edit_weights(folder: Path, name: str, edit) -> None:
    """Rewrite one weight file and its checksum: damage that checksums cannot catch (the file was saved so)."""
    path = folder / name
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path), metadata={"format": "pt"})
    write_checksums(folder, [WEIGHTS, ADAPTER_WEIGHTS])


def _full_text(hf_config):
    def edit(data: dict) -> None:
        data["text_tower"].update(finetune="full", hf_config=hf_config)

    return edit


# ------------------------------------------------------------------------ 1. malformed config.json
_BAD_CONFIGS = {
    "json-list": (b"[1, 2]", "not an ecglang config: it holds a JSON list, not an object"),
    "json-string": (b'"hello"', "not an ecglang config: it holds a JSON str, not an object"),
    "invalid-utf8": (b'{"model_type": "\xff"}', "unreadable config: 'utf-8' codec can't decode byte 0xff"),
    "nested-100k-deep": (b"[" * 100_000 + b"]" * 100_000, "unreadable config: maximum recursion depth exceeded"),
}


@pytest.mark.parametrize("case", sorted(_BAD_CONFIGS))
def test_a_config_json_that_is_not_an_object_is_a_model_load_error(folder, case):
    """Before the fix: AttributeError ('list' object has no attribute 'get') and UnicodeDecodeError."""
    content, problem = _BAD_CONFIGS[case]
    (folder / "config.json").write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(f"{folder / 'config.json'}: {problem}")):
        EcgLangModel.from_pretrained(folder)


_BAD_SECTIONS = {
    "ecg_tower-list": (lambda d: d.update(ecg_tower=[1, 2]), "config section 'ecg_tower' must be a dict, got list"),
    "ecg_tower-type-list": (lambda d: d["ecg_tower"].update(type=["beat"]), "ecg_tower.type must be one of"),
    "hf_config-list": (_full_text([1, 2]), "text_tower.hf_config must be a transformers config dict, got list"),
    "hf_config-no-model-type": (
        _full_text({"hidden_size": 10}),
        "text_tower.hf_config must name its model_type (a string), got None",
    ),
    "hf_config-unknown-model-type": (
        _full_text({"model_type": "evil", "auto_map": {"AutoModel": "evil.EvilModel"}}),
        "text_tower.hf_config is not a transformers config: ValueError: Unrecognized model identifier: evil",
    ),
    # peft's TypeError ('unhashable type: list') and AttributeError ('int' has no 'split') before the fix
    **{
        f"lora-targets-{name}": (
            lambda d, targets=targets: d["text_tower"]["lora"].update(target_modules=targets),
            "text_tower.lora.target_modules must be 'qv', 'all-linear' or a list of module names, got",
        )
        for name, targets in (("nested-list", [[1]]), ("dict", [{}]), ("int", [1]), ("null", [None]), ("empty", [""]))
    },
    "lora-targets-match-nothing": (
        lambda d: d["text_tower"]["lora"].update(target_modules=["no.such.module"]),
        "text_tower.lora.target_modules ['no.such.module']: Target modules {'no.such.module'} not found",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_SECTIONS))
def test_a_malformed_section_is_a_model_load_error_naming_config_json(folder, case):
    """Before the fix: AttributeError, TypeError (AutoConfig.for_model), peft's NoMatchingPeftModuleError, and an
    unknown hf_config model_type was reported against the text base's package folder, not config.json."""
    edit, problem = _BAD_SECTIONS[case]
    _edit_config(folder, edit)
    with pytest.raises(ModelLoadError, match=re.escape(f"{folder / 'config.json'}: invalid config: {problem}")):
        EcgLangModel.from_pretrained(folder)


# ------------------------------------------------------------------------ 2. field types
_BAD_TYPES = {
    "n_layers-2.5": (("ecg_tower", "n_layers"), 2.5, "ecg_tower.n_layers must be an integer, got 2.5 (float)"),
    "d_model-64.0": (("ecg_tower", "d_model"), 64.0, "ecg_tower.d_model must be an integer, got 64.0 (float)"),
    "n_heads-true": (("ecg_tower", "n_heads"), True, "ecg_tower.n_heads must be an integer, got True (bool)"),
    "lora-r-8.5": (("text_tower", "lora", "r"), 8.5, "text_tower.lora.r must be an integer, got 8.5 (float)"),
    "projection-dim-128.0": (("projection", "dim"), 128.0, "projection.dim must be an integer, got 128.0"),
    "normalize-no": (("projection", "normalize"), "no", "projection.normalize must be true or false, got 'no'"),
    "lowercase-1": (("text_tower", "lowercase"), 1, "text_tower.lowercase must be true or false, got 1 (int)"),
    "demographics-yes": (("ecg_tower", "demographics"), "yes", "ecg_tower.demographics must be true or false"),
    "local_loss-false-string": (("loss", "local_loss"), "false", "loss.local_loss must be true or false"),
    "logit-scale-nan": (("loss", "logit_scale_init"), float("nan"), "loss.logit_scale_init must be a finite number"),
    "dropout-string": (("ecg_tower", "dropout"), "0.1", "ecg_tower.dropout must be a finite number, got '0.1'"),
}


@pytest.mark.parametrize("case", sorted(_BAD_TYPES))
def test_integer_and_boolean_fields_are_not_coerced(folder, case):
    """Before the fix 2.5 layers, a LoRA rank of 8.5 and "no" for a flag loaded without a word (a NaN logit
    scale too; a string dropout was an untyped ValueError)."""
    keys, value, problem = _BAD_TYPES[case]

    def edit(data: dict) -> None:
        section = data
        for key in keys[:-1]:
            section = section[key]
        section[keys[-1]] = value

    _edit_config(folder, edit)
    with pytest.raises(ModelLoadError, match=re.escape(f"{folder / 'config.json'}: invalid config: {problem}")):
        EcgLangModel.from_pretrained(folder)


# ------------------------------------------------------------------------ 3. text-model size
def test_text_model_sizes_are_refused_before_anything_is_allocated(folder, tmp_path, load_in_child):
    """A full fine-tune's hf_config (48 layers of width 4800: 13 billion parameters), a layer count of ten
    million, a vocabulary of a trillion and a text base folder whose config.json describes 73 billion
    parameters. Before the fix each allocated until memory ran out (an untyped RuntimeError after ~5 GB and
    30 s for the first). They load in one fresh interpreter with an address-space limit of 1.5 GiB above its
    imports, so a regression fails instead of exhausting the machine; peak memory must not grow."""
    base = tmp_path / "huge-text-base"
    base.mkdir()
    big = {**BERT, "hidden_size": 12000, "num_hidden_layers": 40, "intermediate_size": 48000, "vocab_size": 300000}
    (base / "config.json").write_text(json.dumps(big))
    save_file({"dummy": torch.zeros(1)}, str(base / WEIGHTS))
    cases = [
        (_full_text({**BERT, "hidden_size": 4800, "num_hidden_layers": 48, "intermediate_size": 19200}),
         "config.json: invalid config: text_tower.hf_config describes a text model of 13.4 billion parameters "
         "(50 GiB of float32), above the supported 2 billion"),
        (_full_text({**BERT, "num_hidden_layers": 10**7}),
         "config.json: invalid config: text_tower.hf_config: num_hidden_layers = 10000000 is not an integer in "
         "0..1024"),
        (_full_text({**BERT, "vocab_size": 10**12}),
         "config.json: invalid config: text_tower.hf_config describes a text model of 384,000.0 billion parameters"),
        (lambda d: d["text_tower"].update(name_or_path=str(base), finetune="frozen"),
         f"{base / 'config.json'}: the text base model's config describes a text model of 72.9 billion parameters"),
    ]  # fmt: skip
    folders = []
    for i, (edit, _) in enumerate(cases):
        case = tmp_path / f"case{i}"
        shutil.copytree(folder, case)
        _edit_config(case, edit)
        folders.append(str(case))
    result = load_in_child(folders)
    for (_, expected), (message, seconds) in zip(cases, result["cases"], strict=True):
        assert expected in message, message
        assert seconds < 3.0, (message, seconds)
    assert result["grown_mb"] < 150, result["grown_mb"]


def test_the_text_bound_leaves_real_encoders_alone():
    """The bound refuses sizes no checkpoint uses, not real ones: MiniLM (every shipped model), BERT-base
    (MERL's Bio_ClinicalBERT) and BERT-large are accepted. (The check did not exist before the fix.)"""
    from ecglang.encoders.text_encoder import bounded_text_config, text_model_parameters

    sizes = {
        "minilm": BERT,
        "bert-base": {**BERT, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12},
        "bert-large": {**BERT, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                       "num_attention_heads": 16},
    }  # fmt: skip
    counts = {}
    for name, hf in sizes.items():
        data = dict(hf)
        conf = AutoConfig.for_model(data.pop("model_type"), **data)
        bounded_text_config(conf, name)
        counts[name] = text_model_parameters(conf)
    assert 22e6 < counts["minilm"] < 24e6 and 1e8 < counts["bert-base"] < 1.2e8 and 3.2e8 < counts["bert-large"] < 3.5e8
    wide = {k: v for k, v in BERT.items() if k != "model_type"}
    wide.update(hidden_size=3072, intermediate_size=12288, num_hidden_layers=18)  # just above the bound
    with pytest.raises(ConfigError, match=r"^wide describes a text model of 2\.1 billion parameters"):
        bounded_text_config(AutoConfig.for_model("bert", **wide), "wide")


# ------------------------------------------------------------------------ 4. corrupt weights
def _one_inf(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[0] = float("inf")
    return t


_BAD_WEIGHTS = {
    "nan": (WEIGHTS, lambda t: torch.full_like(t, float("nan")), r"holds 8192 non-finite value\(s\) \(NaN"),
    "one-inf": (WEIGHTS, _one_inf, r"holds 1 non-finite value\(s\) \(NaN or infinity\) of 8192"),
    "bool": (WEIGHTS, lambda t: t.bool(), r"is stored as torch\.bool; weights must be floating point"),
    "int8": (WEIGHTS, lambda t: t.to(torch.int8), r"is stored as torch\.int8; weights must be floating point"),
    "adapter-int32": (ADAPTER_WEIGHTS, lambda t: t.to(torch.int32), r"is stored as torch\.int32; weights must be"),
    "adapter-nan": (ADAPTER_WEIGHTS, lambda t: torch.full_like(t, float("nan")), r"holds 3072 non-finite value"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_BAD_WEIGHTS))
def test_corrupt_weights_are_refused_naming_the_file_and_tensor(folder, case):
    """Before the fix NaN weights loaded (every zero-shot score NaN, exit 0) and bool/int weights were cast
    silently to float32. The checksums are rewritten: the file was saved that way."""
    name, damage, problem = _BAD_WEIGHTS[case]
    edited = []

    def edit(state: dict) -> None:
        key = sorted(state)[0]
        state[key] = damage(state[key].clone())
        edited.append(key)

    _edit_weights(folder, name, edit)
    prefix = re.escape(f"{folder / name}: tensor {edited[0]!r} ")
    with pytest.raises(ModelLoadError, match=prefix + problem):
        EcgLangModel.from_pretrained(folder)


def test_nan_weights_are_one_error_line_in_the_cli_not_nan_scores(folder, ptbxl_dir, capsys):
    """Before the fix `ecglang zero-shot` with this checkpoint printed NaN scores and exited 0."""
    _edit_weights(folder, WEIGHTS, lambda s: s.update({k: torch.full_like(v, float("nan")) for k, v in s.items()}))
    record = ptbxl_dir / "records500" / "00000" / "00001_hr"
    args = ["zero-shot", str(record), "--labels", "AF", "--model", str(folder), "--knowledge", "off"]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and f"{folder / WEIGHTS}: tensor " in lines[0] and "non-finite" in lines[0], err


# ------------------------------------------------------------------------ 5. checksums.json
def _sums_outside(folder: Path, spelled) -> str:
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of the checkpoint\n")
    return json.dumps({spelled(folder, outside): sha256_file(outside)})


_BAD_SUMS = {
    "json-list": (lambda f: "[]", "not a checksum file: it holds a JSON list"),
    "json-string": (lambda f: '"x"', "not a checksum file: it holds a JSON str"),
    "int-digest": (lambda f: json.dumps({WEIGHTS: 5}), "the entry for 'model.safetensors' is not a sha256"),
    "short-digest": (lambda f: json.dumps({WEIGHTS: "00"}), "the entry for 'model.safetensors' is not a sha256"),
    "invalid-utf8": (lambda f: b'{"\xff": 1}', "unreadable checksum file: 'utf-8' codec can't decode"),
    "nested-100k-deep": (lambda f: "[" * 100_000 + "]" * 100_000, "unreadable checksum file: nested deeper than"),
    "absolute-path": (lambda f: _sums_outside(f, lambda d, o: str(o)), "is not a file inside the checkpoint folder"),
    "dot-dot": (lambda f: _sums_outside(f, lambda d, o: f"../{o.name}"), "is not a file inside the checkpoint"),
    "nested-dot-dot": (
        lambda f: _sums_outside(f, lambda d, o: f"text_adapter/../../{o.name}"),
        "is not a file inside the checkpoint",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_SUMS))
def test_a_malformed_checksum_file_is_a_model_load_error(folder, case):
    """Before the fix: AttributeError/TypeError/UnicodeDecodeError, and entries outside the folder (given their
    right digest) were read, hashed and accepted: the checkpoint loaded."""
    content, problem = _BAD_SUMS[case]
    data = content(folder)
    path = folder / "checksums.json"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(ModelLoadError, match=re.escape(f"{path}: ") + r".*" + re.escape(problem)):
        EcgLangModel.from_pretrained(folder)


# ------------------------------------------------------------------------ 6. the model card
_BAD_CARDS = {
    "bad-yaml": "---\nfoo: [unclosed\n---\n# hi\n",
    "python-tag": "---\nfoo: !!python/object/apply:os.system ['touch {marker}']\n---\n# hi\n",
    "bad-model-index": "---\nmodel-index:\n- name: x\n  results: 5\n---\n# t\n",
}


@pytest.mark.parametrize("case", sorted(_BAD_CARDS))
def test_a_card_that_does_not_parse_is_a_warning_and_the_model_loads(folder, case, caplog, tmp_path):
    """The card is documentation. Before the fix bad YAML (ParserError) or a python/ tag (ConstructorError)
    made the checkpoint unloadable, after the weights had loaded."""
    marker = tmp_path / "card-ran"
    (folder / "README.md").write_text(_BAD_CARDS[case].format(marker=marker), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ecglang.encoders.checkpoint"):
        model = EcgLangModel.from_pretrained(folder)
    assert model.loaded_card["fields"] == {}
    assert f"{folder / 'README.md'}: cannot read the model card, it is not carried on re-save" in caplog.text
    assert not marker.exists()


def test_configs_built_in_code_keep_their_types():
    """Integer-valued sizes given as ints, booleans as booleans and a None hidden_dim pass the type checks."""
    config = EcgLangConfig(projection={"hidden_dim": None, "normalize": False}, loss={"local_loss": True})
    assert config.projection["hidden_dim"] is None and config.loss["local_loss"] is True
    with pytest.raises(ConfigError, match=r"projection\.hidden_dim must be an integer, got 512\.0 \(float\)"):
        EcgLangConfig(projection={"hidden_dim": 512.0})

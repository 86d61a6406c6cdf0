"""Knowledge prompts join a label's own words (its name and prompts); they never replace them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecglang.encoders.registry import create_model
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import mean_unit, prompt_cache, unit, with_name
from ecglang.scores.prompts import load_prompt_set


def test_with_name_puts_the_name_first_once():
    assert with_name(["left bundle branch block pattern"], "complete left bundle branch block") == [
        "complete left bundle branch block",
        "left bundle branch block pattern",
    ]
    assert with_name(["Atrial  Fibrillation", "afib"], "atrial fibrillation") == ["Atrial  Fibrillation", "afib"]
    assert with_name(["a prompt"], None) == ["a prompt"]


@pytest.fixture(scope="module")
def model(one_torch_thread):
    torch.manual_seed(0)
    return create_model("ecglang-small").eval()


def test_knowledge_adds_prompts_beside_the_name_and_prompts(model):
    ps = load_prompt_set("ptbxl_sub")
    # (the ambiguity check is tested on its own below; here every prompt stays)
    clf = ZeroShotClassifier(model, knowledge=True, k=3, knowledge_weight=0.5, drop_ambiguous_prompts=False)
    specs = clf.label_specs(labels=["CLBBB", "AMI"], prompts=ps)
    plain = ZeroShotClassifier(model, knowledge=None, drop_ambiguous_prompts=False).label_specs(
        labels=["CLBBB", "AMI"], prompts=ps
    )
    matrix = clf.label_matrix(specs)
    cache = prompt_cache(model)
    # AMI's name is none of its prompts: with knowledge it becomes one more own prompt, first.
    assert ps.labels["AMI"].name not in ps.labels["AMI"].prompts
    assert specs["AMI"].prompts[0] == ps.labels["AMI"].name
    for row, (code, spec) in zip(matrix, specs.items(), strict=True):
        name = ps.labels[code].name
        assert name in spec.prompts and spec.prompts == with_name(ps.labels[code].prompts, name)
        assert plain[code].prompts == list(ps.labels[code].prompts)  # without knowledge: the set's prompts only
        assert spec.knowledge_prompts, f"{code}: the bundled knowledge base has criteria for it"
        own = mean_unit([cache[("text", t)] for t in spec.prompts])
        know = mean_unit([cache[("text", t)] for t in spec.knowledge_prompts])
        np.testing.assert_allclose(row, unit(0.5 * own + 0.5 * know), atol=1e-5)
        # Knowledge replacing the label's words would make the row the knowledge mean; it is not.
        assert not np.allclose(row, know, atol=1e-3)
        name_emb = cache[("text", name)]
        assert float(row @ name_emb) > float(know @ name_emb)


def test_codes_of_a_prompt_set_named_by_string_get_its_names_as_the_whole_set_does(model):
    # labels=[codes] with prompts="ptbxl_sub" (the CLI's --labels ... --prompts ptbxl_sub) lost the set's names:
    # the label was named by its code, and the name never joined its prompts as it does for the whole set.
    clf = ZeroShotClassifier(model, knowledge=True, k=3)
    subset = clf.label_specs(labels=["CLBBB", "AMI"], prompts="ptbxl_sub")
    whole = clf.label_specs(prompts="ptbxl_sub")
    for code in ("CLBBB", "AMI"):
        assert subset[code].name == whole[code].name == load_prompt_set("ptbxl_sub").labels[code].name
        assert subset[code].prompts == whole[code].prompts
        assert subset[code].knowledge_prompts == whole[code].knowledge_prompts


def test_knowledge_search_of_a_prompt_set_shows_what_zero_shot_attaches(model, capsys):
    # "One retrieval, visible": `ecglang knowledge search --prompt-set` passes a label's name, prompts, code and
    # group members as zero-shot does (a bare --code cannot tell PTB-XL super's STTC from sub's).
    import json

    from ecglang.cli.main import main as cli
    from ecglang.scores.prompts import list_prompt_sets

    # Retrieval is the same; the ambiguity check may then leave out a snippet whose criteria all read as
    # another label's (zero-shot lists the snippets behind the score: those retrieved, less any such).
    # Both at their defaults: the search shows as many snippets as zero-shot attaches.
    clf = ZeroShotClassifier(model, knowledge=True, drop_ambiguous_prompts=False)
    checked = ZeroShotClassifier(model, knowledge=True, drop_ambiguous_prompts=True)
    for name in list_prompt_sets():
        codes = load_prompt_set(name).codes
        assert cli(["knowledge", "search", "--prompt-set", name, *codes, "--json"]) == 0
        shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        specs, after = clf.label_specs(prompts=name), checked.label_specs(prompts=name)
        assert [r["query"] for r in shown] == list(specs), name
        for record in shown:
            assert [h["id"] for h in record["hits"]] == [s["id"] for s in specs[record["query"]].snippets]
            assert record["name"] == specs[record["query"]].name
            kept = [s["id"] for s in after[record["query"]].snippets]
            assert kept == [h["id"] for h in record["hits"] if h["id"] in kept]  # a subset, in retrieval order
    sub, sup = (clf.label_specs(labels=["STTC"], prompts=n)["STTC"].snippets for n in ("ptbxl_sub", "ptbxl_super"))
    assert [s["id"] for s in sub] != [s["id"] for s in sup]
    assert cli(["knowledge", "search", "--prompt-set", "ptbxl_super", "STTC", "--code", "ptbxl:STTC"]) == 2
    assert "give one" in capsys.readouterr().err


def test_prompts_nearer_another_labels_name_are_left_out(one_torch_thread):
    # "sinus rhythm with heart rate below 60" (sinus bradycardia) reads as "sinus rhythm" to a small text
    # encoder; scored beside sinus rhythm it pulled bradycardia towards it. The check keeps a prompt only when
    # its own label's name is the nearest of the scored labels' names (checked here with encode_text directly).
    from ecglang.encoders.modeling import load_model

    bundled = load_model(None, "cpu")
    ps = load_prompt_set("ptbxl_rhythm")
    on = {"knowledge": True, "k": 3, "drop_ambiguous_prompts": True}
    specs = ZeroShotClassifier(bundled, **on).label_specs(prompts="ptbxl_rhythm")
    full = ZeroShotClassifier(bundled, knowledge=True, k=3, drop_ambiguous_prompts=False).label_specs(
        prompts="ptbxl_rhythm"
    )
    names = [spec.name for spec in full.values()]
    with torch.inference_mode():
        name_emb = bundled.encode_text(names).text_embeds.float().numpy()
    for code, spec in full.items():
        after = specs[code]
        texts = [*spec.prompts, *spec.knowledge_prompts]
        assert sorted(after.dropped) == sorted(t for t in texts if t not in after.prompts + after.knowledge_prompts)
        assert ps.labels[code].name in after.prompts  # the name always stays
        with torch.inference_mode():
            emb = bundled.encode_text(texts).text_embeds.float().numpy()
        sims = emb @ name_emb.T
        own = names.index(spec.name)
        for text, row in zip(texts, sims, strict=True):
            nearest_is_own = row[own] >= row.max() - 1e-5
            assert (text in after.dropped) == (not nearest_is_own and text != spec.name), (code, text)
        snippet_ids = {getattr(t, "snippet_id", None) for t in after.knowledge_prompts}
        assert {s["id"] for s in after.snippets} == snippet_ids - {None}
    assert "sinus rhythm with heart rate below 60" in specs["SBRAD"].dropped
    assert "sinus rhythm with heart rate above 100" in specs["STACH"].dropped
    assert not specs["SR"].dropped or all(t not in ps.labels["SR"].prompts for t in specs["SR"].dropped)
    # A prompt set's label is told apart from its whole set, whichever labels are asked for ...
    some = ZeroShotClassifier(bundled, **on).label_specs(labels=["SBRAD"], prompts="ptbxl_rhythm")
    assert some["SBRAD"].prompts == specs["SBRAD"].prompts and some["SBRAD"].dropped == specs["SBRAD"].dropped
    # ... and a free-text label alone has nothing to be confused with.
    alone = ZeroShotClassifier(bundled, **on).label_specs(prompts={"brady": list(full["SBRAD"].prompts)})
    assert alone["brady"].dropped == [] and alone["brady"].prompts == full["SBRAD"].prompts


def test_a_prompts_dicts_keys_are_ids_so_labels_are_told_apart_by_their_first_prompt():
    from ecglang.scores.labels import LabelSpec, reference_text

    assert reference_text(LabelSpec("af", "af", ["atrial fibrillation", "irregular rhythm"])) == "atrial fibrillation"
    assert reference_text(LabelSpec("atrial fibrillation", "atrial fibrillation", ["atrial fibrillation"])) == (
        "atrial fibrillation"
    )
    named = LabelSpec("SBRAD", "sinus bradycardia", ["slow sinus rhythm"])  # a prompt set's clinical name
    assert reference_text(named) == "sinus bradycardia"

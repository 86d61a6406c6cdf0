"""Knowledge prompts join a label's own words (its name and prompts); they never replace them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecglang.encoders.registry import create_model
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import PROMPT_CACHE, mean_unit, unit, with_name
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
    clf = ZeroShotClassifier(model, knowledge=True, k=3, knowledge_weight=0.5)
    specs = clf.label_specs(labels=["CLBBB", "AMI"], prompts=ps)
    plain = ZeroShotClassifier(model, knowledge=None).label_specs(labels=["CLBBB", "AMI"], prompts=ps)
    matrix = clf.label_matrix(specs)
    cache = PROMPT_CACHE[model]
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

    clf = ZeroShotClassifier(model, knowledge=True, k=3)
    for name in list_prompt_sets():
        codes = load_prompt_set(name).codes
        assert cli(["knowledge", "search", "--prompt-set", name, *codes, "--json"]) == 0
        shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        specs = clf.label_specs(prompts=name)
        assert [r["query"] for r in shown] == list(specs), name
        for record in shown:
            assert [h["id"] for h in record["hits"]] == [s["id"] for s in specs[record["query"]].snippets]
            assert record["name"] == specs[record["query"]].name
    sub, sup = (clf.label_specs(labels=["STTC"], prompts=n)["STTC"].snippets for n in ("ptbxl_sub", "ptbxl_super"))
    assert [s["id"] for s in sub] != [s["id"] for s in sup]
    assert cli(["knowledge", "search", "--prompt-set", "ptbxl_super", "STTC", "--code", "ptbxl:STTC"]) == 1
    assert "give one" in capsys.readouterr().err

"""`ecglang evaluate` and what it reads (audit 22, findings 1-3), on real PTB-XL sample records, the published
super-class split (copied into tmp_path and edited there) and MERL's own `CKEPE_prompt.json`.

1. A split label column with an empty cell was read as floats and dropped out of every figure (exit 0, not a
   word in results.md); a prompt-set code with no column at all was only in results.json.
2. `external:` prompts are "used verbatim", but the text tower reads `max_length` tokens: CKEPE's MI description
   (121 tokens) lost its end, while results.json listed the whole text as if read.
3. `results.json`'s paired comparisons held the two AUROCs under `a`/`b`, overwriting the source names.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglang.cli.main import main
from ecglang.encoders.modeling import load_model
from ecglang.errors import EcgReadError
from ecglang.evaluation import protocol
from ecglang.evaluation.compare import compare_sources
from ecglang.evaluation.datasets import load_label_set
from ecglang.evaluation.metrics import macro_auroc
from ecglang.scores.classifier import ZeroShotClassifier
from ecglang.scores.labels import LabelSpec

SUPER_TRAIN = "ptbxl/super_class/ptbxl_super_class_train.csv"
MAX_LENGTH = 96  # the bundled ecglang-mini's text tower


def _split_copy(shared_data: Path, root: Path, edit) -> Path:
    """`root` holding the super-class train CSV with `edit(rows)` applied to its csv rows (header first)."""
    rows = list(csv.reader((shared_data / "merl" / "data_split" / SUPER_TRAIN).read_text().splitlines()))
    edit(rows)
    out = root / SUPER_TRAIN
    out.parent.mkdir(parents=True)
    with out.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return root


def _on_disk(ptbxl_dir: Path) -> set[str]:
    return {str(int(p.name.split("_")[0])) for p in ptbxl_dir.glob("records500/*/*_hr.hea")}


def test_an_empty_cell_in_a_split_label_column_stops_the_evaluation(shared_data, ptbxl_dir, tmp_path) -> None:
    """Finding 1: HYP blank in one row (of a record on disk) was a 4-class ptbxl_super without a word; now an
    `EcgReadError` naming the file, the column and the line, before any model is loaded."""
    found = sorted(_on_disk(ptbxl_dir), key=int)[0]
    where = {}

    def blank(rows: list[list[str]]) -> None:
        at = rows[0].index("HYP")
        for k, row in enumerate(rows):
            if row[0] == found:
                row[at], where["line"] = "", k + 1

    root = _split_copy(shared_data, tmp_path / "split", blank)
    with pytest.raises(EcgReadError) as err:
        load_label_set("ptbxl_super", root, [str(ptbxl_dir)], part="train")
    assert SUPER_TRAIN in str(err.value)
    assert f"column 'HYP' holds 0/1 labels but line {where['line']} holds an empty cell" in str(err.value)


@pytest.fixture(scope="module")
def run(shared_data: Path, ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, str, Path]:
    """One evaluate run of ptbxl_super on a split without its HYP column, with the prompt set, names and CKEPE as
    sources, by an untrained ecglang-small whose text tower reads 96 tokens, as the bundled model's does."""
    from ecglang.encoders.registry import create_model  # here: torch/transformers only for this fixture

    tmp = tmp_path_factory.mktemp("ev22")
    torch.manual_seed(0)
    model_dir = tmp / "model"
    create_model("ecglang-small", text_tower={"max_length": MAX_LENGTH}).save_pretrained(model_dir)

    def drop_hyp(rows: list[list[str]]) -> None:
        at = rows[0].index("HYP")
        for row in rows:
            del row[at]

    root = _split_copy(shared_data, tmp / "split", drop_hyp)
    out = tmp / "out"
    argv = ["evaluate", "--model", str(model_dir), "--label-sets", "ptbxl_super", "--split-root", str(root),
            "--data-root", str(ptbxl_dir), "--part", "train", "--limit", "16", "--sources", "prompts", "names",
            f"external:{shared_data / 'merl' / 'CKEPE_prompt.json'}", "--n-boot", "20", "--out", str(out),
            "--no-progress"]  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, out, err.getvalue(), model_dir


def test_a_prompt_set_code_without_a_split_column_is_said_on_stderr_and_in_results_md(run) -> None:
    """Finding 1, its other half: a code of the prompt set that the split lacks was only
    `notes.prompts_without_column` in results.json."""
    rc, out, err, _ = run
    assert rc == 0
    res = json.loads((out / "results.json").read_text())["label_sets"]["ptbxl_super"]
    assert list(res["labels"]) == ["NORM", "MI", "STTC", "CD"]
    said = "ptbxl_super: prompt-set code(s) 'HYP' have no 0/1 column in the split: not evaluated"
    assert f"warning: {said}" in err
    assert f"- {said}" in (out / "results.md").read_text().split("## Notes", 1)[1]


def test_prompts_cut_at_the_text_towers_max_length_are_reported(run, shared_data) -> None:
    """Finding 2: which prompts of which source the tower cut, by how many tokens, and the end it never read;
    counted with the model's own tokenizer, independently here."""
    _, out, err, model_dir = run
    res = json.loads((out / "results.json").read_text())["label_sets"]["ptbxl_super"]
    mi = json.loads((shared_data / "merl" / "CKEPE_prompt.json").read_text())["MI"]
    tokenizer = load_model(model_dir).get_tokenizer()
    n = len(tokenizer(mi, truncation=False)["input_ids"])
    assert n == 121
    cut = res["sources"]["external:CKEPE_prompt"]["truncated_prompts"]
    assert list(cut) == ["MI"]  # NORM, STTC and CD fit
    (entry,) = cut["MI"]
    assert entry["prompt"] == mi and (entry["tokens"], entry["read"], entry["dropped"]) == (
        n,
        MAX_LENGTH,
        n - MAX_LENGTH,
    )
    assert mi.endswith(entry["unread"]) and "subendocardial myocardial infarction." in entry["unread"]
    assert not any("truncated_prompts" in res["sources"][s] for s in ("names", "prompts"))  # short: nothing cut
    said = (f"ptbxl_super · external:CKEPE_prompt: 1 prompt(s) longer than the text tower reads ({MAX_LENGTH} "
            f"tokens), cut there, their ends never read: MI ({n} tokens, {n - MAX_LENGTH} dropped)")  # fmt: skip
    assert f"warning: {said}" in err
    assert f"- {said}" in (out / "results.md").read_text().split("## Notes", 1)[1]


def test_the_reported_unread_end_is_what_the_tower_never_sees(run, shared_data) -> None:
    """Finding 2: `cut_prompts` against the tower itself. The prompt without its reported unread end embeds exactly
    as the whole prompt (the tower read no more), one word less does not (it read that far), and a prompt that fits is
    not reported."""
    _, _, _, model_dir = run
    model = load_model(model_dir)
    mi = json.loads((shared_data / "merl" / "CKEPE_prompt.json").read_text())["MI"]
    specs = {"MI": LabelSpec("MI", "myocardial infarction", [mi]), "NORM": LabelSpec("NORM", "normal", ["normal ECG"])}
    cut = protocol.cut_prompts(model, specs)
    assert list(cut) == ["MI"]
    read_part = mi[: len(mi) - len(cut["MI"][0]["unread"])]
    shorter = read_part.rsplit(" ", 1)[0]  # its last word gone: the tower did read that far
    emb = ZeroShotClassifier(model, knowledge=None).embed_texts([mi, read_part, shorter])
    np.testing.assert_array_equal(emb[0], emb[1])
    assert not np.allclose(emb[1], emb[2])


def test_paired_comparisons_name_their_sources(run) -> None:
    """Finding 3: `a`/`b` are the source names again; the two macro AUROCs are `a_macro_auroc`/`b_macro_auroc`,
    equal to those sources' own macro AUROC (every source scored the same 4 labels here)."""
    _, out, _, _ = run
    res = json.loads((out / "results.json").read_text())["label_sets"]["ptbxl_super"]
    assert set(res["paired"]) == {"prompts − names", "prompts − external:CKEPE_prompt"}
    for key, pair in res["paired"].items():
        assert f"{pair['a']} − {pair['b']}" == key
        for side in ("a", "b"):
            own = res["sources"][pair[side]]["model"]["macro_auroc"]["point"]
            assert pair[f"{side}_macro_auroc"] == pytest.approx(own, abs=1e-12)
        md_row = next(r for r in (out / "results.md").read_text().splitlines() if f"| {key} |" in r)
        assert f"| {pair['a_macro_auroc']:.3f} | {pair['b_macro_auroc']:.3f} |" in md_row


def test_compare_sources_keeps_names_and_aurocs_apart() -> None:
    """Finding 3 at the function: `{"a": focus, "b": key, **res}` let `res`'s AUROCs overwrite the names."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(60, 3))
    good, bad = y + rng.normal(0, 0.5, y.shape), rng.normal(0, 1, y.shape)
    out = compare_sources(y, ["A", "B", "C"], {"names": (["A", "B", "C"], bad), "knowledge": (["A", "B", "C"], good)},
                          n_resamples=20)  # fmt: skip
    pair = out["knowledge − names"]
    assert (pair["a"], pair["b"]) == ("knowledge", "names")
    assert pair["a_macro_auroc"] == macro_auroc(y, good) and pair["b_macro_auroc"] == macro_auroc(y, bad)

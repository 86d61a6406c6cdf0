"""Prompt sets: shipped files, their agreement with the published label splits, validation, resolution and
the external (CKEPE) loader."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ecglang.core.paths import resource_dir
from ecglang.errors import PromptError
from ecglang.scores.prompts import (
    LabelPrompts,
    PromptSet,
    check_prompt_set,
    list_prompt_sets,
    load_external_prompts,
    load_prompt_set,
    resolve_prompts,
    validate_prompt_set,
)

SHIPPED = ["chapman", "cinc2021", "cpsc2018", "ptbxl_form", "ptbxl_rhythm", "ptbxl_sub", "ptbxl_super"]
SPLITS = {
    "ptbxl_super": "ptbxl/super_class",
    "ptbxl_sub": "ptbxl/sub_class",
    "ptbxl_form": "ptbxl/form",
    "ptbxl_rhythm": "ptbxl/rhythm",
    "cpsc2018": "icbeb",
    "chapman": "chapman",
}
# The challenge's pairs scored as one diagnosis (evaluation-2021 dx_mapping_scored.csv notes).
CINC_EQUIVALENT = [("733534002", "164909002"), ("713427006", "59118001"), ("284470004", "63593006"),
                   ("427172004", "17338001")]  # fmt: skip


def split_label_columns(csv_path: Path) -> list[str]:
    """Label columns of a MERL split CSV: the multi-hot int columns after the last text column."""
    df = pd.read_csv(csv_path)
    last_text = max(i for i, dtype in enumerate(df.dtypes) if dtype.kind == "O")
    cols = list(df.columns[last_text + 1 :])
    for col in cols:
        assert df[col].dtype.kind == "i" and set(df[col].unique()) <= {0, 1}, f"{csv_path}:{col} not multi-hot"
    return cols


def _ps(labels: dict[str, list[str]], name: str = "t") -> PromptSet:
    return PromptSet(name=name, labels={c: LabelPrompts(c, (), tuple(p)) for c, p in labels.items()})


# ------------------------------------------------------------------------------------------- shipped sets


def test_shipped_sets_are_listed_and_valid():
    assert list_prompt_sets() == SHIPPED
    for name in SHIPPED:
        ps = load_prompt_set(name)
        assert ps.name == name and ps.path == resource_dir("prompts") / f"{name}.json"
        assert validate_prompt_set(ps) == []
        for code, lp in ps.labels.items():
            assert len(lp.prompts) >= 3, f"{name}:{code} has fewer than 3 prompts"
            assert lp.name.strip() and all(p == p.strip() for p in lp.prompts)


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_set_codes_equal_published_split_columns(shared_data: Path, name: str):
    ps = load_prompt_set(name)
    assert ps.merl_split == SPLITS[name]
    csvs = sorted((shared_data / "merl" / "data_split" / ps.merl_split).glob("*.csv"))
    assert [p.stem.rsplit("_", 1)[1] for p in csvs] == ["test", "train", "val"]
    for csv_path in csvs:
        assert set(split_label_columns(csv_path)) == set(ps.codes), csv_path
    assert len(ps.codes) == len(set(ps.codes))


def test_ptbxl_sets_match_scp_statements(ptbxl_dir: Path):
    scp = pd.read_csv(ptbxl_dir / "scp_statements.csv", index_col=0)
    diag = scp[scp.diagnostic == 1]
    sup, sub = load_prompt_set("ptbxl_super"), load_prompt_set("ptbxl_sub")
    # Every diagnostic statement belongs to exactly the (sub)class label that the split derives from it.
    for statement, row in diag.iterrows():
        assert sup.code_map()[statement] == row.diagnostic_class
        assert sub.code_map()[statement] == row.diagnostic_subclass.strip("_")
    assert sum(len(lp.codes) for lp in sub.labels.values()) == len(diag)
    form = {c.strip("_") for c in scp.index[scp.form == 1]}
    rhythm = {c.strip("_") for c in scp.index[scp.rhythm == 1]}
    assert set(load_prompt_set("ptbxl_form").codes) == form
    assert set(load_prompt_set("ptbxl_rhythm").codes) == rhythm


def test_dataset_specific_meanings_of_ambiguous_codes():
    chapman, rhythm, sub = (
        load_prompt_set("chapman"),
        load_prompt_set("ptbxl_rhythm"),
        load_prompt_set("ptbxl_sub"),
    )
    assert "flutter" in chapman.labels["AF"].name and "fibrillation" in chapman.labels["AFIB"].name
    assert "flutter" in rhythm.labels["AFLT"].name and "fibrillation" in rhythm.labels["AFIB"].name
    assert "escape" in chapman.labels["VEB"].name
    assert chapman.labels["ST"].name == "sinus tachycardia"
    assert "anterior" in sub.labels["AMI"].name  # PTB-XL AMI is anterior MI, not acute MI
    # STTC is the whole ST/T superclass in ptbxl_super but only its residual subclass in ptbxl_sub.
    assert load_prompt_set("ptbxl_super").labels["STTC"].name == "ST/T change"
    assert sub.labels["STTC"].name.startswith("other ST-T changes")


def test_chapman_notes_match_the_split_substring_defect(shared_data: Path):
    """Labels whose note says the MERL column was made by substring matching really are (and no others)."""
    chapman = load_prompt_set("chapman")
    folder = shared_data / "merl" / "data_split" / "chapman"
    df = pd.concat([pd.read_csv(p) for p in sorted(folder.glob("*.csv"))])
    tokens = df.diagnose.str.split(",")
    contaminated = set()
    for code in chapman.codes:
        assert (df[code] == df.diagnose.str.contains(code, regex=False)).all(), code
        exact = tokens.map(lambda t, c=code: c in t)
        if not (df[code] == exact).all():
            contaminated.add(code)
    flagged = {code for code, lp in chapman.labels.items() if "substring" in lp.note}
    assert contaminated == flagged == {"AF", "ST", "SA", "VB", "AVB", "2AVB", "CR"}


def test_cinc2021_scored_classes_and_equivalences(shared_data: Path):
    cinc = load_prompt_set("cinc2021")
    assert len(cinc) == 26
    sources = [s for lp in cinc.labels.values() for s in lp.codes]
    assert len(sources) == len(set(sources)) == 30 and all(s.isdigit() for s in sources)
    cmap = cinc.code_map()
    for a, b in CINC_EQUIVALENT:
        key = f"{a}|{b}"
        assert cinc.labels[key].codes == (a, b)
        assert cmap[a] == cmap[b] == key
    # Scored codes found in real CinC 2021 headers resolve to a label; unscored ones do not.
    dx = set()
    for hea in (shared_data / "formats" / "cinc2021").glob("*.hea"):
        line = next(ln for ln in hea.read_text().splitlines() if ln.startswith("# Dx:"))
        dx.update(c.strip() for c in line.split(":", 1)[1].split(","))
    assert {c for c in dx if c in cmap} == {"426177001", "427084000", "111975006"}
    assert "253352002" in dx and "253352002" not in cmap  # left atrial abnormality: unscored


# ---------------------------------------------------------------------------------------------- validator


def test_validator_catches_shared_prompt_case_and_space_insensitively():
    ps = _ps({"A": ["left bundle branch block"], "B": ["Left  Bundle branch BLOCK "]})
    problems = validate_prompt_set(ps)
    assert len(problems) == 1 and "shared by labels 'A' and 'B'" in problems[0]
    with pytest.raises(PromptError, match="shared by labels"):
        check_prompt_set(ps)


def test_validator_catches_empty_labels_names_and_repeats():
    assert any("has no prompts" in p for p in validate_prompt_set(_ps({"A": [], "B": ["b"]})))
    assert any("empty or non-string prompt" in p for p in validate_prompt_set(_ps({"A": ["  "], "B": ["b"]})))
    assert any("repeats the prompt" in p for p in validate_prompt_set(_ps({"A": ["a", "A "]})))
    assert validate_prompt_set(_ps({"A": ["a"]}, name=" ")) == ["the prompt set has an empty name"]
    unnamed = PromptSet("t", {"A": LabelPrompts("", (), ("a",))})
    assert validate_prompt_set(unnamed) == ["label 'A' has an empty name"]
    # Codes differing only by case are duplicates: users select labels case-insensitively.
    assert any("duplicates label 'AF'" in p for p in validate_prompt_set(_ps({"AF": ["x"], "af": ["y"]})))
    two_owners = PromptSet(
        "t",
        {"A": LabelPrompts("a", (), ("a",), codes=("s",)), "B": LabelPrompts("b", (), ("b",), codes=("s",))},
    )
    assert any("source code 's'" in p for p in validate_prompt_set(two_owners))
    assert validate_prompt_set(_ps({"A": ["a"], "B": ["b"]})) == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_rejects_bad_files_with_path(tmp_path: Path):
    good = {"name": "custom", "labels": {"A": {"name": "a", "prompts": ["alpha"]}}}
    assert load_prompt_set(_write(tmp_path, json.dumps(good))).prompts() == {"A": ["alpha"]}

    def labels(**entries: list[str]) -> str:
        return json.dumps({"name": "x", "labels": {c: {"name": c, "prompts": p} for c, p in entries.items()}})

    entry = '{"name": "a", "prompts": ["p"]}'
    duplicate_key = f'{{"name": "x", "labels": {{"A": {entry}, "A": {entry}}}}}'
    cases = {
        '{"name": "x", "labels": {': "not valid JSON",
        "[1, 2]": "top level must be a JSON object",
        duplicate_key: "appears twice",
        '{"name": "x", "labels": {"A": {"name": "a", "prompts": "p"}}}': "must be a list of strings",
        '{"name": "x", "labels": {"A": {"name": "a", "promts": ["p"]}}}': "unknown keys",
        labels(A=["p", 3]): "only strings",
        '{"name": "x", "labels": {}}': "non-empty object",
        labels(A=["p"], B=["P"]): "shared by labels",
    }
    for text, message in cases.items():
        path = _write(tmp_path, text)
        with pytest.raises(PromptError, match=message) as info:
            load_prompt_set(path)
        assert info.value.path == str(path)
    with pytest.raises(PromptError, match="file not found"):
        load_prompt_set(tmp_path / "absent.json")
    with pytest.raises(PromptError, match=r"unknown prompt set 'nope'.*ptbxl_super"):
        load_prompt_set("nope")


# ------------------------------------------------------------------------------------------ resolve_prompts


def test_resolve_prompts_forms():
    assert resolve_prompts(["atrial fibrillation", " sinus rhythm "]) == {
        "atrial fibrillation": ["atrial fibrillation"],
        "sinus rhythm": ["sinus rhythm"],
    }
    shipped = load_prompt_set("ptbxl_super")
    assert resolve_prompts(prompts="ptbxl_super") == shipped.prompts()
    assert resolve_prompts(prompts=shipped) == shipped.prompts()
    assert resolve_prompts("ptbxl_super") == shipped.prompts()  # a source passed as the first argument
    assert resolve_prompts(prompts=shipped.path) == shipped.prompts()
    subset = resolve_prompts(["MI", "NORM"], "ptbxl_super")
    assert list(subset) == ["MI", "NORM"] and subset["MI"] == list(shipped.labels["MI"].prompts)
    assert resolve_prompts(prompts={"AF": "atrial fibrillation", "SR": ["sinus rhythm", "normal sinus rhythm"]}) == {
        "AF": ["atrial fibrillation"],
        "SR": ["sinus rhythm", "normal sinus rhythm"],
    }
    assert list(resolve_prompts(("b", "a"))) == ["b", "a"]  # any iterable of names; order kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": []}, "label list is empty"),
        ({"labels": ["AF", "af"]}, "duplicate label"),
        ({"labels": ["AF", ""]}, "label #1 is empty"),
        ({"labels": ["AF", 3]}, "label #1 is int"),
        ({"prompts": {"AF": ""}}, "empty prompt"),
        ({"prompts": {"AF": []}}, "no prompts"),
        ({"prompts": {"AF": ["ok", None]}}, "non-string prompt"),
        ({"prompts": {"AF": 1.5}}, "must be a string or list"),
        ({"prompts": {"AF": "flutter", "AFL": " Flutter"}}, "shared by labels 'AF' and 'AFL'"),
        ({"labels": ["MI", "XYZ"], "prompts": "ptbxl_super"}, r"1 label.*'XYZ'"),
        (
            {"labels": ["norm", "Mi", "STTC"], "prompts": "ptbxl_super"},  # codes are case-sensitive: say so
            r"2 label\(s\) have no prompts: 'norm' \(did you mean 'NORM'\?\), 'Mi' \(did you mean 'MI'\?\);",
        ),
        ({"labels": ["NORN"], "prompts": "ptbxl_super"}, r"'NORN' \(did you mean 'NORM'\?\)"),
        ({"labels": "atrial fibrillation"}, r"not a shipped prompt set .* pass a list"),
        ({"prompts": 42}, "must be a prompt-set name"),
        ({}, "no labels and no prompts"),
    ],
)
def test_resolve_prompts_rejects_bad_input(kwargs, message):
    with pytest.raises(PromptError, match=message):
        resolve_prompts(**kwargs)


def test_ten_thousand_labels_resolve():
    """(Their speed through the CLI, knowledge on: benchmarks/bench_knowledge.py, the `labels` rows.)"""
    names = [f"finding number {i}" for i in range(10_000)]
    table = resolve_prompts(names)
    mapping = {f"L{i}": [f"statement {i} a", f"statement {i} b", f"statement {i} c"] for i in range(10_000)}
    table2 = resolve_prompts(prompts=mapping)
    assert len(table) == len(table2) == 10_000 and table2["L9999"][2] == "statement 9999 c"
    mapping["L9999"] = ["statement 0 b"]  # one clash hidden at the far end is still found
    with pytest.raises(PromptError, match="shared by labels 'L0' and 'L9999'"):
        resolve_prompts(prompts=mapping)


# ------------------------------------------------------------------------------------------ external file


def test_external_ckepe_reports_missing_codes(shared_data: Path, caplog):
    path = shared_data / "merl" / "CKEPE_prompt.json"
    raw = json.loads(path.read_text())
    everything = load_external_prompts(path)
    assert everything.missing == [] and set(everything.prompts) == set(raw)
    for name in SHIPPED:
        ours = load_prompt_set(name)
        ext = load_external_prompts(path, for_labels=name)
        assert ext.missing == [c for c in ours.codes if c not in raw]
        assert list(ext.prompts) == [c for c in ours.codes if c in raw]
        assert all(ext.prompts[c] == [raw[c].strip()] for c in ext.prompts)
        # Our text is our own: no prompt of ours is one of the published descriptions.
        published = {d.strip().casefold() for d in raw.values()}
        assert not any(p.casefold() in published for lp in ours.labels.values() for p in lp.prompts)
    assert load_external_prompts(path, for_labels="ptbxl_super").missing == []
    assert load_external_prompts(path, for_labels="cinc2021").missing == load_prompt_set("cinc2021").codes
    assert "BIGU" in load_external_prompts(path, for_labels="ptbxl_rhythm").suspect  # raw chat output
    with caplog.at_level("WARNING", logger="ecglang.scores.prompts"):
        ext = load_external_prompts(path, for_labels=["AFIB", "NOT_A_CODE"])
    assert ext.missing == ["NOT_A_CODE"] and "NOT_A_CODE" in caplog.text


def test_external_loader_rejects_bad_files(tmp_path: Path):
    for text, message in {
        "[]": "expected a JSON object",
        '{"A": 3}': "string or list of strings",
        '{"A": "  "}': "empty description",
        "{oops": "not valid JSON",
    }.items():
        path = tmp_path / "ext.json"
        path.write_text(text)
        with pytest.raises(PromptError, match=message):
            load_external_prompts(path)
    path.write_text('{"A": ["one", "two"], "B": "three"}')
    ext = load_external_prompts(path, for_labels=["B", "A"])
    assert ext.prompts == {"B": ["three"], "A": ["one", "two"]} and ext.missing == []

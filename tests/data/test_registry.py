"""The dataset registry: names and aliases, builder dispatch, split keys, code namespaces, MERL rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ecglang.data.registry import (
    DATASETS,
    LABEL_SETS,
    build_dataset,
    buildable_datasets,
    code_namespace,
    get_dataset,
    get_label_set,
    pretraining_sources,
)
from ecglang.data.snomed import CINC2021_EQUIVALENT_CODES, CINC2021_SCORED, load_snomed_mapping
from ecglang.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_aliases_resolve_to_one_spec() -> None:
    assert get_dataset("icbeb") is get_dataset("CPSC") is get_dataset("cpsc2018") is DATASETS["cpsc2018"]
    assert get_dataset("mimic").name == "mimic_ecg" and get_dataset("cinc2021").name == "physionet"
    with pytest.raises(ConfigError, match=r"unknown dataset 'ptb'.*icbeb"):
        get_dataset("ptb")
    # Every alias names exactly one dataset.
    names = [n for spec in DATASETS.values() for n in (spec.name, *spec.aliases)]
    assert len(names) == len(set(names))


def test_cli_and_pretraining_names_are_the_old_ones() -> None:
    assert buildable_datasets() == ["ptbxl", "mimic", "pairs", "physionet", "cpsc2018"]
    assert pretraining_sources() == ["ptbxl", "mimic_ecg", "pairs"]


def test_split_keys_namespaces_and_merl_rule() -> None:
    assert [DATASETS[n].split_key for n in ("ptbxl", "cpsc2018", "chapman", "mimic_ecg")] == [
        "ecg_id", "filename", "ecg_path", None,
    ]  # fmt: skip
    assert {n: s.merl_keep_samples for n, s in DATASETS.items() if s.merl_keep_samples} == {"cpsc2018": 2500}
    assert DATASETS["physionet"].code_namespace == "snomed"


@pytest.mark.parametrize(
    ("prompt_set", "namespace"),
    [
        ("ptbxl_super", "ptbxl"),
        ("ptbxl_rhythm", "ptbxl"),
        ("cpsc2018", "cpsc2018"),
        ("chapman", "chapman"),
        ("cinc2021", "snomed"),
        ("/some/where/icbeb_custom.json", "cpsc2018"),  # a user's file: by prefix, as before
        ("my_labels", None),
        (None, None),
    ],
)
def test_code_namespace_of_prompt_sets(prompt_set, namespace) -> None:
    assert code_namespace(prompt_set) == namespace


def test_every_bundled_prompt_set_has_a_namespace() -> None:
    bundled = sorted(p.stem for p in (ROOT / "prompts").glob("*.json"))
    assert bundled and all(code_namespace(name) is not None for name in bundled)
    assert sorted(p for spec in DATASETS.values() for p in spec.prompt_sets) == bundled


def test_label_sets_and_their_aliases() -> None:
    assert get_label_set("icbeb") == get_label_set("cpsc") == LABEL_SETS["cpsc2018"]
    assert get_label_set("ptbxl_sub_class").name == "ptbxl_sub"
    assert get_label_set(" PTBXL_SUPER ").task == "ptbxl_super_class"
    with pytest.raises(ConfigError, match="unknown label set"):
        get_label_set("ptbxl")


@pytest.mark.shared_data
def test_build_dispatch_is_the_builder(ptbxl_dir: Path) -> None:
    from ecglang.data.ptbxl import build_ptbxl

    ds, report = build_dataset("ptb-xl", ptbxl_dir, progress=False)
    ref, _ = build_ptbxl(ptbxl_dir, progress=False)
    assert ds["id"] == ref["id"] and report.source == "ptbxl"
    with pytest.raises(ConfigError, match="no builder"):
        build_dataset("chapman", ptbxl_dir)


def test_cinc_scored_table_agrees_with_the_bundled_mapping() -> None:
    mapping = load_snomed_mapping()
    assert len(CINC2021_SCORED) == 30
    for code, (abbreviation, name) in CINC2021_SCORED.items():
        assert mapping[code][0] == abbreviation and mapping[code][1].lower() == name.lower()
    assert all(a in CINC2021_SCORED and b in CINC2021_SCORED for a, b in CINC2021_EQUIVALENT_CODES)


def test_cli_data_starts_without_pandas() -> None:
    code = "import sys, ecglang.cli.data; print('pandas' in sys.modules, 'datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"]

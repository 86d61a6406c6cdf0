"""The dataset registry: one `DatasetSpec` per source, the one place that knows a dataset's names.

A spec says how to build the source's table (its builder in `ecglang.data.<source>` and the command-line
options of `ecglang data build`), which published label splits and prompt sets it has, which column keys its
records in those splits, which code namespace its labels use in prompts and the knowledge base, how MERL's
preprocessing treats it, and which column groups a patient's records (the held-out split of pretraining).

    get_dataset("icbeb").name            → "cpsc2018"   (aliases resolve here, and only here)
    build_dataset("ptbxl", root)         → BuildResult  (the builder of the spec)
    code_namespace("ptbxl_super")        → "ptbxl"      (a prompt set's code namespace)
    get_label_set("ptbxl_super_class")   → LabelSetSpec("ptbxl_super", prompt set, MERL task, dataset)
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecglang.errors import ConfigError

if TYPE_CHECKING:
    from ecglang.data.tables import BuildResult, PathLike

# MERL label-split tasks → file pattern under the split root (`{part}` is train/val/test).
LABEL_SPLIT_FILES: dict[str, str] = {
    "ptbxl_super_class": "ptbxl/super_class/ptbxl_super_class_{part}.csv",
    "ptbxl_sub_class": "ptbxl/sub_class/ptbxl_sub_class_{part}.csv",
    "ptbxl_form": "ptbxl/form/ptbxl_form_{part}.csv",
    "ptbxl_rhythm": "ptbxl/rhythm/ptbxl_rhythm_{part}.csv",
    "icbeb": "icbeb/icbeb_{part}.csv",
    "chapman": "chapman/chapman_{part}.csv",
}
SPLIT_PARTS = ("train", "val", "test")
# Record key of each task's files, matching the builders' `id` (CPSC record names for icbeb).
SPLIT_KEY_COLUMNS = {"icbeb": "filename", "chapman": "ecg_path"}  # PTB-XL tasks: ecg_id
# Integer 0/1 columns of split files and labels CSVs that are metadata, not labels (icbeb's `sex` is 0/1).
METADATA_COLUMNS = frozenset(
    {"ecg_id", "patient_id", "strat_fold", "fold", "age", "sex", "validation", "height", "weight", "nurse", "site"}
)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the package knows about one data source."""

    name: str  # canonical name
    description: str
    # "module:function" of its builder, imported when used (the CLI must start without pandas/datasets);
    # None: records are reached through the label splits only.
    builder: str | None = None
    aliases: tuple[str, ...] = ()
    command_name: str | None = None  # its name in `ecglang data build` (default: `name`)
    # `ecglang data build` option (argparse dest) → builder keyword; required ones must be given.
    cli_options: Mapping[str, str] = field(default_factory=dict)
    required_options: Mapping[str, str] = field(default_factory=dict)  # option → what to give it
    label_splits: tuple[str, ...] = ()  # MERL tasks of ecglang.data.splits
    prompt_sets: tuple[str, ...] = ()  # bundled prompt sets whose codes are this source's labels
    code_namespace: str | None = None  # knowledge-base namespace of its label codes
    merl_keep_samples: int | None = None  # MERL keeps only the first N samples (then zero-pads)
    patient_column: str | None = None  # builder column grouping one patient's records
    has_reports: bool = False  # free-text reports: usable for ECG–report pretraining

    @property
    def split_key(self) -> str | None:
        """The record-key column of this source's label-split files (None without splits)."""
        if not self.label_splits:
            return None
        return SPLIT_KEY_COLUMNS.get(self.label_splits[0], "ecg_id")

    def builder_function(self) -> Callable[..., BuildResult]:
        """The builder (imported on first use)."""
        if self.builder is None:
            raise ConfigError(f"dataset {self.name!r} has no builder; its records come with its label split")
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)

    def accepts(self, keyword: str) -> bool:
        """Whether the builder takes keyword argument `keyword` (e.g. `progress`)."""
        return keyword in inspect.signature(self.builder_function()).parameters

    def build(self, root: PathLike, **kwargs: Any) -> BuildResult:
        """Run this source's builder on `root` (keyword arguments go to the builder)."""
        return self.builder_function()(root, **kwargs)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="ptbxl",
            description="PTB-XL 1.0.3 (PhysioNet): 21,799 12-lead 10 s ECGs with SCP codes and reports",
            builder="ecglang.data.ptbxl:build_ptbxl",
            aliases=("ptb-xl", "ptb_xl"),
            cli_options={"sampling_rate": "sampling_rate", "folds": "folds"},
            label_splits=("ptbxl_super_class", "ptbxl_sub_class", "ptbxl_form", "ptbxl_rhythm"),
            prompt_sets=("ptbxl_super", "ptbxl_sub", "ptbxl_form", "ptbxl_rhythm"),
            code_namespace="ptbxl",
            patient_column="patient_id",
            has_reports=True,
        ),
        DatasetSpec(
            name="mimic_ecg",
            description="MIMIC-IV-ECG (PhysioNet): ~800,000 12-lead ECGs with machine reports",
            builder="ecglang.data.mimic:build_mimic_ecg",
            aliases=("mimic", "mimic-iv-ecg", "mimic_iv_ecg"),
            command_name="mimic",
            cli_options={"min_words": "min_words"},
            patient_column="subject_id",
            has_reports=True,
        ),
        DatasetSpec(
            name="pairs",
            description="your own ECG–report pairs: a CSV/parquet/JSONL file or HF dataset with path, report"
            "[, id, group, age, sex]",
            builder="ecglang.data.pairs:build_pairs",
            aliases=("own", "user_pairs"),
            patient_column="group",
            has_reports=True,
        ),
        DatasetSpec(
            name="physionet",
            description="a PhysioNet/CinC 2020/2021 folder of WFDB records with '# Dx:' SNOMED CT codes",
            builder="ecglang.data.cinc:build_physionet_folder",
            aliases=("cinc", "cinc2020", "cinc2021"),
            prompt_sets=("cinc2021",),
            code_namespace="snomed",
        ),
        DatasetSpec(
            name="cpsc2018",
            description="CPSC 2018 (MERL's icbeb): 6,877 12-lead ECGs, 9 classes",
            builder="ecglang.data.cpsc:build_cpsc2018",
            aliases=("icbeb", "cpsc"),
            cli_options={"reference": "reference_csv"},
            required_options={"reference": "REFERENCE.csv"},
            label_splits=("icbeb",),
            prompt_sets=("cpsc2018",),
            code_namespace="cpsc2018",
            merl_keep_samples=2500,
        ),
        DatasetSpec(
            name="chapman",
            description="Chapman-Shaoxing (PhysioNet): 10,646 12-lead ECGs with rhythm and condition acronyms",
            aliases=("chapman-shaoxing", "chapman_shaoxing"),
            label_splits=("chapman",),
            prompt_sets=("chapman",),
            code_namespace="chapman",
        ),
    )
}
_BY_ALIAS: dict[str, str] = {alias: spec.name for spec in DATASETS.values() for alias in (spec.name, *spec.aliases)}


def dataset_names(with_aliases: bool = False) -> list[str]:
    """Canonical dataset names (and their aliases)."""
    return sorted(_BY_ALIAS) if with_aliases else list(DATASETS)


def find_dataset(name: str) -> DatasetSpec | None:
    """The spec of a dataset name or alias (case-insensitive), or None."""
    key = _BY_ALIAS.get(str(name).strip().lower())
    return DATASETS[key] if key else None


def get_dataset(name: str) -> DatasetSpec:
    """The spec of a dataset name or alias; `ConfigError` listing the known names otherwise."""
    spec = find_dataset(name)
    if spec is None:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(dataset_names(with_aliases=True))}")
    return spec


def buildable_datasets() -> list[str]:
    """Names `ecglang data build` accepts (sources with a builder; `DatasetSpec.command_name`)."""
    return [spec.command_name or spec.name for spec in DATASETS.values() if spec.builder is not None]


def pretraining_sources() -> list[str]:
    """Names pretraining's `data.builder` accepts: sources whose records carry free-text reports."""
    return [name for name, spec in DATASETS.items() if spec.builder is not None and spec.has_reports]


def build_dataset(name: str, root: PathLike, **kwargs: Any) -> BuildResult:
    """Build the table of dataset `name` (or alias) from `root`."""
    return get_dataset(name).build(root, **kwargs)


def code_namespace(prompt_set: str | Path | None) -> str | None:
    """The knowledge-base code namespace of a prompt set, from its name or file path.

    A bundled prompt set is looked up exactly; another name (a user's file) by prefix: a file stem starting
    with a dataset's name or alias (`ptbxl_custom.json` → `ptbxl`, `icbeb_v2` → `cpsc2018`). None otherwise."""
    if not prompt_set:
        return None
    stem = Path(str(prompt_set)).stem.lower()
    for spec in DATASETS.values():
        if stem in spec.prompt_sets:
            return spec.code_namespace
    for spec in DATASETS.values():
        if spec.code_namespace and any(stem.startswith(prefix) for prefix in (spec.name, *spec.aliases)):
            return spec.code_namespace
    return None


@dataclass(frozen=True)
class LabelSetSpec:
    """A published evaluation label set: its prompt set, MERL split task and the dataset of its records."""

    name: str
    prompt_set: str
    task: str
    dataset: str


LABEL_SETS: dict[str, LabelSetSpec] = {
    ls.name: ls
    for ls in (
        LabelSetSpec("ptbxl_super", "ptbxl_super", "ptbxl_super_class", "ptbxl"),
        LabelSetSpec("ptbxl_sub", "ptbxl_sub", "ptbxl_sub_class", "ptbxl"),
        LabelSetSpec("ptbxl_form", "ptbxl_form", "ptbxl_form", "ptbxl"),
        LabelSetSpec("ptbxl_rhythm", "ptbxl_rhythm", "ptbxl_rhythm", "ptbxl"),
        LabelSetSpec("cpsc2018", "cpsc2018", "icbeb", "cpsc2018"),
        LabelSetSpec("chapman", "chapman", "chapman", "chapman"),
    )
}
# A label set is also reachable by its MERL task name and by its dataset's aliases (icbeb, cpsc).
LABEL_SET_ALIASES: dict[str, str] = {
    **{ls.task: ls.name for ls in LABEL_SETS.values() if ls.task != ls.name},
    **{alias: ls.name for ls in LABEL_SETS.values() if ls.name == ls.dataset for alias in DATASETS[ls.dataset].aliases},
}


def get_label_set(name: str) -> LabelSetSpec:
    """The spec of a published label set name or alias; `ConfigError` listing the known names otherwise."""
    key = str(name).strip().lower()
    key = LABEL_SET_ALIASES.get(key, key)
    if key not in LABEL_SETS:
        known = ", ".join([*LABEL_SETS, *LABEL_SET_ALIASES])
        raise ConfigError(f"unknown label set {name!r}; known: {known} (or use --labels-csv FILE --records DIR)")
    return LABEL_SETS[key]


def _check() -> None:
    """Every split task and prompt set named by a spec exists (a typo here would surface late)."""
    for spec in DATASETS.values():
        for task in spec.label_splits:
            if task not in LABEL_SPLIT_FILES:
                raise AssertionError(f"{spec.name}: unknown label split {task!r}")
    for ls in LABEL_SETS.values():
        if ls.task not in DATASETS[ls.dataset].label_splits:
            raise AssertionError(f"label set {ls.name}: task {ls.task!r} is not a split of {ls.dataset!r}")


_check()

__all__ = [
    "DATASETS",
    "LABEL_SETS",
    "LABEL_SET_ALIASES",
    "LABEL_SPLIT_FILES",
    "METADATA_COLUMNS",
    "SPLIT_KEY_COLUMNS",
    "SPLIT_PARTS",
    "DatasetSpec",
    "LabelSetSpec",
    "build_dataset",
    "buildable_datasets",
    "code_namespace",
    "dataset_names",
    "find_dataset",
    "get_dataset",
    "get_label_set",
    "pretraining_sources",
]

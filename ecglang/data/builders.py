"""Transitional re-exports of the dataset builders' old home (`ecglang.data.builders`).

The builders now live one module per source (`ptbxl`, `mimic`, `cinc`, `cpsc`), the label splits in `splits`,
the SNOMED table in `snomed`, and `registry` names them all. Import from those modules; this one goes once the
last caller (evaluation/datasets.py, tests/integration) has switched.
"""

from __future__ import annotations

from ecglang.data.cinc import build_physionet_folder
from ecglang.data.cpsc import CPSC2018_CLASSES, build_cpsc2018
from ecglang.data.mimic import build_mimic_ecg
from ecglang.data.ptbxl import build_ptbxl
from ecglang.data.snomed import load_snomed_mapping
from ecglang.data.splits import LABEL_SPLIT_FILES, SPLIT_PARTS, LabelSplit, load_label_split
from ecglang.data.tables import BuildFailure, BuildReport, BuildResult

__all__ = [
    "CPSC2018_CLASSES",
    "LABEL_SPLIT_FILES",
    "SPLIT_PARTS",
    "BuildFailure",
    "BuildReport",
    "BuildResult",
    "LabelSplit",
    "build_cpsc2018",
    "build_mimic_ecg",
    "build_physionet_folder",
    "build_ptbxl",
    "load_label_split",
    "load_snomed_mapping",
]

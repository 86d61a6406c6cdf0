"""SNOMED CT codes of ECG diagnoses: the bundled CinC 2020/2021 mapping (`resources/snomed_ct_ecg.csv`,
code → abbreviation and name) and the scored diagnoses of the PhysioNet/CinC Challenge 2021."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from ecglang.data.tables import PathLike, read_csv
from ecglang.errors import EcgReadError

#: The scored diagnoses of the PhysioNet/CinC Challenge 2021 (`dx_mapping_scored.csv`):
#: SNOMED CT code -> (abbreviation, challenge name). The challenge spells sinus tachycardia 427084000.
CINC2021_SCORED: Mapping[str, tuple[str, str]] = {
    "164889003": ("AF", "atrial fibrillation"),
    "164890007": ("AFL", "atrial flutter"),
    "6374002": ("BBB", "bundle branch block"),
    "426627000": ("Brady", "bradycardia"),
    "733534002": ("CLBBB", "complete left bundle branch block"),
    "713427006": ("CRBBB", "complete right bundle branch block"),
    "270492004": ("IAVB", "1st degree av block"),
    "713426002": ("IRBBB", "incomplete right bundle branch block"),
    "39732003": ("LAD", "left axis deviation"),
    "445118002": ("LAnFB", "left anterior fascicular block"),
    "164909002": ("LBBB", "left bundle branch block"),
    "251146004": ("LQRSV", "low qrs voltages"),
    "698252002": ("NSIVCB", "nonspecific intraventricular conduction disorder"),
    "426783006": ("NSR", "sinus rhythm"),
    "284470004": ("PAC", "premature atrial contraction"),
    "10370003": ("PR", "pacing rhythm"),
    "365413008": ("PRWP", "poor R wave Progression"),
    "427172004": ("PVC", "premature ventricular contractions"),
    "164947007": ("LPR", "prolonged pr interval"),
    "111975006": ("LQT", "prolonged qt interval"),
    "164917005": ("QAb", "qwave abnormal"),
    "47665007": ("RAD", "right axis deviation"),
    "59118001": ("RBBB", "right bundle branch block"),
    "427393009": ("SA", "sinus arrhythmia"),
    "426177001": ("SB", "sinus bradycardia"),
    "427084000": ("STach", "sinus tachycardia"),
    "63593006": ("SVPB", "supraventricular premature beats"),
    "164934002": ("TAb", "t wave abnormal"),
    "59931005": ("TInv", "t wave inversion"),
    "17338001": ("VPB", "ventricular premature beats"),
}

#: Pairs the challenge scores as the same diagnosis.
CINC2021_EQUIVALENT_CODES: tuple[tuple[str, str], ...] = (
    ("733534002", "164909002"),
    ("713427006", "59118001"),
    ("284470004", "63593006"),
    ("427172004", "17338001"),
)


def load_snomed_mapping(path: PathLike | None = None) -> dict[str, tuple[str, str]]:
    """SNOMED CT code → (abbreviation, name), from a CSV with columns `Dx, SNOMEDCTCode, Abbreviation`
    (the format of the CinC 2020/2021 `dx_mapping_*.csv`). Default: the bundled
    `resources/snomed_ct_ecg.csv` (the 133 CinC 2020/2021 scored and unscored classes, and 7 more CinC 2020
    codes that knowledge snippets carry)."""
    if path is None:
        text = resources.files("ecglang").joinpath("resources", "snomed_ct_ecg.csv").read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines()))
        where: PathLike = "ecglang/resources/snomed_ct_ecg.csv"
    else:
        where = Path(path)
        rows = read_csv(Path(path), "SNOMED CT mapping", dtype=str).to_dict("records")
    mapping: dict[str, tuple[str, str]] = {}
    for row in rows:
        try:
            mapping[str(row["SNOMEDCTCode"]).strip()] = (
                str(row["Abbreviation"]).strip(),
                str(row["Dx"]).strip(),
            )
        except KeyError as exc:
            raise EcgReadError(where, f"SNOMED mapping needs columns Dx, SNOMEDCTCode, Abbreviation ({exc})") from exc
    return mapping

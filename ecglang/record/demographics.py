"""Age and sex as model inputs: `demographic_codes` turns whatever a record or a table carries (`Ecg.metadata`
"age"/"sex" from a header, a builder table's columns) into the numbers a tower with `demographics: true` reads:
age in years (NaN when unknown) and sex 0 = unknown, 1 = male, 2 = female (the convention of
`ecglang.encoders.heads.DemographicEmbedding`). Unknown is never replaced by a made-up value."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from ecglang.errors import ConfigError
from ecglang.record.tables import read_record_table

SEX_UNKNOWN, SEX_MALE, SEX_FEMALE = 0, 1, 2
# PTB-XL stores the age of patients over 89 as 300 (privacy); read as 90, the least it can be.
PTBXL_OVER_89 = 300.0


def parse_age(text: str | None) -> float | None:
    """Age in years from header text ("63", "63 years"); None for "NaN", "Unknown", "?" or outside 0–130."""
    if text is None:
        return None
    # The whole number, not its first digits: "1e308" or "63.5.1" is not an age ("1e308" read as 1 year).
    m = re.match(r"^\s*(\d+(?:\.\d+)?)(?![\d.eE])", str(text))
    if not m:
        return None  # "NaN", "Unknown", "?", ...
    age = float(m.group(1))
    return age if 0 <= age <= 130 else None


def parse_sex(text: str | None) -> str | None:
    """Header text ("m", "Male", "woman", ...) as "M" or "F"; None otherwise."""
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("m", "male", "man"):
        return "M"
    if t in ("f", "female", "woman"):
        return "F"
    return None


def age_years(value: Any) -> float:
    """Age in years, NaN when unknown (None, NaN, text without a number, outside 0–130 except PTB-XL's 300)."""
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        age = float(value)
        if age == PTBXL_OVER_89:
            return 90.0
        return age if math.isfinite(age) and 0.0 <= age <= 130.0 else math.nan
    parsed = parse_age(str(value))
    return math.nan if parsed is None else float(parsed)


def sex_code(value: Any) -> int:
    """1 male, 2 female, 0 unknown, from "M"/"F"/"male"/"Female"/... (anything else is unknown)."""
    if value is None or isinstance(value, (bool, int, float)):
        return SEX_UNKNOWN  # numeric codes differ between datasets (PTB-XL 0 = male): not guessed here
    return {"M": SEX_MALE, "F": SEX_FEMALE}.get(parse_sex(str(value)) or "", SEX_UNKNOWN)


def ptbxl_sex(value: Any) -> str | None:
    """PTB-XL's `sex` column (0 = male, 1 = female; as read: 0, 1.0, "0", ...) as "M"/"F"; None otherwise."""
    try:
        code = float(value)
    except (TypeError, ValueError):
        return None
    return {0: "M", 1: "F"}.get(int(code)) if math.isfinite(code) else None


def demographic_codes(age: Any, sex: Any) -> tuple[float, int]:
    """`(age_years(age), sex_code(sex))`."""
    return age_years(age), sex_code(sex)


def demographics_metadata(age: float, sex: int) -> dict[str, Any]:
    """The `Ecg.metadata` entries (`{"age": years or None, "sex": "M"/"F"/None}`) of age and sex codes: the
    inverse of `metadata_demographics`, for passing a table's demographics along with its records."""
    known_age = age is not None and math.isfinite(float(age))
    return {"age": float(age) if known_age else None, "sex": {SEX_MALE: "M", SEX_FEMALE: "F"}.get(int(sex))}


def metadata_demographics(metadata: Mapping[str, Any]) -> tuple[float, int]:
    """Age and sex codes of an `Ecg.metadata` (keys "age" and "sex", as the readers fill them)."""
    return demographic_codes(metadata.get("age"), metadata.get("sex"))


def read_demographics_table(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Record id → `{"age", "sex"}` (`Ecg.metadata` entries) from a CSV, for records whose headers carry no
    age or sex (PTB-XL's). PTB-XL's `ptbxl_database.csv` is read as it is (ids: the file stems of `filename_hr`
    and `filename_lr`, and `ecg_id`; its sex 0 = male, 1 = female); any other CSV needs an `id` column (the
    record's id: its file stem) or a `path` column, and `age` and/or `sex` columns, sex written as M/F or
    male/female (numbers are refused: datasets code them differently)."""
    table = read_record_table(path, "demographics table", ("age", "sex"))
    out: dict[str, dict[str, Any]] = {}
    for row in table.rows:
        sex_text = row.cells.get("sex", "")
        if table.ptbxl:
            sex = ptbxl_sex(sex_text)
        elif re.fullmatch(r"-?\d+(\.\d*)?", sex_text):
            raise ConfigError(
                f"{table.path}, line {row.line}: sex {sex_text!r} is a number; write M/F (codes differ by dataset)"
            )
        else:
            sex = parse_sex(sex_text) if sex_text else None
        age = _table_age(row.cells.get("age"), f"{table.path}, line {row.line}")
        for key in row.ids:
            entry, earlier = {"age": age, "sex": sex}, out.get(key)
            if earlier is not None and earlier != entry:  # the last row won without a word
                raise ConfigError(
                    f"{table.path}, line {row.line}: record {key!r} is listed again with other age/sex "
                    f"({earlier} before, {entry} here); keep one row per record"
                )
            out[key] = entry  # one dict per id: no shared entries
    return out


UNKNOWN_AGE = frozenset({"", "nan", "na", "n/a", "none", "null", "unknown", "?"})


def _table_age(text: str | None, where: str) -> float | None:
    """A table's age cell in years (None: empty or written as unknown); `ConfigError` naming `where` for anything
    else that is not an age ("abc", 200, 1e308 were read as unknown without a word)."""
    text = (text or "").strip()
    if text.lower() in UNKNOWN_AGE:
        return None
    try:
        age = age_years(float(text))  # numbers as numbers: PTB-XL's 300 (over 89) reads as 90
    except ValueError:
        age = age_years(text)
    if math.isnan(age):
        raise ConfigError(f"{where}: age {text!r:.40} is not an age in years (0-130); leave it empty when unknown")
    return age


__all__ = [
    "PTBXL_OVER_89",
    "SEX_FEMALE",
    "SEX_MALE",
    "SEX_UNKNOWN",
    "age_years",
    "demographic_codes",
    "demographics_metadata",
    "metadata_demographics",
    "parse_age",
    "parse_sex",
    "ptbxl_sex",
    "read_demographics_table",
    "sex_code",
]

"""Scale audit 21, finding 3: `build_physionet_folder` read every header with `wfdb.rdheader` (~9 ms CPU each: 2.3 h
of serial work for 800,000 records, and again at every start of a run with `data.unpaired_root`). It now reads the
headers that the package's own parser takes (`record.wfdb_reader.parse_wfdb_header`, as the cache's fast reader
does) and leaves the others to wfdb, with the same table: each row's values and each failure's reason are those
that `wfdb.rdheader` gives, on the real records of ../shared/data and on hostile and randomly edited headers."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wfdb

from ecglang.data.cinc import build_physionet_folder
from ecglang.record.io import parse_header_comments

CINC_RECORD = Path("formats") / "cinc2021" / "E07500"


def _as_built(value: Any) -> Any:
    """A reference value as the table stores it (float32 columns)."""
    return None if value is None else float(np.float32(value))


def _wfdb_reading(record: Path) -> dict[str, Any] | str:
    """What the builder made of a header when it read it with `wfdb.rdheader`: the row's header columns, or the
    failure's reason."""
    try:
        header = wfdb.rdheader(str(record))
    except Exception as exc:  # the builder's own catch-all, whose reason is kept
        return f"unreadable header: {type(exc).__name__}: {exc}"
    meta = parse_header_comments(header.comments or [])
    return {
        "fs": _as_built(float(header.fs)), "n_samples": int(header.sig_len or 0), "n_leads": int(header.n_sig or 0),
        "age": _as_built(meta.get("age")), "sex": meta.get("sex"), "snomed": meta.get("snomed") or [],
    }  # fmt: skip


def _built(folder: Path) -> dict[str, dict[str, Any] | str]:
    """id → the row's header columns, or the failure's reason, of `build_physionet_folder(folder)`."""
    ds, report = build_physionet_folder(folder, progress=False)
    out: dict[str, dict[str, Any] | str] = {f.record_id: f.reason for f in report.failures}
    for row in ds:
        assert row["id"] not in out
        out[row["id"]] = {key: row[key] for key in ("fs", "n_samples", "n_leads", "age", "sex", "snomed")}
    return out


def _reference(folder: Path) -> dict[str, dict[str, Any] | str]:
    return {hea.stem: _wfdb_reading(hea.with_suffix("")) for hea in sorted(folder.rglob("*.hea"))}


def _copy_real(shared_data: Path, folder: Path, limit: int = 40) -> int:
    """Real headers (CinC 2021, a PTB-XL sample at 500 and 100 Hz, PTB, MIT-BIH) with their signal files."""
    heads = [*sorted((shared_data / "formats" / "cinc2021").glob("*.hea")),
             *sorted((shared_data / "ptbxl-sample").rglob("*.hea"))[::max(1, 706 // limit)],
             *(shared_data / "ptbdb").glob("*.hea"), *(shared_data / "mitbih").glob("*.hea")]  # fmt: skip
    for hea in heads:
        for file in hea.parent.glob(hea.stem + ".*"):
            shutil.copy(file, folder / file.name)
    return len(heads)


@pytest.mark.shared_data
def test_real_headers_are_read_without_wfdb_with_the_same_table(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: every row was a failure "unreadable header: RuntimeError: wfdb.rdheader called" (the builder read
    each header with wfdb)."""
    n = _copy_real(shared_data, tmp_path)
    expected = _reference(tmp_path)
    assert len(expected) == n >= 45 and all(isinstance(v, dict) for v in expected.values())

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("wfdb.rdheader called")

    monkeypatch.setattr(wfdb, "rdheader", refuse)
    assert _built(tmp_path) == expected


def _write(folder: Path, name: str, text: str | bytes) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    (folder / f"{name}.hea").write_bytes(data)
    (folder / f"{name}.mat").write_bytes(b"\0" * 64)  # never read by the table builder; it must exist


def _cinc_lines(shared_data: Path, name: str) -> list[str]:
    lines = (shared_data / CINC_RECORD).with_suffix(".hea").read_text(encoding="ascii").splitlines()
    return [line.replace("E07500", name) for line in lines]


def _hostile(shared_data: Path, name: str) -> dict[str, str | bytes]:
    """Headers that the strict parser refuses or that wfdb reads in its own way (comments above all)."""

    def cinc(record_line: str | None = None, comments: list[str] | None = None, sep: str = "\n") -> str:
        lines = _cinc_lines(shared_data, name)
        if record_line is not None:
            lines[0] = record_line.format(name=name)
        if comments is not None:
            lines = lines[:13] + comments
        return sep.join(lines) + sep

    return {
        "plain": cinc(),
        "crlf": cinc(sep="\r\n"), "cr": cinc(sep="\r"), "form_feed": cinc(sep="\x0c"),
        "hashes": cinc(comments=["## Age: 50 ##", "#", "#   ", "#Sex: Female#", "# Dx: 164889003 #"]),
        "comment_tabs": cinc(comments=["#\tAge:\t61\t", "# \tSex: M \t", "#Dx:426783006"]),
        "comment_controls": cinc(comments=["# Age: 5\x1c0", "# Sex:\x1dMale", "# Dx: 4267\x1e83006"]),
        "utf8_comment": cinc(comments=["# Age: 70", "# Sex: Féminin", "# Dx: 164889003,42\u20286783006"]),
        "latin1_comment": cinc(comments=["# Age: 7\xb50", "# Sex: F\xe9male", "# Dx: 164889003"]).encode("latin-1"),
        "comment_first": "# Age: 40\n# Dx: 164889003\n" + cinc(comments=[]),
        "fs5": cinc("{name} 12 5 5000"), "fs_counter": cinc("{name} 12 500(3) 5000"),
        "fs_counter_freq": cinc("{name} 12 500/1000(0) 5000"), "fs_rounded": cinc("{name} 12 500.000000001 5000"),
        "fs_plus": cinc("{name} 12 +500 5000"), "fs_exp": cinc("{name} 12 50e1 5000"),
        "fs_fraction": cinc("{name} 12 499.5 5000"), "no_fs": cinc("{name} 12"), "no_count": cinc("{name} 12 500"),
        "count_zero": cinc("{name} 12 500 0"), "huge_count": cinc("{name} 12 500 1000000000"),
        "garbled": cinc("{name} x 500 5000"), "extra_line": cinc("{name} 11 500 5000"),
        "missing_line": cinc("{name} 13 500 5000"), "no_signals": f"{name} 0 500 5000\n",
        "time_date": cinc("{name} 12 500 5000 10:00:00 31/02/2180"), "time": cinc("{name} 12 500 5000 10:00:00"),
        "empty": "", "comments_only": "# Age: 50\n# Dx: 164889003\n",
        "multi_segment": f"{name}/2 12 500 10000\nseg_a 5000\nseg_b 5000\n# Age: 30\n# Dx: 164889003\n",
        "binary": bytes(random.Random(7).randrange(256) for _ in range(300)),
        "too_large": cinc(comments=["# Dx: 164889003", *["# " + "x" * 1000] * 1100]),
        "bad_format": cinc().replace("16x1+24", "99", 1), "bad_gain": cinc().replace("1000.0(0)/mV", "1E3(0)/mV", 1),
        "name_other": cinc("other 12 500 5000"),
    }  # fmt: skip


def _write_hostile(shared_data: Path, folder: Path) -> None:
    for case in _hostile(shared_data, "r"):
        _write(folder, case, _hostile(shared_data, case)[case])


@pytest.mark.shared_data
def test_hostile_headers_give_the_table_that_wfdb_gave(shared_data: Path, tmp_path: Path) -> None:
    _write_hostile(shared_data, tmp_path)
    expected = _reference(tmp_path)
    assert expected["fs5"]["fs"] == 5.0 and expected["hashes"]["age"] == 50.0  # type: ignore[index]
    assert isinstance(expected["garbled"], str) and isinstance(expected["multi_segment"], dict)
    assert _built(tmp_path) == expected


@pytest.mark.shared_data
def test_randomly_edited_headers_give_the_table_that_wfdb_gave(shared_data: Path, tmp_path: Path) -> None:
    """Seeded character edits of a real CinC header, comments included (digits, signs, '#', tabs, line breaks,
    non-ASCII characters)."""
    lines = _cinc_lines(shared_data, "r")
    alphabet = [*"0123456789.+-eE_()/# \t:xmuV~,*\n\r", "\u00b5", "\u00a0", "\u2028", "\x1c", "\u0665", "nan", "1_0"]
    rng = random.Random(20240621)
    for k in range(150):
        edited = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.choice([0, 0, rng.randrange(1, 13), rng.randrange(13, len(edited))])
            at, char = rng.randrange(len(edited[i]) + 1), rng.choice(alphabet)
            edit = rng.choice(["insert", "insert", "replace", "delete"])
            cut = 0 if edit == "insert" else 1
            edited[i] = edited[i][:at] + ("" if edit == "delete" else char) + edited[i][at + cut :]
        _write(tmp_path, f"e{k:03d}", "\n".join(edited) + "\n")
    expected = _reference(tmp_path)
    assert 20 < sum(isinstance(v, dict) for v in expected.values()) < 150  # both kinds are tried
    assert _built(tmp_path) == expected


@pytest.mark.shared_data
def test_plain_headers_skip_wfdb(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the headers that the strict parser refuses (or a multi-segment one) are read by wfdb."""
    _write_hostile(shared_data, tmp_path)
    calls: list[str] = []
    rdheader = wfdb.rdheader

    def counted(record_name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(record_name).name)
        return rdheader(record_name, *args, **kwargs)

    monkeypatch.setattr(wfdb, "rdheader", counted)
    build_physionet_folder(tmp_path, progress=False)
    for fast in ("plain", "crlf", "hashes", "comment_tabs", "fs_counter_freq", "no_count", "huge_count"):
        assert fast not in calls, fast
    for slow in ("fs5", "utf8_comment", "latin1_comment", "multi_segment", "too_large", "garbled"):
        assert slow in calls, slow
    from ecglang.data.fastread import wfdb_header_fields  # here: the other tests run on the code before the fix

    assert wfdb_header_fields(tmp_path / "plain").comments == ["Age: 78", "Sex: Male", "Dx: 67741000119109,426177001",
                                                                "Rx: Unknown", "Hx: Unknown"]  # fmt: skip

"""`ecglang zero-shot` and `knowledge show` lines that misled a first-time user (audit 20, findings 2, 7, 12).

- A record shorter than the model's window was zero-padded and scored with no word: a stderr note now names it.
- `--labels labels.txt` (an existing file) scored the file's name as a label, exit 0: a usage error now.
- Duplicate labels are a command line wrong by itself: exit 2, as the README says, not 1.
- After `--knowledge DIR`, "`ecglang knowledge show ID` prints their text" sent the user to the bundled base,
  whose error did not say which base it searched: the hint names `--kb DIR`, and so does the error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ecglang.cli.main import main as cli
from ecglang.record.io import load_ecg

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def recs(ptbxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 10 s PTB-XL record and its first 3 s as an NPZ export, in one folder."""
    folder = tmp_path_factory.mktemp("recs")
    for ext in (".hea", ".dat"):
        (folder / f"00001_hr{ext}").write_bytes((ptbxl_dir / "records500" / "00000" / f"00001_hr{ext}").read_bytes())
    ecg = load_ecg(folder / "00001_hr.hea")
    np.savez(folder / "strip_3s.npz", signal=ecg.signal[:, : int(3 * ecg.fs)], fs=ecg.fs, leads=np.array(ecg.leads))
    return folder


def _argv(model_dir: Path, *paths: Path, knowledge: str = "off") -> list[str]:
    return ["zero-shot", *map(str, paths), "--model", str(model_dir), "--knowledge", knowledge, "--no-progress"]


def test_a_short_record_gets_a_note(model_dir: Path, recs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.csv"
    argv = [*_argv(model_dir, recs), "--labels", "sinus tachycardia", "sinus bradycardia", "--quiet"]
    assert cli([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    note = next(line for line in err.splitlines() if "shorter than" in line)
    assert note.startswith("note: 1 record(s) shorter than 10 s") and note.endswith(": strip_3s")
    assert "zero-padded to 10 s" in note and "rhythm and rate labels are unreliable" in note
    assert "longer than" not in err
    assert cli([*_argv(model_dir, recs / "00001_hr.hea"), "--labels", "sinus rhythm", "--quiet"]) == 0
    assert "shorter than" not in capsys.readouterr().err  # a 10 s record fills the window


@pytest.mark.parametrize("name", ["labels.txt", "prompts.csv", "mylabels"])
def test_a_labels_file_given_to_labels_is_a_usage_error(
    name: str, recs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(name).write_text("sinus tachycardia\natrial fibrillation\n", encoding="utf-8")
    # refused before the model loads: a model that does not exist is never reached
    argv = [*_argv(tmp_path / "no-model", recs), "--labels", "sinus rhythm", name]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecglang zero-shot: error:") and repr(name) in err
    assert "--prompt-set FILE.json" in err and '"prompts"' in err


def test_a_records_folder_swallowed_by_labels_is_a_usage_error(recs: Path, tmp_path: Path, capsys) -> None:
    argv = ["zero-shot", str(recs / "00001_hr.hea"), "--model", str(tmp_path / "no-model"), "--labels", "af", str(recs)]
    assert cli(argv) == 2
    assert "put the record paths before --labels" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["prompts.csv", "ptbxl_superclass"])
def test_a_prompt_set_that_names_no_set_is_a_usage_error(recs: Path, tmp_path: Path, capsys, value: str) -> None:
    # Refused before the model loads (the model here does not exist): it exited 1 after loading it.
    argv = [*_argv(tmp_path / "no-model", recs), "--prompt-set", value]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecglang zero-shot: error:") and "not a shipped prompt set (" in err


def test_duplicate_labels_are_a_usage_error(recs: Path, tmp_path: Path, capsys) -> None:
    argv = [*_argv(tmp_path / "no-model", recs), "--labels", "sinus tachycardia", "Sinus Tachycardia "]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "duplicate label 'Sinus Tachycardia ' (same as 'sinus tachycardia')" in err


def test_the_knowledge_show_hint_names_a_users_base(
    model_dir: Path, recs: Path, small_kb: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = [*_argv(model_dir, recs / "00001_hr.hea", knowledge=str(small_kb)), "--labels", "atrial fibrillation"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert f"`ecglang knowledge show ID --kb {small_kb}` prints their text" in out
    assert cli([*argv[:-2], "--knowledge", "default", "--labels", "atrial fibrillation"]) == 0
    assert "`ecglang knowledge show ID` prints their text" in capsys.readouterr().out  # the bundled base: no --kb


def test_knowledge_show_error_names_the_base_it_searched(small_kb: Path, capsys: pytest.CaptureFixture) -> None:
    # the bundled base has no snippet "pvc" of the user's base: the error says where it looked, and what to do
    assert cli(["knowledge", "show", "pvc"]) == 1
    err = capsys.readouterr().err
    assert "in the bundled knowledge base" in err and "--kb" in err
    assert cli(["knowledge", "show", "nope", "--kb", str(small_kb)]) == 1
    assert f"in the knowledge base {small_kb}" in capsys.readouterr().err
    assert cli(["knowledge", "show", "pvc", "--kb", str(small_kb)]) == 0

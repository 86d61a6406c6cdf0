"""What the command line alone shows to be wrong is a usage error: exit status 2, the command's usage and one
`error:` line on stderr, nothing on stdout, before any model or index loads (docs/RELIABILITY.md). Flags that
exclude each other used to exit 1, the status of failed records and runtime errors, and `ecglang knowledge` /
`ecglang prototypes` without an action printed their help on stdout with status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ecglang
from ecglang.cli.main import build_parser, main
from ecglang.errors import ConfigError, EcgLangError, UsageError


def test_a_usage_error_is_a_public_config_error() -> None:
    # callers that catch ConfigError (a config validated in Python) still catch it
    assert issubclass(UsageError, ConfigError) and issubclass(UsageError, EcgLangError)
    assert ecglang.UsageError is UsageError and "UsageError" in ecglang.__all__


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["knowledge", "search", "LBBB", "--code", "foo"], "knowledge search", "--code must be NAMESPACE:CODE"),
        (["knowledge", "search", "LBBB", "--code", "ptbxl:CLBBB", "--prompt-set", "ptbxl_super"],
         "knowledge search", "--code and --prompt-set"),
        (["evaluate", "--model", "m"], "evaluate", "nothing to evaluate"),
        (["evaluate", "--model", "m", "--labels-csv", "labels.csv"], "evaluate", "--labels-csv and --records go"),
        (["evaluate", "--model", "m", "--label-sets", "ptbxl_super"], "evaluate", "--label-sets needs --split-root"),
        (["evaluate", "--model", "m", "--labels-csv", "l.csv", "--records", "r", "--folds", "8"], "evaluate",
         "--folds applies only"),
    ],
)  # fmt: skip
def test_flags_that_exclude_each_other_are_usage_errors(
    argv: list[str], command: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"usage: ecglang {command} ") and f"\necglang {command}: error: {message}" in err, err
    assert "Traceback" not in err and not list(tmp_path.iterdir())  # nothing written (no eval_results/)


def test_a_knowledge_base_without_the_codes_namespace_is_not_a_usage_error(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--code ptbx:CLBBB` is well formed; that no snippet carries a `ptbx` code depends on the knowledge base
    (`--kb`), so it stays a runtime error (exit 1), found once the index is loaded."""
    monkeypatch.setenv("ECGLANG_CACHE", str(tmp_path / "cache"))
    args = build_parser().parse_args(["knowledge", "search", "LBBB", "--code", "ptbx:CLBBB", "--kb", str(small_kb),
                                      "--no-progress"])  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        args.func(args)
    assert not isinstance(raised.value, UsageError) and "namespace 'ptbx'" in str(raised.value)
    assert "namespaces of this knowledge base: snomed)" in str(raised.value)  # the real base's, read from --kb


@pytest.mark.parametrize(
    ("argv", "placeholder"), [([], "COMMAND"), (["knowledge"], "ACTION"), (["prototypes"], "ACTION")]
)
def test_a_command_without_its_action_prints_help_on_stderr(argv: list[str], placeholder: str, capsys) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"usage: {' '.join(['ecglang', *argv])} [-h]") and placeholder in err, err


@pytest.mark.parametrize("argv", [["--help"], ["knowledge", "--help"], ["prototypes", "--help"]])
def test_help_asked_for_goes_to_stdout(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: ecglang") and err == ""


def test_json_of_knowledge_search_and_show_is_json_lines(capsys) -> None:
    """`--json` prints one object per query (per snippet for `show`), one per line: JSON Lines. The help said
    "print JSON", and two queries are not one JSON document; the help and the README now say JSON Lines."""
    for action in ("search", "show"):
        with pytest.raises(SystemExit):
            main(["knowledge", action, "--help"])
        shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
        assert "--json print JSON Lines" in shown and "one per line" in shown, shown
    assert main(["knowledge", "show", "clbbb-criteria", "crbbb-criteria", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["clbbb-criteria", "crbbb-criteria"]


def test_knowledge_build_and_search_take_no_progress(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`knowledge build` drew sentence-transformers' bar into a redirected stderr with no way to turn it off;
    `--no-progress` turns it off for the build and for the build that `search` makes of an uncached base. A real
    two-snippet base; each command with a cache of its own, so that `search` builds."""
    out = tmp_path / "idx"
    for i, (argv, bar) in enumerate([(["build", "--out", str(out / "a")], True),
                                     (["build", "--out", str(out / "b"), "--no-progress"], False),
                                     (["search", "fibrillation"], True),
                                     (["search", "fibrillation", "--no-progress"], False)]):  # fmt: skip
        monkeypatch.setenv("ECGLANG_CACHE", str(tmp_path / f"cache{i}"))
        assert main(["knowledge", *argv, "--kb", str(small_kb)]) == 0, argv
        stdout, err = capsys.readouterr()
        assert ("Batches" in err) == bar, (argv, err)
        assert ("built flat index of 2 snippets" if argv[0] == "build" else "1. af  score") in stdout, stdout
    assert (out / "a").is_dir() and (out / "b").is_dir()

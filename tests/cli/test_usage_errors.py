"""What the command line alone shows to be wrong is a usage error: exit status 2, the command's usage and one
`error:` line on stderr, nothing on stdout, before any model or index loads (docs/RELIABILITY.md). Flags that
exclude each other used to exit 1, the status of failed records and runtime errors, and `ecglang knowledge` /
`ecglang prototypes` without an action printed their help on stdout with status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ecglang
import ecglang.cli.knowledge as knowledge_cli
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


def test_a_knowledge_base_without_the_codes_namespace_is_not_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--code ptbx:CLBBB` is well formed; that no snippet carries a `ptbx` code depends on the knowledge base
    (`--kb`), so it stays a runtime error (exit 1), found once the index is loaded."""

    class Index:  # the index's knowledge base is all the check reads
        kb = type("Kb", (), {"namespaces": ["ptbxl", "snomed"]})()

    args = build_parser().parse_args(["knowledge", "search", "LBBB", "--code", "ptbx:CLBBB"])
    monkeypatch.setattr(knowledge_cli.KnowledgeIndex, "default", classmethod(lambda cls, **kwargs: Index()))
    with pytest.raises(ConfigError) as raised:
        args.func(args)
    assert not isinstance(raised.value, UsageError) and "namespace 'ptbx'" in str(raised.value)


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


def test_knowledge_build_and_search_take_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`knowledge build` drew sentence-transformers' bar into a redirected stderr with no way to turn it off;
    `--no-progress` reaches the index build (and the build that `search` makes of an uncached base)."""
    seen: list[tuple[str, bool]] = []

    class Stop(Exception):
        pass

    def build(cls, kb, **kwargs):
        seen.append(("build", kwargs["show_progress"]))
        raise Stop

    def default(cls, **kwargs):
        seen.append(("default", kwargs["show_progress"]))
        raise Stop

    monkeypatch.setattr(knowledge_cli.KnowledgeIndex, "build", classmethod(build))
    monkeypatch.setattr(knowledge_cli.KnowledgeIndex, "default", classmethod(default))
    out = str(tmp_path / "idx")
    parser = build_parser()
    for argv in (["build", "--out", out], ["build", "--out", out, "--no-progress"],
                 ["search", "LBBB"], ["search", "LBBB", "--no-progress"]):  # fmt: skip
        args = parser.parse_args(["knowledge", *argv])
        with pytest.raises(Stop):
            args.func(args)
    assert seen == [("build", True), ("build", False), ("default", True), ("default", False)]

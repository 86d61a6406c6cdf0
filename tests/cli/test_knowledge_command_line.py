"""`ecglang knowledge` command lines that did something other than what they said (a docs audit's findings).

- `knowledge build --index ivf|hnsw` without `--out` wrote the index into the user cache, where `search` and
  zero-shot read only a flat index: the build was never used. It is a usage error now, naming the way to use it.
- `--kb` takes several values, so `knowledge show --kb FILE ID` gave ID to `--kb` and argparse said only that an
  ID was required. The error now says where the ids went.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecglang.cli.main import main


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_an_ivf_or_hnsw_build_without_out_is_a_usage_error(
    index_type: str, small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ECGLANG_CACHE", str(cache))
    assert main(["knowledge", "build", "--kb", str(small_kb), "--index", index_type]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ecglang knowledge build: error:")
    assert f"--index {index_type} needs --out DIR" in err and "search --index DIR" in err
    assert not cache.exists()  # nothing was embedded or written
    # with --out it builds, and search reads it from there
    out = tmp_path / "index"
    assert main(["knowledge", "build", "--kb", str(small_kb), "--index", index_type, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["knowledge", "search", "atrial fibrillation", "--index", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "af"


def test_a_flat_build_still_defaults_to_the_cache_search_reads(
    small_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ECGLANG_CACHE", str(cache))
    assert main(["knowledge", "build", "--kb", str(small_kb)]) == 0
    assert len(list((cache / "knowledge").glob("*-flat/meta.json"))) == 1
    capsys.readouterr()


@pytest.mark.parametrize(
    ("argv", "name"),
    [(["knowledge", "show", "--kb", "{kb}", "af"], "ID"), (["knowledge", "search", "--kb", "{kb}", "AF"], "QUERY")],
)
def test_kb_before_the_positionals_says_where_they_went(
    argv: list[str], name: str, small_kb: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = [a.format(kb=small_kb) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"no {name} given: --kb takes several values and took '{argv[-1]}'" in err
    # after the positionals, or with nothing given at all
    assert main([*argv[:2], argv[-1], "--kb", str(small_kb)]) == 0
    capsys.readouterr()
    assert main(argv[:2]) == 2 and f"give at least one {name}" in capsys.readouterr().err

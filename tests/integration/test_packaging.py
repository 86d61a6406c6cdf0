"""What pip installs: declared dependencies cover the imports, their floors are versions the code runs with, and
the wheel carries its typing marker, its metadata and a small bundled checkpoint. (The wheel's data folders and a
zero-shot run from another folder: test_wheel.py.)"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import ecglang

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO = Path(__file__).resolve().parents[2]
MAX_WHEEL_BYTES = 4_000_000  # 2.06 MB today: the bundled checkpoint must stay small


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def _third_party_imports() -> dict[str, str]:
    """Top-level module imported -> first file that imports it (absolute imports outside the stdlib)."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "ecglang").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "ecglang" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _requirements()
    owners = packages_distributions()  # module -> distributions installed in this environment
    missing = []
    for module, where in _third_party_imports().items():
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        assert dists, f"{module} (imported in {where}) is not installed here: cannot check it"
        if not dists & declared.keys():
            missing.append(f"{module} ({where}; distribution {sorted(dists)})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize(
    ("name", "runs", "fails"),
    [
        ("torch", "2.13.0", None),  # the project's CPU wheel
        ("transformers", "5.3.0", "5.2.0"),  # 5.2.0 and 4.44.2: `ecglang pretrain` KeyError 'sentence_embeds'
        ("sentence-transformers", "5.2.0", "5.1.0"),  # 5.1.0 requires transformers < 5
    ],
)
def test_dependency_floors_admit_what_runs_and_exclude_what_does_not(name: str, runs: str, fails: str | None) -> None:
    spec = _requirements()[name].specifier
    assert spec.contains(runs), f"{name} {spec} excludes {runs}, which the code runs with"
    if fails is not None:
        assert not spec.contains(fails), f"{name} {spec} admits {fails}, which the code does not run with"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps", "--no-build-isolation",
         "-q", str(REPO), "-w", str(out)],
        capture_output=True, text=True, timeout=300, cwd=out,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (path,) = out.glob("ecglang-*.whl")
    return path


def test_wheel_is_typed_carries_its_version_and_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(meta_name).decode("utf-8")
    assert "ecglang/py.typed" in names  # PEP 561: type checkers read the package's annotations
    headers = dict(line.split(": ", 1) for line in meta.split("\n\n", 1)[0].splitlines() if ": " in line)
    assert headers["Version"] == ecglang.__version__
    assert headers["License-Expression"] == "Apache-2.0"
    assert "Classifier: Typing :: Typed" in meta
    assert "Requires-Dist: pyarrow" in meta


def test_wheel_stays_small(wheel: Path) -> None:
    size = wheel.stat().st_size
    assert size < MAX_WHEEL_BYTES, f"wheel is {size / 1e6:.2f} MB (limit {MAX_WHEEL_BYTES / 1e6:.1f} MB)"
    with zipfile.ZipFile(wheel) as z:
        weights = z.getinfo("ecglang/bundled/checkpoints/ecglang-mini/model.safetensors").file_size
    assert weights < 3_000_000, f"bundled checkpoint weights are {weights / 1e6:.2f} MB"

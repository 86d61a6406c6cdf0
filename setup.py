"""Build step that puts the project's root data folders into the wheel as package data.

The repository keeps `prompts/`, `knowledge/`, `configs/` and `checkpoints/` at its root (the project layout);
the package reads them at run time. A wheel (``pip install .``, ``pip wheel .``, ``pip install git+…``) gets a
copy of each under ``ecglang/bundled/<name>``, which `ecglang.core.paths.resource_dir` finds through
`importlib.resources`; an editable install reads them at the repository root instead. Everything else about
the build is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("prompts", "knowledge", "configs", "checkpoints")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")


class BuildPyWithData(build_py):
    """`build_py` that also copies the root data folders into ``<build_lib>/ecglang/bundled``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # editable installs read the folders in place (repository root)
        target = Path(self.build_lib) / "ecglang" / "bundled"
        for name in BUNDLED:
            source = ROOT / name
            if not source.is_dir():
                raise FileNotFoundError(f"{source} is missing: the wheel would not run; build from a full checkout")
            if (target / name).exists():
                shutil.rmtree(target / name)
            shutil.copytree(source, target / name, ignore=SKIP)  # real files, symlinks followed


setup(cmdclass={"build_py": BuildPyWithData})

"""`python -m ecglang`: the `ecglang` console script, for environments where its bin/ folder is not on PATH."""

import runpy

# runpy, not an import: the package's entry point is a stage above every layer of the data walk, and
# cli/main.py's `__main__` block already exits with the command's status.
runpy.run_module("ecglang.cli.main", run_name="__main__", alter_sys=True)

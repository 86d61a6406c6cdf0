"""`python -m ecglang`: the `ecglang` console script, for environments where its bin/ folder is not on PATH."""

from ecglang.cli.main import main

raise SystemExit(main())

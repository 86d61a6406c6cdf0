"""Entry point of `make demo`."""

import sys

from ecglang.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())

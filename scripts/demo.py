"""Entry point of `make demo`."""

import sys

from ecglang.demo import main

if __name__ == "__main__":
    sys.exit(main())

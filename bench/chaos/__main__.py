"""`python -m bench.chaos`: the chaos run's command line (see bench/chaos/cli.py)."""

import sys

from bench.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())

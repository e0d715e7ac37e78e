"""`python -m gateway` is the `mqtt-gateway` command."""

import sys

from gateway.cli import main

sys.exit(main())

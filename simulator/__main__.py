"""``python -m simulator``: a local Bybit V5 option exchange (see ``--help``)."""

import sys

from simulator.cli import main

sys.exit(main())

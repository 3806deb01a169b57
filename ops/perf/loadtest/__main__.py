"""`python -m ops.perf.loadtest`: the load-test gate (ops/perf/loadtest/gate.py)."""

import sys

from ops.perf.loadtest.gate import main

raise SystemExit(main(sys.argv[1:]))

"""Run every benchmark and regenerate the README's performance table (`bench.runner`).

    .venv/bin/python -m bench.run_all                 # all (~10 min on a 2-core box)
    .venv/bin/python -m bench.run_all --quick         # ~2 min, indicative only
    .venv/bin/python -m bench.run_all decode gateway  # some of them

The same as `stackwatch bench run …`.
"""

from __future__ import annotations

import sys

from bench.runner import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

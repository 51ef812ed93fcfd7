"""Only the ``stats`` section of ``kidney-tf benchmark`` (see ``kidney_bench``).

Usage::

    python benchmarks/bench_stats.py --quick --out bench-stats.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--only", "stats", *sys.argv[1:]]))

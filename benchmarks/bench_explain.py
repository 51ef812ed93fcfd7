"""Only the ``explain`` section of ``kidney-tf benchmark`` (see ``kidney_bench``).

Usage::

    python benchmarks/bench_explain.py --quick --out bench-explain.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--only", "explain", *sys.argv[1:]]))

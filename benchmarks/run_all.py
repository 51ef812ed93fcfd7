"""Run every benchmark (the same as ``kidney-tf benchmark``); extra arguments are passed on.

Usage::

    python benchmarks/run_all.py --quick --out bench.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))

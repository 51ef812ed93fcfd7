"""Only the ``pipeline`` section of ``kidney-tf benchmark`` (see ``kidney_bench``).

Usage::

    python benchmarks/bench_pipeline.py --quick --out bench-pipeline.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--only", "pipeline", *sys.argv[1:]]))

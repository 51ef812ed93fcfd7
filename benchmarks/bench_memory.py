"""Only the ``memory`` section of ``kidney-tf benchmark`` (see ``kidney_bench``).

Usage::

    python benchmarks/bench_memory.py --quick --out bench-memory.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--only", "memory", *sys.argv[1:]]))

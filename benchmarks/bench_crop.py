"""Only the ``crop`` section of ``kidney-tf benchmark`` (see ``kidney_bench``).

Usage::

    python benchmarks/bench_crop.py --quick --out bench-crop.json
"""

from __future__ import annotations

import sys

from kidney_tf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", "--only", "crop", *sys.argv[1:]]))

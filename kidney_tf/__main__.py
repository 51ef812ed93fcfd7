"""``python -m kidney_tf`` is the ``kidney-tf`` command."""

import sys

from kidney_tf.cli.main import main

sys.exit(main())

"""``kidney-tf demo``: the kidney CAM-fostering paper end to end on built-in phantoms."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  kidney-tf demo --out runs/demo                  # about 14 min on 2 CPU cores
  kidney-tf demo --out runs/demo-l03 --cam-weight 0.3
  kidney-tf demo --out runs/demo-fast --epochs 3 --per-class 40   # a rough look in minutes

The demo is `kidney-tf reproduce kidney-cam-fostering --quick` on generated phantoms:
phantoms → verify → baseline ResNet-50 (weights=None, 128 px) → CAM-fostering fine-tune →
Grad-CAM++ evaluation of both → comparison → SavedModel export → summary table next to the
paper's numbers (OUT/summary.md). Run it again with the same --out to resume after an interruption.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from kidney_tf.cli.reproduce import add_tuning_arguments

    p = subparsers.add_parser(
        "demo",
        help="run the kidney CAM-fostering paper end to end on synthetic phantoms",
        description="Run the kidney CT CAM-fostering pipeline on the built-in synthetic phantoms "
        "with quick CPU settings and print the summary table (ours vs the paper).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_tuning_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.cli.reproduce import run_pipeline

    return run_pipeline("kidney-cam-fostering", args, quick=True, data=None)

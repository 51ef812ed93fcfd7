"""``kidney-tf demo``: the kidney CAM-fostering paper end to end on built-in phantoms."""

from __future__ import annotations

import argparse

EXAMPLES = """\
examples:
  kidney-tf demo --out runs/demo          # ~15 min on 2 CPU cores
  kidney-tf demo --out runs/demo --epochs 4 --per-class 40   # a faster, rougher look

The demo is `kidney-tf reproduce kidney-cam-fostering --quick` on generated phantoms:
phantoms → verify → baseline ResNet-50 (weights=None) → CAM fostering fine-tune → Grad-CAM++
evaluation of both → comparison → SavedModel export → summary table next to the paper's numbers.
Run it again with the same --out to resume after an interruption.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from kidney_tf.cli.reproduce import add_reproduce_arguments

    p = subparsers.add_parser(
        "demo",
        help="run the kidney CAM-fostering paper end to end on synthetic phantoms",
        description="Run the kidney CT CAM-fostering pipeline on the built-in synthetic phantoms "
        "with quick settings and print the summary table.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_reproduce_arguments(p)
    p.set_defaults(func=run, quick=True, data=None)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.cli.reproduce import overrides_from_args
    from kidney_tf.pipelines.reproduce import reproduce, summary_table

    summary = reproduce(
        "kidney-cam-fostering", args.out, quick=True, data=args.data, **overrides_from_args(args)
    )
    print(summary_table(summary))
    return 0

"""``kidney-tf reproduce PIPELINE``: a paper end to end, resumable stage by stage."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import add_common_arguments

EXAMPLES = """\
examples:
  # quick run on generated phantoms (minutes on a laptop CPU)
  kidney-tf reproduce kidney-cam-fostering --quick --out runs/kidney
  kidney-tf reproduce brain-mri-efficientnet --quick --out runs/brain

  # the papers' settings on the public datasets, as downloaded
  kidney-tf reproduce kidney-cam-fostering --data ~/data/CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone \\
      --out runs/kidney-paper
  kidney-tf reproduce brain-mri-efficientnet --data ~/data/brain-tumor-mri --out runs/brain-paper

Run the same command again to resume: finished stages are skipped.
"""


def add_reproduce_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    p.add_argument("--data", help="public dataset folder; without it phantoms are generated")
    p.add_argument("--quick", action="store_true", help="small, fast settings for phantoms/CPU")
    p.add_argument("--epochs", type=int, help="baseline epochs (preset default otherwise)")
    p.add_argument("--finetune-epochs", type=int, help="CAM-fostering fine-tune epochs")
    p.add_argument("--cam-weight", type=float, help="λ of the fostering stage (default 0.1)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weights", help="none, imagenet or a weights file (preset default)")
    p.add_argument("--per-class", type=int, dest="phantom_per_class", help="phantoms per class")
    p.add_argument("--seed", type=int)
    add_common_arguments(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run a paper end to end (data → train → evaluate → compare → export)",
        description="Reproduce a paper: verify data, crop where the paper crops, train the "
        "baseline, fine-tune with CAM fostering (kidney), evaluate with Grad-CAM++, compare, "
        "export a SavedModel, and print a summary next to the paper's numbers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pipeline", choices=("kidney-cam-fostering", "brain-mri-efficientnet"))
    add_reproduce_arguments(p)
    p.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict:
    keys = (
        "epochs",
        "finetune_epochs",
        "cam_weight",
        "image_size",
        "batch_size",
        "phantom_per_class",
        "seed",
        "weights",
    )
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.quiet:
        overrides["verbose"] = 0
    return overrides


def run(args: argparse.Namespace) -> int:
    from kidney_tf.pipelines.reproduce import reproduce, summary_table

    summary = reproduce(
        args.pipeline, args.out, quick=args.quick, data=args.data, **overrides_from_args(args)
    )
    print(summary_table(summary))
    return 0

"""``kidney-tf data figures``: class distribution, samples, crop pairs and augmentation figures."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import CliError, add_common_arguments
from kidney_tf.recipes import CROP_CHOICES, SPLIT_METHODS

EXAMPLES = """\
examples:
  # the brain MRI paper's dataset figures, with the brain crop
  kidney-tf data figures --data brain-tumor-mri/Training --out figures/brain --crop brain

  # kidney CT: body crop, 3 samples per class, 6 augmentations each
  kidney-tf data figures --data CT-KIDNEY --out figures/kidney --crop body \\
      --per-class 3 --n-augment 6

Writes class_distribution.png (per split, split exactly as training with the same
--split/--seed/fractions), samples.png, crop_pairs.png (with --crop), augmentation.png and
dataset_figures.json. The data is only read.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "figures",
        help="dataset figures: class distribution, samples, crop pairs, augmentation",
        description="Plot a dataset for a paper: images per class and split, samples per class, "
        "before/after crop pairs and training-time augmentation examples.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="class-folder tree (root/<class>/* or Training/Testing)")
    src.add_argument("--manifest", help="manifest CSV with columns path,label,split,mask_path")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--crop", choices=CROP_CHOICES, default="none")
    p.add_argument("--image-size", type=int, default=240, help="crop/resize size (240)")
    p.add_argument("--split", choices=SPLIT_METHODS, default="auto")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--per-class", type=int, default=1, help="samples per class (1)")
    p.add_argument("--n-augment", type=int, default=4, help="augmented copies per sample (4)")
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.evaluation.dataset_figures import dataset_figures
    from kidney_tf.utils.io import check_output_dir, input_tree, mark_output_dir

    if args.n_augment < 0:
        raise CliError(f"--n-augment must be >= 0, got {args.n_augment}")
    data = input_tree(args.data or args.manifest)
    check_output_dir(args.out, "data figures", inputs=[data], markers=("dataset_figures.json",))
    mark_output_dir(args.out, "data figures")
    summary = dataset_figures(
        args.data or args.manifest,
        args.out,
        crop=args.crop,
        image_size=args.image_size,
        split=args.split,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        per_class=args.per_class,
        n_augment=args.n_augment,
    )
    if not args.quiet:
        for split, per_class in summary["counts"].items():
            total = sum(per_class.values())
            detail = ", ".join(f"{c} {n}" for c, n in per_class.items())
            print(f"{split:<5} {total:>6}  ({detail})")
        print(f"figures: {', '.join(summary['figures'].values())} in {args.out}")
    return 0

"""``kidney-tf data crop``: crop a dataset tree to the brain (MRI) or the body (CT) on disk."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import CliError, add_common_arguments
from kidney_tf.recipes import CROP_MODES

EXAMPLES = """\
examples:
  # the brain MRI paper: crop every image to the brain's contour, 240 x 240
  kidney-tf data crop --src brain-tumor-mri --dst brain-cropped --size 240

  # kidney CT: remove the scanner table (blank outside the body) and crop to the body
  kidney-tf data crop --src CT-KIDNEY --dst ct-body --mode body --size 224

  # keep the crop's own size, 10 px margin, replace an earlier output
  kidney-tf data crop --src data --dst data-cropped --size 0 --margin 10 --overwrite

The source is only read. Class/split folders are mirrored, masks/ folders (or mask_path in
manifest.csv) are cut with their image's box, manifest.csv is rewritten for the new tree and
crop_boxes.csv records every box. Unreadable files are skipped and listed with their reason.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "crop",
        help="crop images to the brain (MRI) or body (CT) into a new folder",
        description="Crop every image of a dataset folder to the brain's largest contour (the "
        "brain MRI paper's recipe) or to the patient's body without the scanner table (CT), "
        "resize, and write a mirrored tree. The source folder is never modified.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--src", required=True, help="dataset folder (class folders, optional splits)")
    p.add_argument("--dst", required=True, help="output folder (must not be inside --src)")
    p.add_argument("--mode", choices=CROP_MODES, default="brain", help="what to crop to (brain)")
    p.add_argument(
        "--size", type=int, default=240, help="output side in pixels; 0 keeps the crop's size (240)"
    )
    p.add_argument("--margin", type=int, default=0, help="pixels kept around the box (0)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --dst")
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.data.crop import crop_folder

    if args.size < 0:
        raise CliError(f"--size must be >= 0, got {args.size}")
    if args.margin < 0:
        raise CliError(f"--margin must be >= 0, got {args.margin}")
    summary = crop_folder(
        args.src,
        args.dst,
        mode=args.mode,
        size=args.size or None,
        margin=args.margin,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(summary.format())
    return 0

"""``kidney-tf data phantom``: write the built-in synthetic kidney-CT or brain-MRI dataset."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import add_common_arguments, at_least

KINDS = ("kidney-ct", "brain-mri")

EXAMPLES = """\
examples:
  # 4 classes x 50 kidney CT phantoms (Cyst, Normal, Stone, Tumor) at 256 px
  kidney-tf data phantom --kind kidney-ct --out phantoms/kidney

  # brain MRI phantoms (glioma, meningioma, notumor, pituitary), smaller and more of them
  kidney-tf data phantom --kind brain-mri --out phantoms/brain --per-class 200 --image-size 160

  # then train on them
  kidney-tf train --data phantoms/kidney --image-size 128 --weights none --out runs/kidney

Writes OUT/<Class>/*.png, OUT/masks/<Class>/*.png (lesion masks, empty for Normal/notumor),
OUT/manifest.csv (path,label,split,mask_path) and OUT/phantom.json. The same parameters always
give byte-identical files; OUT must be new, empty, or an earlier output with the same parameters.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "phantom",
        help="write deterministic synthetic kidney-CT or brain-MRI phantoms with lesion masks",
        description="Generate the built-in synthetic dataset: axial abdominal CT at kidney level "
        "(Cyst, Normal, Stone, Tumor) or axial T1 post-contrast brain MRI (glioma, meningioma, "
        "notumor, pituitary), each image with a pixel-accurate lesion mask.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--kind", choices=KINDS, required=True, help="which paper's modality")
    p.add_argument("--out", required=True, help="output folder (new, empty, or same parameters)")
    p.add_argument("--per-class", type=at_least(1), default=50, help="images per class (50)")
    p.add_argument("--image-size", type=at_least(16), default=256, help="side in pixels (256)")
    p.add_argument("--seed", type=at_least(0), default=0, help="random seed (0)")
    p.add_argument(
        "--lesion-scale",
        type=float,
        default=1.0,
        help="multiply lesion radii (1.0 = sizes as in the public data; the demo uses larger)",
    )
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.data.phantoms import PHANTOM_CLASSES, generate_phantoms

    progress = None if not args.quiet else False
    manifest = generate_phantoms(
        args.kind,
        args.out,
        per_class=args.per_class,
        image_size=args.image_size,
        seed=args.seed,
        lesion_scale=args.lesion_scale,
        progress=progress,
    )
    classes = PHANTOM_CLASSES[args.kind]
    if not args.quiet:
        print(
            f"{args.kind} phantoms: {args.per_class * len(classes)} images "
            f"({len(classes)} classes x {args.per_class}, {args.image_size} px, seed {args.seed}) "
            f"in {manifest.parent} (manifest {manifest})"
        )
    return 0

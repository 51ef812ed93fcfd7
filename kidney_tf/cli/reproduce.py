"""``kidney-tf reproduce PIPELINE``: a paper end to end, resumable stage by stage."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import add_common_arguments, at_least, positive_float
from kidney_tf.recipes import FOSTERING_CAM_METHODS, PIPELINES, RECIPES

EXAMPLES = """\
examples:
  # quick run on generated phantoms (CPU minutes; the kidney one is `kidney-tf demo`)
  kidney-tf reproduce kidney-cam-fostering --quick --out runs/kidney
  kidney-tf reproduce brain-mri-efficientnet --quick --out runs/brain

  # the papers' settings on the public datasets, as downloaded
  kidney-tf reproduce kidney-cam-fostering --data ~/data/CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone \\
      --out runs/kidney-paper
  kidney-tf reproduce brain-mri-efficientnet --data ~/data/brain-tumor-mri --out runs/brain-paper

  # a λ sweep reuses nothing across folders: one --out per value
  kidney-tf reproduce kidney-cam-fostering --quick --cam-weight 0.3 --out runs/kidney-l03

--data accepts the download folder, the dataset folder (kidney: CT-KIDNEY-DATASET-Normal-Cyst-
Tumor-Stone/<Class>/, also nested twice; brain: Training/ + Testing/), or a manifest CSV.
Run the same command again to resume: finished stages are skipped; other settings are refused.
Outputs: OUT/summary.md|json, OUT/reports/*/report.html, OUT/reports/comparison, OUT/export/1.
"""


def add_fostering_arguments(group) -> None:
    """``--outside-weight``, ``--mask-weight``, ``--alive-weight``, ``--cam-layer`` (train,
    reproduce, demo)."""
    group.add_argument(
        "--outside-weight",
        type=float,
        help="λ_out: weight of the CAM mass outside the body/brain foreground (default 0: off, "
        "the paper's method)",
    )
    group.add_argument(
        "--mask-weight",
        type=float,
        help="λ_mask: weight of the CAM mass off the (dilated) lesion mask, images with a mask "
        "only (default 0: off)",
    )
    group.add_argument(
        "--alive-weight",
        type=float,
        help="λ_alive: keeps each fostered map's positive peak at >= half its largest magnitude, "
        "so a Grad-CAM map cannot go empty (default 0: off; the Grad-CAM++ map never needs it)",
    )
    group.add_argument(
        "--cam-layer",
        help="layer the CAMs are computed on, in training and evaluation alike (default: the "
        "last conv block, conv5_block3_out for ResNet-50: 4x4 at 128 px; conv4_block6_out is "
        "8x8 but needs --cam-method gradcam)",
    )


def add_tuning_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``reproduce`` and ``demo`` (everything defaults to the preset)."""
    p.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    g = p.add_argument_group("settings (default: the preset)")
    g.add_argument("--epochs", type=at_least(1), help="baseline epochs")
    g.add_argument(
        "--finetune-epochs", type=at_least(1), help="CAM-fostering fine-tune epochs (kidney)"
    )
    g.add_argument("--cam-weight", type=float, help="λ of the fostering stage (kidney)")
    g.add_argument(
        "--cam-method",
        choices=FOSTERING_CAM_METHODS,
        help="CAM the fostering stage penalises (kidney; default gradcam++, the map the "
        "evaluation measures)",
    )
    add_fostering_arguments(g)
    g.add_argument("--lr", type=positive_float, help="baseline learning rate")
    g.add_argument("--finetune-lr", type=positive_float, help="fine-tune learning rate (kidney)")
    g.add_argument(
        "--finetune-unfreeze-top",
        type=int,
        help="backbone stages the fostering fine-tune trains (kidney; 0: head only; "
        "paper preset: all; quick preset: 0)",
    )
    g.add_argument("--image-size", type=at_least(32), help="model input size in px")
    g.add_argument("--batch-size", type=at_least(1))
    g.add_argument("--weights", help="none, imagenet or a weights file")
    g.add_argument(
        "--max-cam-images", type=int, help="test images explained with Grad-CAM++ (default all)"
    )
    g.add_argument(
        "--per-class", type=at_least(1), dest="phantom_per_class", help="phantoms per class"
    )
    g.add_argument(
        "--lesion-scale",
        type=float,
        dest="phantom_lesion_scale",
        help="phantom lesion radius multiplier (1.0 = public-data sizes)",
    )
    g.add_argument("--seed", type=int)
    add_common_arguments(p, reads_images=True)


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
    p.add_argument("pipeline", choices=PIPELINES)
    p.add_argument("--data", help="public dataset folder or manifest CSV (default: phantoms)")
    p.add_argument(
        "--quick", action="store_true", help="small, fast settings (from scratch, 128 px, CPU)"
    )
    p.add_argument(
        "--preset",
        choices=sorted({name for r in RECIPES.values() for name in r.presets}),
        help="a named preset of the recipe (default paper; --quick = --preset quick)",
    )
    add_tuning_arguments(p)
    p.set_defaults(func=run)


# Options of the parser that are not preset settings (``--verbose`` is the logging flag).
_NOT_SETTINGS = frozenset(
    {"out", "data", "verbose", "quiet", "quick", "preset", "pipeline", "func"}
)


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The preset overrides given on the command line: every option named like a setting."""
    from kidney_tf.pipelines.reproduce import setting_names

    names = setting_names() - _NOT_SETTINGS
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    overrides["verbose"] = 0 if args.quiet else 2  # one line per epoch: readable in logs
    return overrides


def run_pipeline(pipeline: str, args: argparse.Namespace, *, quick: bool, data) -> int:
    from kidney_tf.utils.io import check_output_dir, input_tree, mark_output_dir

    # demo and reproduce share run folders (demo = reproduce kidney-cam-fostering --quick)
    check_output_dir(args.out, "reproduce", inputs=[input_tree(data)], markers=("stages",))
    mark_output_dir(args.out, "reproduce")
    from kidney_tf.pipelines.reproduce import reproduce, summary_table

    overrides = overrides_from_args(args)
    if getattr(args, "preset", None):
        overrides["preset"] = args.preset
    summary = reproduce(pipeline, args.out, quick=quick, data=data, **overrides)
    print(summary_table(summary))
    return 0


def run(args: argparse.Namespace) -> int:
    return run_pipeline(args.pipeline, args, quick=args.quick, data=args.data)

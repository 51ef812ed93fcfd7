"""``kidney-tf train``: train a classifier, optionally with CAM fostering; resumable."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import CliError, add_common_arguments

EXAMPLES = """\
examples:
  # baseline (λ = 0) on generated kidney-CT phantoms, from scratch, small images
  kidney-tf data phantom --kind kidney-ct --out phantoms --per-class 100 --image-size 160
  kidney-tf train --data phantoms --arch resnet50 --image-size 128 --weights none \\
      --epochs 10 --batch-size 16 --out runs/baseline

  # the paper's second stage: fine-tune the baseline with CAM fostering
  kidney-tf train --data phantoms --init runs/baseline/model.keras --cam-weight 0.1 \\
      --epochs 3 --out runs/fostered

  # brain MRI with the paper's crop, EfficientNetB1, ImageNet transfer learning
  kidney-tf train --data Training/ --arch efficientnetb1 --crop brain --weights imagenet \\
      --freeze-epochs 3 --out runs/brain

An interrupted run resumes when the same command is run again.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier (optionally with CAM fostering)",
        description="Train ResNet-50 or EfficientNetB1 with class-weighted cross-entropy and, "
        "with --cam-weight > 0, the CAM-fostering entropy penalty. Writes RUN/model.keras, "
        "best.keras, history.csv, config.json, split.csv, curves.png, test_metrics.json.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="class-folder tree (root/<class>/*.png or Training/Testing)")
    src.add_argument("--manifest", help="manifest CSV with columns path,label,split,mask_path")
    p.add_argument("--out", required=True, help="run folder (created; resumed if interrupted)")
    p.add_argument("--arch", choices=("resnet50", "efficientnetb1"), default="resnet50")
    p.add_argument("--image-size", type=int, help="input size (default: 224 resnet50, 240 effnet)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3, 1e-4 with --init)")
    p.add_argument("--cam-weight", type=float, default=0.0, help="λ of the CAM entropy penalty")
    p.add_argument("--cam-method", choices=("exact", "gradcam"), default="exact")
    p.add_argument("--init", help="start from this .keras model (fine-tuning stage)")
    p.add_argument("--crop", choices=("brain", "body", "none"), default="none")
    p.add_argument("--weights", default="imagenet", help="none, imagenet or a weights file path")
    p.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPUs)")
    p.add_argument("--jit-compile", action="store_true", help="XLA (slower on CPU; off by default)")
    p.add_argument("--split", choices=("auto", "folders", "stratified", "grouped"), default="auto")
    p.add_argument("--split-csv", help="reuse the exact split of a previous run (RUN/split.csv)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (0: off)")
    p.add_argument("--lr-schedule", choices=("plateau", "cosine", "constant"), default="plateau")
    p.add_argument("--freeze-epochs", type=int, default=0, help="head-only epochs first")
    p.add_argument("--unfreeze-top", type=int, help="backbone blocks unfrozen after the head phase")
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--bn-momentum", type=float, help="BatchNorm momentum (0.9 helps from scratch)")
    p.add_argument("--head-units", default="", help="hidden dense units, e.g. 256 or 512,128")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    add_common_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from kidney_tf.training.trainer import TrainConfig

    weights = None if str(args.weights).lower() == "none" else args.weights
    try:
        head_units = tuple(int(u) for u in args.head_units.split(",") if u.strip())
    except ValueError as exc:
        raise CliError(
            f"--head-units must be integers separated by commas: {args.head_units}"
        ) from exc
    return TrainConfig(
        out=args.out,
        data=args.data or args.manifest,
        arch=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        cam_weight=args.cam_weight,
        cam_method=args.cam_method,
        init=args.init,
        crop=None if args.crop == "none" else args.crop,
        weights=weights,
        strategy=args.strategy,
        mixed_precision=args.mixed_precision,
        jit_compile=args.jit_compile,
        split=args.split,
        split_csv=args.split_csv,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        augment=not args.no_augment,
        patience=args.patience,
        lr_schedule=args.lr_schedule,
        freeze_epochs=args.freeze_epochs,
        unfreeze_top=args.unfreeze_top,
        steps_per_epoch=args.steps_per_epoch,
        bn_momentum=args.bn_momentum,
        head_units=head_units,
        dropout=args.dropout,
        strict=args.strict,
        verbose=0 if args.quiet else "auto",
    )


def run(args: argparse.Namespace) -> int:
    from kidney_tf.training.trainer import train

    result = train(config_from_args(args))
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
    if not args.quiet:
        print(f"{'resumed and finished' if result.resumed else 'finished'}: {result.run_dir}")
        print(f"test: {metrics or 'no test split'}")
    return 0

"""``kidney-tf train``: train a classifier, optionally with CAM fostering; resumable."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from kidney_tf.cli.main import (
    CliError,
    add_common_arguments,
    at_least,
    positive_float,
)
from kidney_tf.cli.reproduce import add_fostering_arguments
from kidney_tf.recipes import (
    ARCHITECTURES,
    CROP_CHOICES,
    DEFAULT_MASK_DILATION,
    FOSTERING_CAM_METHODS,
    LR_SCHEDULES,
    SPLIT_METHODS,
    STRATEGIES,
    TRAIN_RECIPES,
)

EXAMPLES = """\
examples:
  # baseline (λ = 0) on generated kidney-CT phantoms, from scratch, small images
  kidney-tf data phantom --kind kidney-ct --out phantoms --per-class 100 --image-size 160
  kidney-tf train --data phantoms --arch resnet50 --image-size 128 --weights none \\
      --epochs 10 --batch-size 16 --out runs/baseline

  # the paper's second stage: fine-tune the baseline with CAM fostering (λ = 0.1)
  kidney-tf train --data phantoms --init runs/baseline/model.keras --cam-weight 0.1 \\
      --epochs 3 --out runs/fostered

  # brain MRI with the paper's crop, EfficientNetB1, ImageNet transfer learning
  kidney-tf train --data Training/ --arch efficientnetb1 --crop brain --weights imagenet \\
      --freeze-epochs 3 --out runs/brain

  # re-run a previous run's exact settings (flags given here override them)
  kidney-tf train --config runs/baseline/config.json --seed 7 --out runs/baseline-seed7

  # two workers (run the same command on each, with its own TF_CONFIG task index)
  TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}' \\
      kidney-tf train --data phantoms --strategy multiworker --out /shared/runs/mw

Resuming: if the run is interrupted (Ctrl-C, kill, crash, pre-emption), run the same command
again: it continues from the last backup (each epoch end, and every --backup-every steps).
With --deterministic the resumed run ends with the same weights as an uninterrupted one.
The progress bar shows training images per second (img/s).
"""

# Options that carry a TrainConfig field's value in another form; every other option whose
# dest is a TrainConfig field is copied as is (``_overrides``). ``--verbose`` is the logging flag.
_NOT_COPIED = frozenset({"data", "head_units", "input_norm", "verbose"})


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a classifier (optionally with CAM fostering); resumable",
        description="Train ResNet-50 or EfficientNetB1 with class-weighted cross-entropy and, "
        "with --cam-weight > 0, the CAM-fostering entropy penalty. Writes RUN/model.keras, "
        "best.keras, history.csv, config.json, split.csv, curves.png, test_metrics.json. "
        "Early stopping, a learning-rate schedule, checkpoints and resumption are built in.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        help="class-folder tree (root/<class>/*.png or Training/Testing)",
    )
    src.add_argument(
        "--manifest",
        help="manifest CSV with columns path,label,split,mask_path",
    )
    p.add_argument(
        "--config",
        help="a previous run's config.json: use its settings (flags given here override them)",
    )
    p.add_argument(
        "--recipe",
        choices=tuple(TRAIN_RECIPES),
        help="start from a named recipe's settings (flags given here override them), e.g. "
        "kidney-real: the from-scratch real-CT recipe (see the README's 'Real scans')",
    )
    p.add_argument("--out", required=True, help="run folder (created; resumed if interrupted)")

    model = p.add_argument_group("model")
    model.add_argument(
        "--arch",
        choices=tuple(ARCHITECTURES),
        help="backbone (default resnet50, or the --init model's)",
    )
    model.add_argument(
        "--image-size",
        type=at_least(32),
        help="input size (default: "
        + ", ".join(f"{size} {arch}" for arch, size in ARCHITECTURES.items())
        + ", or the --init model's)",
    )
    model.add_argument("--weights", help="none, imagenet (default) or a backbone weights file")
    model.add_argument("--init", help="start from this .keras model (fine-tuning stage)")
    model.add_argument("--head-units", help="hidden dense units of the head, e.g. 256 or 512,128")
    model.add_argument("--dropout", type=float, help="head dropout (default 0)")
    model.add_argument(
        "--input-norm",
        choices=("per-image", "none"),
        help="per-image: standardise each image's intensities inside the model (from scratch; "
        "default none)",
    )
    model.add_argument(
        "--bn-momentum",
        type=float,
        help="BatchNorm momentum (default 0.9 from scratch, 0.99 with pretrained weights)",
    )

    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=at_least(1), help="epochs (default 30)")
    fit.add_argument("--batch-size", type=at_least(1), help="global batch size (default 32)")
    fit.add_argument(
        "--lr", type=positive_float, help="learning rate (default 1e-3, 1e-4 with --init)"
    )
    fit.add_argument("--cam-weight", type=float, help="λ of the CAM entropy penalty (default 0)")
    fit.add_argument(
        "--cam-method",
        choices=FOSTERING_CAM_METHODS,
        help="map the penalties act on (default gradcam++: the map the evaluation measures)",
    )
    add_fostering_arguments(fit)
    fit.add_argument(
        "--mask-dilation",
        type=at_least(0),
        help=f"px the lesion mask is grown by for --mask-weight (default {DEFAULT_MASK_DILATION})",
    )
    fit.add_argument(
        "--patience", type=at_least(0), help="early-stopping patience (default 5; 0: off)"
    )
    fit.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="default plateau")
    fit.add_argument("--freeze-epochs", type=at_least(0), help="head-only epochs first (default 0)")
    fit.add_argument(
        "--unfreeze-top",
        type=at_least(0),
        help="backbone blocks trained after the head phase, or when fine-tuning --init "
        "(0: head only; default all)",
    )
    fit.add_argument(
        "--steps-per-epoch", type=at_least(1), help="default: one pass over the train split"
    )
    fit.add_argument("--label-smoothing", type=float, help="cross-entropy label smoothing (0)")
    fit.add_argument(
        "--ema",
        type=float,
        help="EMA momentum of the weights, e.g. 0.99 (validation and saved models use the "
        "averaged weights; default 0: off)",
    )
    fit.add_argument(
        "--progress-every",
        type=float,
        help="seconds between progress lines when output is not a terminal (60; 0: off)",
    )
    fit.add_argument(
        "--seed", type=int, help="seed of split, shuffling, augmentation, init (default 42)"
    )
    fit.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    fit.add_argument(
        "--augment-options",
        help="augmentation settings over the paper's, e.g. rotation=15,gamma=0.3,contrast=0.3 "
        "(AugmentConfig fields)",
    )
    fit.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="TensorFlow op determinism; a resumed run replays the data stream exactly",
    )
    fit.add_argument(
        "--backup-every",
        type=at_least(0),
        help="also back up every N steps for resumption (default 0: at epoch ends only)",
    )

    data = p.add_argument_group("data")
    data.add_argument("--crop", choices=CROP_CHOICES, help="default none, or the --init model's")
    data.add_argument(
        "--split",
        choices=SPLIT_METHODS,
        help="how to split train/val/test (default auto)",
    )
    data.add_argument(
        "--split-csv",
        help="reuse the exact split of a previous run (RUN/split.csv)",
    )
    data.add_argument("--val-fraction", type=float, help="default 0.15")
    data.add_argument("--test-fraction", type=float, help="default 0.15")
    data.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="fail on the first unreadable image instead of skipping it",
    )

    hardware = p.add_argument_group("hardware")
    hardware.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="tf.distribute strategy (default: one device); multiworker reads TF_CONFIG",
    )
    hardware.add_argument(
        "--cpu-replicas",
        type=int,
        help="with --strategy mirrored on a machine without GPUs: split the CPU into N "
        "logical devices (N replicas; to run and test the distributed path)",
    )
    hardware.add_argument(
        "--mixed-precision",
        action="store_true",
        default=None,
        help="mixed_float16 (faster on recent GPUs)",
    )
    hardware.add_argument(
        "--jit-compile",
        action="store_true",
        default=None,
        help="XLA (slower on CPU; off by default)",
    )
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields given on the command line (options left out are not included)."""
    from kidney_tf.training.trainer import TrainConfig

    values: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name not in _NOT_COPIED and getattr(args, f.name, None) is not None
    }
    if args.data or args.manifest:
        values["data"] = args.data or args.manifest
    # an explicit --crop none stays "none" (copied above): it overrides an --init model's crop
    if args.augment_options:
        if args.augment is False:
            raise CliError("--augment-options and --no-augment contradict each other")
        values["augment"] = _augment_options(args.augment_options)
    if args.input_norm is not None:
        values["input_norm"] = None if args.input_norm == "none" else args.input_norm
    if args.head_units is not None:
        try:
            values["head_units"] = tuple(int(u) for u in args.head_units.split(",") if u.strip())
        except ValueError as exc:
            raise CliError(
                f"--head-units must be integers separated by commas: {args.head_units}"
            ) from exc
    if getattr(args, "quiet", False):
        values["verbose"] = 0
    return values


def _augment_options(text: str) -> dict[str, Any]:
    """``"rotation=15,gamma=0.3,vertical_flip=true"`` -> an AugmentConfig dict (checked later)."""
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--augment-options: expected KEY=VALUE, got {item!r}")
        value = value.strip()
        if value.lower() in ("true", "false"):
            options[key.strip()] = value.lower() == "true"
            continue
        for parse in (int, float, str):
            try:
                options[key.strip()] = parse(value)
                break
            except ValueError:
                continue
    return options


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of a ``kidney-tf train`` command line (``--config`` or ``--recipe``,
    then the flags given)."""
    from kidney_tf.recipes import train_settings
    from kidney_tf.training.trainer import TrainConfig

    overrides = _overrides(args)
    if getattr(args, "recipe", None):
        if args.config:
            raise CliError("pass --recipe or --config, not both")
        overrides = {**train_settings(args.recipe), **overrides}
    if args.config:
        return TrainConfig.from_json(args.config, **overrides)
    if "data" not in overrides:
        raise CliError("pass --data, --manifest or --config")
    return TrainConfig.from_dict(overrides)


def _check_files(args: argparse.Namespace) -> None:
    """The input files given on the command line, checked before TensorFlow is imported."""
    data = args.data or args.manifest
    if data is not None and not Path(data).exists():
        raise FileNotFoundError(f"{data}: training data not found")
    for value, what in (
        (args.init, "--init model"),
        (args.config, "run configuration"),
        (args.split_csv, "split CSV"),
    ):
        if value is not None and not Path(value).is_file():
            raise FileNotFoundError(f"{value}: {what} not found")


def run(args: argparse.Namespace) -> int:
    _check_files(args)
    from kidney_tf.training.trainer import train

    result = train(config_from_args(args))
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.test_metrics.items())
    if not args.quiet:
        state = "resumed and finished" if result.resumed else "finished"
        print(f"{state}: {result.run_dir} ({result.epochs_run} epoch(s), {result.seconds:.0f} s)")
        print(f"test: {metrics or 'no test split'}")
    return 0
